"""The driver end to end: files in, flow events out; big certificates; fuzzing."""

from __future__ import annotations

import datetime
import gzip
import random
import subprocess
import warnings
from pathlib import Path

import pytest
from conftest import require_tool
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlswatch.capture import (
    SECRETS_TLS_KEYLOG,
    Anomaly,
    CaptureFormatError,
    CaptureWarning,
    Data,
    Detected,
    FlowEnd,
    FlowEvent,
    Secrets,
    Side,
    open_capture,
    read_flows,
)
from tlswatch.tls import Detection, TLSConnection

from .capbuild import (
    Conv,
    client_hello,
    dsb,
    epb,
    eth,
    idb,
    pcap_bytes,
    pcapng_bytes,
    server_flight,
    shb,
)


def big_certificate(names: int = 12_600) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "big.example")])
    t = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    sans = [x509.DNSName(f"host{i:06d}.big.example") for i in range(names)]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(t)
            .not_valid_after(t + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def tls_frames(conv: Conv, certs: list[bytes], mss: int = 1400) -> list[tuple[int, bytes]]:
    return (conv.handshake() + conv.send(0, client_hello())
            + conv.send(1, server_flight(certs), mss=mss) + conv.close())


def collect(path: Path) -> tuple[list[FlowEvent], dict[int, TLSConnection]]:
    conns: dict[int, TLSConnection] = {}
    events: list[FlowEvent] = []
    for ev in read_flows(path):
        events.append(ev)
        if isinstance(ev, Detected) and ev.side == Side.CLIENT and ev.result is Detection.YES:
            conns[ev.flow_id] = TLSConnection()
        elif isinstance(ev, Data) and ev.flow_id in conns:
            conn = conns[ev.flow_id]
            (conn.feed_client if ev.side == Side.CLIENT else conn.feed_server)(ev.data)
    return events, conns


def test_300kb_certificate_over_200_shuffled_segments(tmp_path: Path) -> None:
    cert = big_certificate()
    assert len(cert) > 300_000
    c = Conv()
    frames = tls_frames(c, [cert])
    head, body, tail = frames[:4], frames[4:-3], frames[-3:]
    assert len(body) > 200
    rng = random.Random(5)
    body += rng.sample(body, 20)  # retransmissions too
    rng.shuffle(body)
    path = tmp_path / "big.pcap"
    path.write_bytes(pcap_bytes(head + body + tail))
    events, conns = collect(path)
    (conn,) = conns.values()
    assert conn.certificates == (cert,)
    assert conn.history.startswith("Csxn")
    end = events[-1]
    assert isinstance(end, FlowEnd) and end.server.retransmissions == 20 and end.server.gaps == 0


def test_gzip_pcapng_with_several_flows_and_udp(tmp_path: Path) -> None:
    frames: list[tuple[int, bytes]] = []
    for i in range(3):
        frames += tls_frames(Conv(client=("10.0.0.1", 40000 + i), t0=10**18 + i), [b"\x30" * 900])
    from scapy.layers.inet import IP, UDP

    frames.append((10**18 + 5, bytes(eth() / IP() / UDP(sport=5, dport=53) / b"q")))
    frames.sort(key=lambda f: f[0])
    path = tmp_path / "f.anything"
    path.write_bytes(gzip.compress(pcapng_bytes(frames)))
    reader = read_flows(path)
    events = list(reader)
    assert len([e for e in events if isinstance(e, FlowEnd)]) == 3
    assert reader.packets == len(frames) and reader.udp_packets == 1
    assert reader.tcp_packets == len(frames) - 1 and not reader.anomalies
    with pytest.raises(RuntimeError):
        iter(reader)


def test_secrets_blocks_arrive_in_file_order(tmp_path: Path) -> None:
    c = Conv()
    frames = c.handshake()
    data = shb() + idb(1) + epb(0, frames[0][0] // 1000, frames[0][1])
    data += dsb(SECRETS_TLS_KEYLOG, b"CLIENT_RANDOM aa bb\n")
    data += b"".join(epb(0, ts // 1000, f) for ts, f in frames[1:])
    (tmp_path / "k.pcapng").write_bytes(data)
    kinds = [type(e).__name__ for e in read_flows(tmp_path / "k.pcapng")]
    assert kinds[:2] == ["FlowStart", "Secrets"]
    ev = [e for e in read_flows(tmp_path / "k.pcapng") if isinstance(e, Secrets)]
    assert ev == [Secrets(SECRETS_TLS_KEYLOG, b"CLIENT_RANDOM aa bb\n")]


def test_truncated_capture_gives_partial_flows(tmp_path: Path) -> None:
    data = pcap_bytes(tls_frames(Conv(), [b"\x30" * 5000]))
    path = tmp_path / "t.pcap"
    path.write_bytes(data[: len(data) - 700])
    with pytest.warns(CaptureWarning):
        reader = read_flows(path)
        events = list(reader)
    assert isinstance(events[-1], FlowEnd) and events[-1].reason == "eof"
    assert reader.partial and reader.anomalies[Anomaly.TRUNCATED_FILE] == 1


def test_not_a_capture(tmp_path: Path) -> None:
    (tmp_path / "x.pcap").write_text("just text\n")
    with pytest.raises(CaptureFormatError, match=r"x\.pcap: not a pcap or pcapng file"):
        read_flows(tmp_path / "x.pcap")


def _drain(path: Path) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CaptureWarning)
            for _ in read_flows(path):
                pass
    except CaptureFormatError:
        pass


_TMP_OK = [HealthCheck.function_scoped_fixture]  # tmp_path is reused on purpose
_PCAP_HEAD = pcap_bytes([])
_PCAPNG_HEAD = shb() + idb(1) + idb(113, tsresol=9)


@settings(max_examples=150, deadline=None, suppress_health_check=_TMP_OK)
@given(head=st.sampled_from([_PCAP_HEAD, _PCAPNG_HEAD, _PCAP_HEAD[:10]]),
       tail=st.binary(max_size=3000))
def test_random_bytes_after_a_valid_header(tmp_path: Path, head: bytes, tail: bytes) -> None:
    path = tmp_path / "r.pcap"
    path.write_bytes(head + tail)
    _drain(path)


_SAMPLE = pcap_bytes(tls_frames(Conv(), [b"\x30" * 3000]) + tls_frames(
    Conv(client=("10.9.9.9", 1234), v6=False, isn=(2**32 - 10, 7)), [b"\x30" * 100]))
_SAMPLE_NG = pcapng_bytes(tls_frames(Conv(), [b"\x30" * 2000]))


@settings(max_examples=200, deadline=None, suppress_health_check=_TMP_OK)
@given(sample=st.sampled_from([_SAMPLE, _SAMPLE_NG]), data=st.data())
def test_mutated_real_captures(tmp_path: Path, sample: bytes, data: st.DataObject) -> None:
    blob = bytearray(sample)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "byte"]))
        i = data.draw(st.integers(0, len(blob) - 1))
        if op == "flip":
            blob[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "byte":
            blob[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del blob[i : i + data.draw(st.integers(1, 64))]
        else:
            blob[i:i] = data.draw(st.binary(min_size=1, max_size=16))
        if not blob:
            blob = bytearray(b"\x00")
    path = tmp_path / "m.pcap"
    path.write_bytes(bytes(blob))
    _drain(path)


def test_timestamps_and_counts_match_tshark(tmp_path: Path) -> None:
    require_tool("tshark")
    c = Conv()
    frames = tls_frames(c, [b"\x30" * 3000])
    data = shb() + idb(1, tsresol=9) + idb(1, tsresol=0x80 | 20)
    for i, (ts, f) in enumerate(frames):
        data += epb(0, ts, f) if i % 2 else epb(1, (ts << 20) // 10**9, f)
    data += shb(">") + idb(1, ">", tsresol=3) + epb(0, 1_700_000_123_456, frames[0][1], ">")
    path = tmp_path / "x.pcapng"
    path.write_bytes(data)
    with open_capture(path) as cap:
        ours = [ts for ts, *_ in cap]
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-e",
                          "frame.time_epoch"], capture_output=True, text=True, check=True).stdout
    theirs = []
    for line in out.split():
        sec, _, frac = line.partition(".")
        theirs.append(int(sec) * 10**9 + int((frac + "000000000")[:9]))
    assert ours == theirs


def test_detection_off_and_skip(tmp_path: Path) -> None:
    c = Conv(server=("10.0.0.2", 80))
    frames = c.handshake() + c.send(0, b"GET / HTTP/1.0\r\n\r\n") + c.send(1, b"x" * 5000)
    path = tmp_path / "h.pcap"
    path.write_bytes(pcap_bytes(frames))
    events = list(read_flows(path, detect_tls=False))
    assert not [e for e in events if isinstance(e, Detected)]
    assert sum(len(e.data) for e in events if isinstance(e, Data)) == 5018
    reader = read_flows(path, detect_tls=False)
    got = 0
    for ev in reader:
        if isinstance(ev, Data) and ev.side == Side.SERVER:
            got += len(ev.data)
            reader.skip(ev.flow_id, Side.SERVER)
    assert got == 1400


def _skipped_run(path: Path, fast: bool) -> list[FlowEvent]:
    """Events of a reader that skips each flow at its first data (as the observer does once
    a handshake is read); ``fast=False`` turns the undecoded bulk path off."""
    reader = read_flows(path)
    if not fast:
        reader.engine.feed_bulk_frame = lambda ts, data: False  # type: ignore[method-assign]
    out: list[FlowEvent] = []
    for ev in reader:
        out.append(ev)
        if isinstance(ev, Data):
            reader.skip(ev.flow_id)
    return out


def test_bulk_path_books_exactly_what_decoding_would(tmp_path: Path) -> None:
    # Skipped flows' packets are booked without decoding: every count, TTL, IP ID, offset
    # and event must be the same as through the full path, gaps, RSTs and odd TTLs included.
    rng = random.Random(5)
    frames: list[tuple[int, bytes]] = []
    for i in range(3):
        c = Conv(client=("10.0.0.1", 40000 + i), t0=1_700_000_000_000_000_000 + i)
        frames += c.handshake() + c.send(0, client_hello()) + c.send(1, bytes(20_000))
        frames += [c.frame(c.pkt(1, "A", ttl=60 + i))]  # a TTL unlike the server's
        lost = c.send(1, bytes(range(256)) * 8)  # a segment the capture misses
        frames += lost[1:] + c.send(0, bytes(3000))
        frames += [c.frame(c.pkt(1, "RA", ttl=61, ip_id=0))] if i == 1 else c.close()
    rng.shuffle(frames)
    frames.sort(key=lambda f: f[0])
    path = tmp_path / "bulk.pcap"
    path.write_bytes(pcap_bytes(frames))
    fast, slow = _skipped_run(path, True), _skipped_run(path, False)
    assert fast == slow
    ends = [ev for ev in fast if isinstance(ev, FlowEnd)]
    assert len(ends) == 3 and all(e.server.payload_bytes > 20_000 for e in ends)
    assert {e.server.rst for e in ends} == {0, 1}

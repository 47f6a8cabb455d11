"""Flow events -> observations: the failure rules, the evidence, DNS, bounds, hostile input."""

from __future__ import annotations

import contextlib
import datetime
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP

from tlswatch.capture import CaptureFormatError, CaptureWarning
from tlswatch.capture.observe import (
    NON_TLS_PREFIX,
    WAIT_AT_END_NS,
    CaptureObserver,
    DnsObservation,
    FlowObservation,
    Observation,
    observe_capture,
)

from .capbuild import Conv, client_hello, eth, pcap_bytes, record, server_flight

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
SECOND = 1_000_000_000


def _observe(tmp_path: Path, frames: list[tuple[int, bytes]],
             name: str = "t.pcap") -> tuple[list[Observation], CaptureObserver]:
    path = tmp_path / name
    path.write_bytes(pcap_bytes(sorted(frames, key=lambda f: f[0])))
    return observe_capture(path)


def _flows(obs: list[Observation]) -> list[FlowObservation]:
    return [o for o in obs if isinstance(o, FlowObservation)]


def _one(obs: list[Observation]) -> FlowObservation:
    (flow,) = _flows(obs)
    return flow


def _cert(names: int = 1, cn: str = "big.example") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    t = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    sans = [x509.DNSName(f"host{i:06d}.{cn}") for i in range(names)] + [x509.DNSName(cn)]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(t)
            .not_valid_after(t + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def _hello(c: Conv) -> list[tuple[int, bytes]]:
    """TCP handshake and ClientHello (build what follows after calling this: frames take
    their times in the order they are made)."""
    return [*c.handshake(), *c.send(0, client_hello(b"blocked.example"))]


# -- the sample captures ------------------------------------------------------------------

EXPECTED_FAILURE = {
    "reset-after-clienthello.pcap": "tls/reset",
    "silent-drop.pcap": "tls/timeout",
    "injected-alert.pcap": "tls/alert:handshake_failure",
    "blockpage-on-443.pcap": "tls/not_tls",
    "hostile-garbage.pcap": "tls/not_tls",
    "clean-tls12.pcap": None,
    "kz2019-intercepted-tls12.pcap": None,
    "sslsplit-style-tls12.pcap": None,
    "clean-tls13.pcapng": None,
}


@pytest.mark.parametrize(("name", "failure"), EXPECTED_FAILURE.items())
def test_sample_captures(name: str, failure: str | None) -> None:
    obs, observer = observe_capture(CAPTURES / name)
    o = _one(obs)
    assert o.failure == failure and o.client_hello and o.sni
    assert o.time_ns > o.first_packet_ns  # the ClientHello comes after the TCP handshake
    assert observer.stats.handshakes == 1 and not observer.anomalies
    if name.endswith(".pcapng"):
        assert o.chain_encrypted and not o.chain_der and o.handshake_complete
        assert o.version == 0x0304
    elif failure is None:
        assert len(o.chain_der) >= 2 and o.handshake_complete and o.version == 0x0303
        assert o.ja3 and o.ja3s and o.ja4 and o.history.startswith("Csx")


def test_injected_reset_evidence() -> None:
    o = _one(observe_capture(CAPTURES / "reset-after-clienthello.pcap")[0])
    assert o.rst is not None and (o.rst.ttl, o.rst.ip_id) == (61, 0)
    assert o.rst.injected_evidence == ("ttl_differs_from_server(61!=52)", "ip_id_zero")
    assert o.handshake_ms == 2.0 and o.server_bytes == 0


def test_injected_alert_shows_in_the_server_ttls() -> None:
    o = _one(observe_capture(CAPTURES / "injected-alert.pcap")[0])
    assert o.server_alert == "handshake_failure"
    assert any("several TTLs (52x1, 61x3)" in a for a in o.anomalies)


def test_blockpage_bytes_are_kept_bounded() -> None:
    o = _one(observe_capture(CAPTURES / "blockpage-on-443.pcap")[0])
    assert o.non_tls_prefix.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"<title>Access restricted" in o.non_tls_prefix


def test_silent_drop_says_when_the_client_gave_up() -> None:
    o = _one(observe_capture(CAPTURES / "silent-drop.pcap")[0])
    assert o.anomalies == ("the client gave up 10000.0 ms after the ClientHello",)


def test_dns_answers() -> None:
    obs, observer = observe_capture(CAPTURES / "dns-tampering.pcap")
    got = {(o.qname, o.rcode, o.answers) for o in obs if isinstance(o, DnsObservation)}
    assert got == {("example.org", "NOERROR", ("198.51.100.10",)),
                   ("blocked-dns-zero.test", "NOERROR", ("0.0.0.0",)),
                   ("blocked-dns-nxdomain.test", "NXDOMAIN", ())}
    d = next(o for o in obs if isinstance(o, DnsObservation))
    assert d.flow.transport == "udp" and d.flow.server_port == 53
    assert d.first_packet_ns < d.time_ns and d.dns_ms == 21.0
    assert observer.stats.dns_answers == 3


# -- rules on crafted flows -----------------------------------------------------------------


def test_tcp_level_failures_on_tls_ports_only(tmp_path: Path) -> None:
    t = 10**18
    frames: list[tuple[int, bytes]] = []
    # A SYN never answered (retransmitted), then 20 s more of capture from another flow.
    c1 = Conv(client=("10.0.0.1", 40001), t0=t)
    frames += [c1.frame(c1.pkt(0, "S", advance=False)) for _ in range(3)]
    # A SYN answered by a RST.
    c2 = Conv(client=("10.0.0.1", 40002), t0=t + 1)
    frames += [c2.frame(c2.pkt(0, "S")), c2.frame(c2.pkt(1, "RA", ttl=61, ip_id=0))]
    # SYN-ACK, then a RST before any data.
    c3 = Conv(client=("10.0.0.1", 40003), t0=t + 2)
    frames += [*c3.handshake(), c3.frame(c3.pkt(1, "R", ttl=61))]
    # The same failures on a port that is not a TLS port: nothing is said.
    c4 = Conv(client=("10.0.0.1", 40004), server=("10.0.0.2", 8080), t0=t + 3)
    frames += [c4.frame(c4.pkt(0, "S"))]
    c5 = Conv(client=("10.0.0.9", 40005), t0=t + 30 * SECOND)
    frames += [*c5.handshake(), *c5.close()]
    got = {o.key.client_port: o for o in _flows(_observe(tmp_path, frames)[0])}
    assert set(got) == {40001, 40002, 40003}
    assert got[40001].failure == "tcp/timeout"
    assert got[40001].anomalies == ("the client sent its SYN 3 times",)
    assert got[40002].failure == "tcp/refused" and got[40002].rst is not None
    assert got[40002].rst.ttl == 61
    assert got[40003].failure == "tcp/reset" and got[40003].rst is not None
    assert got[40003].rst.injected_evidence[0] == "ttl_differs_from_server(61!=57)"


def test_reset_after_the_hello_with_several_rsts(tmp_path: Path) -> None:
    c = Conv()
    frames = _hello(c)
    frames += [c.frame(c.pkt(1, "RA", ttl=50, ip_id=7, advance=False)) for _ in range(3)]
    frames.append(c.frame(c.pkt(1, "A")))  # the real server still talks after "its" RST
    o = _one(_observe(tmp_path, frames)[0])
    assert o.failure == "tls/reset" and o.rst is not None
    ev = o.rst.injected_evidence
    assert "ttl_differs_from_server(50!=57)" in ev and "several_rsts(3)" in ev
    assert "ip_id_unlike_server(7 after 2000)" in ev and "server_sent_after_rst(1)" in ev


def test_rsts_after_the_client_gave_up_are_not_failures(tmp_path: Path) -> None:
    c = Conv()
    frames = _hello(c)
    frames += [c.frame(c.pkt(0, "RA")), c.frame(c.pkt(1, "R"))]
    o = _one(_observe(tmp_path, frames)[0])
    assert o.failure == "tls/timeout"  # nothing answered the hello before the client left


def test_server_fin_and_eof(tmp_path: Path) -> None:
    c = Conv()
    frames = _hello(c)
    frames.append(c.frame(c.pkt(1, "FA")))
    assert _one(_observe(tmp_path, frames)[0]).failure == "tls/eof"
    c = Conv()
    frames = _hello(c)
    frames += c.send(1, server_flight([b"\x30" * 50])[:30])  # a record cut by the FIN
    frames.append(c.frame(c.pkt(1, "FA")))
    assert _one(_observe(tmp_path, frames)[0]).failure == "tls/eof"


def test_not_tls_prefix_is_bounded(tmp_path: Path) -> None:
    c = Conv()
    page = b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 5000
    frames = _hello(c)
    frames += [*c.send(1, page), *c.close()]
    o = _one(_observe(tmp_path, frames)[0])
    assert o.failure == "tls/not_tls" and o.non_tls_prefix == page[:NON_TLS_PREFIX]


def test_warning_alert_then_nothing(tmp_path: Path) -> None:
    c = Conv()
    warning = record(21, b"\x01\x70")  # warning unrecognized_name
    frames = _hello(c)
    frames += c.send(1, warning)
    obs, _ = _observe(tmp_path, frames)
    assert obs == []  # the capture ended at once: too soon to say more
    frames.append(c.frame(c.pkt(0, "RA")))
    assert _one(_observe(tmp_path, frames)[0]).failure == "tls/alert:unrecognized_name"


def test_timeout_needs_the_capture_to_go_on(tmp_path: Path) -> None:
    c = Conv()
    obs, observer = _observe(tmp_path, _hello(c))
    assert obs == [] and observer.stats.cut_by_end == 1
    other = Conv(client=("10.0.0.9", 1), t0=c.t0 + WAIT_AT_END_NS + SECOND)
    obs, _ = _observe(tmp_path, [*_hello(Conv()), *other.handshake()])
    assert [o.failure for o in _flows(obs)] == ["tls/timeout"]


def test_truncated_file_claims_no_timeout(tmp_path: Path) -> None:
    c = Conv()
    frames = _hello(c)
    frames += c.send(1, server_flight([b"\x30" * 4000]))
    data = pcap_bytes(frames)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-2000])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CaptureWarning)
        obs, observer = observe_capture(path)
    assert observer.partial and observer.anomalies["truncated_file"] == 1
    assert obs == [] and observer.stats.cut_by_end == 1


def test_300kb_certificate_over_200_segments(tmp_path: Path) -> None:
    cert = _cert(12_600)
    assert len(cert) > 300_000
    c = Conv()
    frames = _hello(c)
    flight = c.send(1, server_flight([cert]), mss=1400)
    assert len(flight) > 200
    o = _one(_observe(tmp_path, [*frames, *flight, *c.close()])[0])
    assert o.chain_der == (cert,) and o.failure is None and o.server_bytes > 300_000


def test_server_side_only_capture_still_shows_the_chain(tmp_path: Path) -> None:
    c = Conv()
    cert = _cert()
    frames = [*c.handshake(), *c.send(0, client_hello()),
              *c.send(1, server_flight([cert]) + record(20, b"\x01")), *c.close()]
    server_only = [f for f in frames if f[1][26:30] == bytes([10, 0, 0, 2])]
    o = _one(_observe(tmp_path, server_only)[0])
    assert o.chain_der == (cert,) and not o.client_hello and o.sni is None
    assert o.handshake_complete and o.failure is None


def test_resumed_session_has_no_certificate(tmp_path: Path) -> None:
    c = Conv()
    sh = server_flight([b"\x30" * 10])[:5 + 4 + 38 + 4]  # the ServerHello only (re-framed)
    body = sh[5:]
    flight = record(22, body[: 4 + int.from_bytes(body[1:4], "big")]) + record(20, b"\x01")
    frames = _hello(c)
    frames += [*c.send(1, flight), *c.close()]
    o = _one(_observe(tmp_path, frames)[0])
    assert o.resumed and o.handshake_complete and not o.chain_der


def test_a_gap_in_the_server_handshake_claims_nothing(tmp_path: Path) -> None:
    c = Conv()
    frames = _hello(c)
    segs = c.send(1, server_flight([_cert(300)]), mss=500)
    frames += [*segs[:1], *segs[2:], *c.close()]
    o = _one(_observe(tmp_path, frames)[0])
    assert o.bytes_missing and o.failure is None and not o.chain_der
    assert "tcp_gap" in o.anomalies[0]


def test_dns_hostile_and_duplicate_answers(tmp_path: Path) -> None:
    t = 10**18

    def udp(ts: int, src: str, dst: str, sport: int, dport: int, payload: bytes) -> tuple[
            int, bytes]:
        return ts, bytes(eth() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload)

    q = DNS(id=9, rd=1, qd=DNSQR(qname="x.example"))
    forged = DNS(id=9, qr=1, qd=DNSQR(qname="x.example"),
                 an=DNSRR(rrname="x.example", rdata="10.10.34.35"))
    real = DNS(id=9, qr=1, qd=DNSQR(qname="x.example"),
               an=DNSRR(rrname="x.example", rdata="93.184.216.34"))
    mx = DNS(id=10, qr=1, qd=DNSQR(qname="x.example", qtype="MX"))
    frames = [udp(t, "10.0.0.1", "9.9.9.9", 5000, 53, bytes(q)),
              udp(t + 1000, "9.9.9.9", "10.0.0.1", 53, 5000, bytes(forged)),
              udp(t + 9000, "9.9.9.9", "10.0.0.1", 53, 5000, bytes(real)),
              udp(t + 9500, "9.9.9.9", "10.0.0.1", 53, 5000, bytes(mx)),
              udp(t + 9600, "9.9.9.9", "10.0.0.1", 53, 5001,  # claims 5 answers, has none
                  bytes.fromhex("0001818000010005000000000000010001ffffff")),
              udp(t + 9700, "9.9.9.9", "10.0.0.1", 53, 5002, b"\x01")]
    obs, observer = _observe(tmp_path, frames)
    first, second = obs
    assert isinstance(first, DnsObservation) and isinstance(second, DnsObservation)
    assert first.answers == ("10.10.34.35",) and second.answers == ("93.184.216.34",)
    assert second.anomalies == ("another answer to the same query came 0.008 ms earlier",)
    assert observer.own_anomalies["dns_malformed"] == 2


def test_dns_names_fill_in_for_flows_without_sni(tmp_path: Path) -> None:
    t = 10**18
    a = DNS(id=1, qr=1, qd=DNSQR(qname="named.example"),
            an=DNSRR(rrname="named.example", rdata="10.0.0.2"))
    frames = [(t, bytes(eth() / IP(src="9.9.9.9", dst="10.0.0.1") / UDP(sport=53, dport=7)
                        / bytes(a)))]
    c = Conv(t0=t + 1000)
    no_sni = record(22, b"\x01" + (40).to_bytes(3, "big") + b"\x03\x03" + b"\x01" * 32
                    + b"\x00\x00\x02\x13\x01\x01\x00")  # a ClientHello without extensions
    frames += [*c.handshake(), *c.send(0, no_sni),
               *c.send(1, server_flight([_cert()]) + record(20, b"\x01"))]
    flow = _one(_observe(tmp_path, frames)[0])
    assert flow.sni is None and flow.dns_name == "named.example"


def test_not_a_capture(tmp_path: Path) -> None:
    (tmp_path / "x.pcap").write_text("hello\n")
    with pytest.raises(CaptureFormatError):
        observe_capture(tmp_path / "x.pcap")


# -- hostile input: mutated real captures never raise --------------------------------------

_SAMPLES = [(CAPTURES / n).read_bytes() for n in (
    "kz2019-intercepted-tls12.pcap", "reset-after-clienthello.pcap", "dns-tampering.pcap",
    "clean-tls13-hrr.pcapng", "blockpage-on-443.pcap")]


@settings(max_examples=120, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(sample=st.sampled_from(_SAMPLES), data=st.data())
def test_mutated_sample_captures(tmp_path: Path, sample: bytes, data: st.DataObject) -> None:
    blob = bytearray(sample)
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(24, len(blob) - 1))  # keep the file header: reach the parsers
        op = data.draw(st.sampled_from(["flip", "byte", "cut", "insert"]))
        if op == "flip":
            blob[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "byte":
            blob[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del blob[i : i + data.draw(st.integers(1, 64))]
        else:
            blob[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    path = tmp_path / "m.pcap"
    path.write_bytes(bytes(blob))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CaptureWarning)
        with contextlib.suppress(CaptureFormatError):  # (a header made unreadable)
            observe_capture(path)


# -- connect_ms: SYN -> SYN-ACK ---------------------------------------------------------------


def test_connect_ms_is_syn_to_synack(tmp_path: Path) -> None:
    t = 10**18
    frames: list[tuple[int, bytes]] = []
    # A handshake that completes (observed before the flow ends), SYN-ACK 3 ms after the SYN.
    c1 = Conv(client=("10.0.0.1", 40001), t0=t, step=3_000_000)
    frames += [*_hello(c1), *c1.send(1, server_flight([_cert()]) + record(20, b"\x01"))]
    # A SYN sent twice, answered 1 s + 2 ms after the first; then a reset (tcp/reset).
    c2 = Conv(client=("10.0.0.1", 40002), t0=t + 1)
    frames += [c2.frame(c2.pkt(0, "S", advance=False))]
    c2.t0 += SECOND
    frames += [*c2.handshake(), c2.frame(c2.pkt(1, "R", ttl=61))]
    # No SYN-ACK at all: the SYN timed out (capture goes on long enough).
    c3 = Conv(client=("10.0.0.1", 40003), t0=t + 2)
    frames += [c3.frame(c3.pkt(0, "S"))]
    c4 = Conv(client=("10.0.0.9", 40004), t0=t + 30 * SECOND)
    frames += [*c4.handshake(), *c4.close()]
    got = {o.key.client_port: o for o in _flows(_observe(tmp_path, frames)[0])}
    assert got[40001].failure is None and got[40001].handshake_complete
    assert got[40001].connect_ms == 3.0
    assert got[40002].failure == "tcp/reset" and got[40002].connect_ms == 1002.0
    assert got[40003].failure == "tcp/timeout" and got[40003].connect_ms is None


def test_connect_ms_needs_both_syns(tmp_path: Path) -> None:
    c = Conv()
    frames = [*c.handshake(), *c.send(0, client_hello()),
              *c.send(1, server_flight([_cert()]) + record(20, b"\x01")), *c.close()]
    server_only = [f for f in frames if f[1][26:30] == bytes([10, 0, 0, 2])]
    assert _one(_observe(tmp_path, server_only)[0]).connect_ms is None  # SYN-ACK only
    assert _one(_observe(tmp_path, frames[2:])[0]).connect_ms is None  # picked up mid-stream


def test_connect_ms_of_the_sample_captures() -> None:
    # captures/ are made with a 40 ms round trip, seen at the client.
    o = _one(observe_capture(CAPTURES / "reset-after-clienthello.pcap")[0])
    assert o.connect_ms == 40.0

"""DNS over TCP: length-prefixed framing under any split, and answers read from TCP flows
judged like UDP ones (bounded per connection, given up at a gap)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR

from tlswatch.capture.dns_tcp import DnsTcpStream
from tlswatch.capture.observe import (
    MAX_DNS_TCP_MESSAGES,
    DnsObservation,
    FlowObservation,
    Observation,
    observe_capture,
)
from tlswatch.classify.capture_record import capture_record
from tlswatch.classify.chain import ChainJudge
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import load_stores

from .capbuild import Conv, pcap_bytes

RESOLVER = ("203.0.113.53", 53)


def _framed(msg: bytes) -> bytes:
    return len(msg).to_bytes(2, "big") + msg


def _query(qid: int, name: str = "blocked.example") -> bytes:
    return bytes(DNS(id=qid, rd=1, qd=DNSQR(qname=name)))


def _answer(qid: int, address: str, name: str = "blocked.example") -> bytes:
    return bytes(DNS(id=qid, qr=1, qd=DNSQR(qname=name),
                     an=DNSRR(rrname=name, type="A", rdata=address)))


# -- framing --------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=6), st.data())
def test_messages_come_out_whole_under_any_split(msgs: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(_framed(m) for m in msgs)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(wire)), max_size=12)))
    stream = DnsTcpStream()
    got: list[bytes] = []
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        got += stream.feed(a, wire[a:b])
        assert stream.buffered < 65537
    assert got == msgs and stream.messages == len(msgs) and stream.buffered == 0


def test_largest_message_and_byte_at_a_time() -> None:
    big = bytes(range(256)) * 255 + b"x" * 255  # 65535 bytes: the prefix's maximum
    wire = _framed(big) + _framed(b"small")
    stream = DnsTcpStream()
    got = [m for i in range(len(wire)) for m in stream.feed(i, wire[i : i + 1])]
    assert got == [big, b"small"]


def test_a_gap_stops_the_framing_for_good() -> None:
    wire = _framed(b"first") + _framed(b"second") + _framed(b"third")
    stream = DnsTcpStream()
    assert stream.feed(0, wire[:9]) == [b"first"]
    assert stream.feed(12, wire[12:]) == []  # bytes 9..11 never came
    assert stream.broken and stream.buffered == 0
    assert stream.feed(len(wire), _framed(b"later")) == []


# -- observations ---------------------------------------------------------------------------


def _dns_conv(exchanges: list[tuple[bytes, bytes]], *, pipelined: bool = False,
              gap_after: int | None = None) -> list[tuple[int, bytes]]:
    c = Conv(client=("192.0.2.10", 45000), server=RESOLVER, step=2_000_000)
    frames = c.handshake()
    if pipelined:
        frames += c.send(0, b"".join(_framed(q) for q, _ in exchanges))
        frames += c.send(1, b"".join(_framed(a) for _, a in exchanges))
    else:
        for i, (q, a) in enumerate(exchanges):
            frames += c.send(0, _framed(q))
            answer = c.send(1, _framed(a))
            if gap_after is not None and i == gap_after:
                answer = []  # the capture missed this answer
            frames += answer
    frames += c.close()
    return frames


def _observe(tmp_path: Path, frames: list[tuple[int, bytes]]) -> tuple[list[Observation], int]:
    path = tmp_path / "dns-tcp.pcap"
    path.write_bytes(pcap_bytes(frames))
    obs, o = observe_capture(path)
    return obs, o.stats.dns_tcp_answers


def test_an_answer_over_tcp_is_judged_like_udp(tmp_path: Path) -> None:
    obs, tcp_answers = _observe(tmp_path, _dns_conv([(_query(7), _answer(7, "10.10.34.35"))]))
    assert not [o for o in obs if isinstance(o, FlowObservation)]
    (d,) = obs
    assert isinstance(d, DnsObservation) and tcp_answers == 1
    assert (d.flow.transport, d.flow.client_ip, d.flow.server_port) == ("tcp", "192.0.2.10", 53)
    assert (d.qname, d.qtype, d.rcode, d.answers) == ("blocked.example", "A", "NOERROR",
                                                       ("10.10.34.35",))
    assert d.dns_ms is not None and d.dns_ms > 0 and not d.anomalies  # the query was seen
    judge = ChainJudge(load_stores(["mozilla"]), load_registry())
    out = capture_record(d, judge, run_id="r", file_sha256="ab" * 32)
    assert out is not None
    rec, _ = out
    assert rec.outcome == "dns/bogon:private" and rec.flow is not None
    assert rec.flow.transport == "tcp" and rec.dns is not None
    assert rec.dns.answers == ("10.10.34.35",)


def test_pipelined_queries_on_one_connection(tmp_path: Path) -> None:
    names = [f"n{i}.example" for i in range(3)]
    exchanges = [(_query(i, n), _answer(i, f"198.51.100.{i + 1}", n)) for i, n in
                 enumerate(names)]
    obs, n = _observe(tmp_path, _dns_conv(exchanges, pipelined=True))
    assert n == 3
    assert [(o.qname, o.answers) for o in obs if isinstance(o, DnsObservation)] == [
        (nm, (f"198.51.100.{i + 1}",)) for i, nm in enumerate(names)]


def test_messages_per_connection_are_capped(tmp_path: Path) -> None:
    exchanges = [(_query(i), _answer(i, "198.51.100.9")) for i in range(MAX_DNS_TCP_MESSAGES)]
    path = tmp_path / "many.pcap"
    path.write_bytes(pcap_bytes(_dns_conv(exchanges)))
    obs, o = observe_capture(path)
    # (queries count too: half the cap is answered)
    assert o.stats.dns_tcp_answers == MAX_DNS_TCP_MESSAGES // 2 == len(obs)
    assert o.anomalies["dns_tcp_capped"] == 1


def test_a_missing_answer_loses_the_framing_not_the_run(tmp_path: Path) -> None:
    exchanges = [(_query(i), _answer(i, "198.51.100.9")) for i in range(4)]
    obs, n = _observe(tmp_path, _dns_conv(exchanges, gap_after=1))
    # The first answer is read; the capture missed the second; nothing after it is guessed.
    assert n == 1 and len(obs) == 1


def test_hostile_messages_are_anomalies(tmp_path: Path) -> None:
    exchanges = [(_query(1), b"\x00\x01\x81\x80" + b"\xff" * 30), (_query(2), b"tiny")]
    path = tmp_path / "hostile.pcap"
    path.write_bytes(pcap_bytes(_dns_conv(exchanges)))
    obs, o = observe_capture(path)
    assert obs == [] and o.anomalies["dns_malformed"] == 2

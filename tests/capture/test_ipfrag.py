"""IP fragment reassembly: whole datagrams in any order, first copy wins, every bound, and a
ClientHello split over fragments that still comes out with its SNI and verdict."""

from __future__ import annotations

import itertools
import random
import struct
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from tlswatch.capture import Anomaly, FragmentReassembler, LinkType, ip_to_str
from tlswatch.capture.layers import PacketTuple, decode_tuple
from tlswatch.capture.observe import FlowObservation, observe_capture
from tlswatch.classify.capture_record import capture_record
from tlswatch.classify.chain import ChainJudge
from tlswatch.testing import FIXED_NOW, CertFactory
from tlswatch.testing.pcap_writer import Host, TcpFlow, replay
from tlswatch.testing.transcripts import tls12_handshake
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import load_stores

from .capbuild import Conv, client_hello, eth, server_flight
from .capbuild import pcap_bytes as cap_pcap

SECOND = 1_000_000_000
PAYLOAD = bytes(range(256)) * 3  # 768 bytes, every fragment's bytes distinct
TCP4 = IP(src="198.51.100.7", dst="192.0.2.1", ttl=51, id=4242) / TCP(
    sport=40000, dport=443, seq=7, ack=9, flags="PA") / Raw(PAYLOAD)


def _feed(r: FragmentReassembler, frames: list[Packet | bytes], t0: int = 0,
          step: int = 1000) -> list[PacketTuple]:
    """Decode each raw IP packet; the datagrams the reassembler hands back."""
    out = []
    for i, f in enumerate(frames):
        p = decode_tuple(LinkType.RAW, bytes(f), r.anomalies, r)
        if p is None and r.pending is not None:
            p = r.take(t0 + i * step)
        if p is not None:
            out.append(p)
    return out


def _v6_tcp(payload: bytes = PAYLOAD, ext: Packet | None = None) -> Packet:
    ip = IPv6(src="2001:db8::7", dst="2001:db8::1", hlim=44)
    if ext is not None:
        ip = ip / ext
    return ip / IPv6ExtHdrFragment(id=0x1234567) / TCP(sport=40000, dport=443, seq=7,
                                                       flags="PA") / Raw(payload)


@pytest.mark.parametrize("order", ["forward", "reverse", "shuffled"])
@pytest.mark.parametrize("size", [8, 64, 400])
def test_ipv4_datagram_in_any_order(order: str, size: int) -> None:
    frags = fragment(TCP4.copy(), size)
    if order == "reverse":
        frags.reverse()
    elif order == "shuffled":
        random.Random(size).shuffle(frags)
    r = FragmentReassembler()
    (p,) = _feed(r, frags)
    assert (ip_to_str(p[0]), ip_to_str(p[1]), p[2], p[3], p[4]) == (
        "198.51.100.7", "192.0.2.1", 6, 51, 4242)
    assert (p[5], p[6], p[7], p[8], p[9]) == (40000, 443, 7, 9, 0x18)
    assert p[11] == PAYLOAD
    assert r.anomalies == Counter({Anomaly.IP_FRAGMENT: len(frags)})
    assert r.reassembled == 1 and r.incomplete == 0 and r.held_bytes == 0


@pytest.mark.parametrize("ext", [None, IPv6ExtHdrDestOpt()])
def test_ipv6_datagram_with_extension_headers(ext: Packet | None) -> None:
    frags = fragment6(_v6_tcp(ext=ext), 200)
    assert len(frags) > 3
    r = FragmentReassembler()
    (p,) = _feed(r, list(reversed(frags)))
    assert (ip_to_str(p[0]), p[2], p[3], p[4], p[11]) == ("2001:db8::7", 6, 44, None, PAYLOAD)


def test_udp_datagram_and_other_protocols() -> None:
    r = FragmentReassembler()
    udp = IP(src="203.0.113.53", dst="192.0.2.10", id=5) / UDP(sport=53, dport=5353) / Raw(
        PAYLOAD)
    udp_frags = fragment(udp, 256)
    (p,) = _feed(r, udp_frags)
    assert p[2] == 17 and p[11] == PAYLOAD
    # ICMP fragments are counted, never held: nothing but TCP and UDP is decoded anyway.
    icmp = fragment(IP(src="203.0.113.1", dst="192.0.2.10") / ICMP() / Raw(PAYLOAD), 256)
    assert _feed(r, icmp) == [] and r.incomplete == 0 and r.held_bytes == 0
    assert r.anomalies[Anomaly.IP_FRAGMENT] == len(icmp) + len(udp_frags)


def _raw_fragment(offset: int, data: bytes, more: bool, ident: int = 77) -> bytes:
    """An IPv4 fragment of a TCP datagram: ``data`` at byte ``offset``."""
    return bytes(IP(src="10.0.0.1", dst="10.0.0.2", id=ident, proto=6, frag=offset // 8,
                    flags="MF" if more else 0) / Raw(data))


def _datagram_bytes() -> bytes:
    return bytes(TCP(sport=1, dport=2, seq=3, flags="A") / Raw(PAYLOAD))


def test_overlaps_first_copy_wins_and_differences_are_counted() -> None:
    whole = _datagram_bytes()
    forged = bytearray(whole)
    forged[40:48] = b"EVIL!!!!"
    r = FragmentReassembler()
    frames = [
        _raw_fragment(0, whole[:64], True),
        _raw_fragment(32, bytes(forged[32:96]), True),  # differs at 40..47: the first copy wins
        _raw_fragment(64, whole[64:128], True),  # the same bytes again: no anomaly
        _raw_fragment(64, whole[64:], False),
    ]
    (p,) = _feed(r, frames)
    assert p[11] == PAYLOAD
    assert r.anomalies[Anomaly.IP_FRAGMENT_OVERLAP_CONFLICT] == 1


def test_invalid_fragments_are_dropped() -> None:
    whole = _datagram_bytes()
    r = FragmentReassembler()
    bad = [
        _raw_fragment(0, whole[:13], True),  # a non-last fragment not a multiple of 8
        _raw_fragment(65512, b"x" * 16, False, ident=5),  # past 64 KiB
    ]
    assert _feed(r, bad) == [] and r.anomalies[Anomaly.IP_FRAGMENT_BAD] == 2
    assert r.incomplete == 0
    # Two different ends: the first one stands, bytes past it are invalid.
    ends = [_raw_fragment(64, whole[64:], False), _raw_fragment(64, whole[64:] + b"12345678",
                                                              False),
            _raw_fragment(len(whole), b"z" * 8, True), _raw_fragment(0, whole[:64], True)]
    (p,) = _feed(r, ends)
    assert p[11] == PAYLOAD and r.anomalies[Anomaly.IP_FRAGMENT_BAD] == 4


def test_bytes_past_a_later_known_end_are_trimmed() -> None:
    whole = _datagram_bytes()
    r = FragmentReassembler()
    (p,) = _feed(r, [_raw_fragment(0, whole + b"x" * (-len(whole) % 8) + b"y" * 8, True),
                     _raw_fragment(8, whole[8:], False)])
    assert p[11] == PAYLOAD and r.anomalies[Anomaly.IP_FRAGMENT_BAD] == 1


def test_too_many_fragments_drop_the_datagram() -> None:
    r = FragmentReassembler(max_fragments=4)
    frags = fragment(TCP4.copy(), 8)
    assert _feed(r, frags) == []
    assert r.anomalies[Anomaly.IP_FRAGMENT_TOO_MANY] >= 1 and r.held_bytes < 64


def test_timeout_in_capture_time_and_incomplete_at_the_end() -> None:
    first, *rest = fragment(TCP4.copy(), 256)
    r = FragmentReassembler(timeout_ns=30 * SECOND)
    assert _feed(r, [first], t0=0) == []
    # The rest arrives after the timeout: the datagram was given up, its tail is a new one.
    assert _feed(r, rest, t0=31 * SECOND) == []
    assert r.anomalies[Anomaly.IP_FRAGMENT_TIMEOUT] == 1 and r.incomplete == 1
    r.finish(32 * SECOND)
    assert r.anomalies[Anomaly.IP_FRAGMENT_INCOMPLETE] == 1
    assert r.incomplete == 0 and r.held_bytes == 0
    r2 = FragmentReassembler(timeout_ns=30 * SECOND)
    _feed(r2, [first], t0=0)
    r2.finish(40 * SECOND)  # the capture went on long enough: a timeout
    assert r2.anomalies[Anomaly.IP_FRAGMENT_TIMEOUT] == 1


def test_overflow_drops_the_oldest_datagram() -> None:
    r = FragmentReassembler(max_datagrams=2)
    frames = []
    for ident in (1, 2, 3):
        p = TCP4.copy()
        p.id = ident
        frames.append(fragment(p, 256))
    _feed(r, [f[0] for f in frames])
    assert r.incomplete == 2 and r.anomalies[Anomaly.IP_FRAGMENT_OVERFLOW] == 1
    # Datagram 1 is gone: its other fragments start afresh; 2 and 3 still complete.
    assert len(_feed(r, frames[1][1:] + frames[2][1:])) == 2
    rb = FragmentReassembler(max_bytes=600)
    _feed(rb, [f[0] for f in frames])
    assert rb.held_bytes <= 600 and rb.anomalies[Anomaly.IP_FRAGMENT_OVERFLOW] >= 1


@st.composite
def _fragment_plans(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int, bool, bool]]]:
    """A UDP datagram and fragments of it: (offset, length, more, corrupt), shuffled, with
    overlapping copies (some corrupted) and duplicates."""
    size = draw(st.integers(9, 1200))
    data = struct.pack("!HHHH", 1, 2, size, 0) + draw(st.binary(min_size=size - 8,
                                                                max_size=size - 8))
    units = (size + 7) // 8
    cuts = sorted(draw(st.sets(st.integers(1, units - 1), max_size=20)))
    bounds = [0, *(c * 8 for c in cuts), size]
    plan = [(a, b - a, b != size, False) for a, b in itertools.pairwise(bounds)]
    for _ in range(draw(st.integers(0, 6))):  # extra overlapping copies
        start = draw(st.integers(0, units - 1)) * 8
        length = min(draw(st.integers(1, 64)) * 8, size - start)
        plan.append((start, length, start + length != size, draw(st.booleans())))
    return data, draw(st.permutations(plan))


@settings(max_examples=300, deadline=None)
@given(_fragment_plans(), st.integers(1, 64), st.integers(64, 4096), st.booleans())
def test_fuzzed_fragments_never_crash_and_stay_bounded(
        case: tuple[bytes, list[tuple[int, int, bool, bool]]], max_fragments: int,
        max_bytes: int, loose: bool) -> None:
    data, plan = case
    if loose:  # bounds that never bite: the datagram must come out
        max_fragments, max_bytes = 1000, 1 << 20
    r = FragmentReassembler(max_fragments=max_fragments, max_bytes=max_bytes, max_datagrams=3)
    got: list[bytes] = []
    corrupted = False
    for i, (off, length, more, corrupt) in enumerate(plan):
        piece = data[off : off + length]
        if corrupt:
            piece = bytes(b ^ 0xFF for b in piece)
            corrupted = True
        r.stash(b"\x0a\0\0\x01", b"\x0a\0\0\x02", 17, 64, 9, off, more, piece)
        out = r.take(i * 1000)
        if out is not None:
            got.append(out[11])
        assert r.held_bytes <= max_bytes and r.incomplete <= 1
    r.finish(len(plan) * 1000)
    assert r.incomplete == 0 and r.held_bytes == 0
    if not corrupted:
        # Whole or never: a datagram that comes out is the original; with loose bounds it
        # always comes out (the first complete cover; later copies start a new datagram).
        assert all(g == data[8:] for g in got)
        if loose:
            assert got


# -- end to end ----------------------------------------------------------------------------


def _fragmented_client_hello_capture(size: int, v6: bool = False) -> bytes:
    """A TLS 1.2 session whose ClientHello segment travels in ``size``-byte IP fragments,
    last fragment first (as evasion tools send them)."""
    c = Conv(v6=v6, client=("2001:db8::1" if v6 else "10.0.0.1", 40000),
             server=("2001:db8::2" if v6 else "10.0.0.2", 443))
    frames = c.handshake()
    hello = c.pkt(0, "PA", client_hello(b"fragmented.example"))
    if v6:
        ip6 = IPv6(bytes(hello))
        parts = fragment6(IPv6(src=ip6.src, dst=ip6.dst, hlim=ip6.hlim) / IPv6ExtHdrFragment(
            id=99) / ip6.payload, size + 48)
    else:
        parts = fragment(hello, size)
    frames += [c.frame(q) for q in reversed(parts)]
    frames += c.send(1, server_flight([b"\x30\x03\x02\x01\x00"]))
    frames += c.close()
    return cap_pcap(frames)


@pytest.mark.parametrize(("size", "v6"), [(8, False), (24, False), (64, True)])
def test_a_fragmented_client_hello_keeps_its_sni(tmp_path: Path, size: int, v6: bool) -> None:
    path = tmp_path / "frag.pcap"
    path.write_bytes(_fragmented_client_hello_capture(size, v6))
    obs, o = observe_capture(path)
    (flow,) = [x for x in obs if isinstance(x, FlowObservation)]
    assert flow.sni == "fragmented.example" and flow.client_hello and flow.chain_der
    assert o.anomalies[Anomaly.IP_FRAGMENT] > 1 and o.reader.fragments.reassembled == 1
    assert o.stats.reassembled == 1


def test_kz2019_interception_seen_through_fragments(tmp_path: Path) -> None:
    """A real (synthesized, seeded) TLS 1.2 interception transcript with its ClientHello in
    8-byte fragments: the SNI and the intercepted verdict come out as without fragments."""
    kz = CertFactory(seed=0, now=FIXED_NOW).forged_2019("facebook.com")
    assert kz.leaf_key is not None
    transcript = tls12_handshake(kz.chain, kz.leaf_key, sni="facebook.com", seed=0,
                                 label="test-ipfrag")
    client = Host("192.0.2.10", "00:00:5e:00:53:0a")
    server = Host("198.51.100.20", "00:00:5e:00:53:01", ttl=58)
    flow = TcpFlow(client, server, client_port=40123,
                   start_ns=int(FIXED_NOW.timestamp()) * SECOND)
    flow.connect()
    replay(flow, transcript.flights)
    flow.close()
    packets = []
    for pkt in flow.packets:
        ip = Ether(pkt.frame)[IP]
        if ip.src == client.ip and bytes(ip[TCP].payload)[:1] == b"\x16":  # the ClientHello
            ip.flags = 0
            for i, part in enumerate(fragment(ip, 8)):
                packets.append((pkt.t_ns + i, bytes(eth() / part)))
        else:
            packets.append((pkt.t_ns, pkt.frame))
    assert len(packets) > len(flow.packets) + 10
    path = tmp_path / "kz-frag.pcap"
    path.write_bytes(cap_pcap(packets))
    obs, _ = observe_capture(path)
    (o,) = obs
    assert isinstance(o, FlowObservation) and o.sni == "facebook.com"
    root = Path(__file__).resolve().parents[2] / "captures" / "lab-public-root.pem"
    judge = ChainJudge(load_stores([str(root)]), load_registry())
    result = capture_record(o, judge, run_id="r", file_sha256="ab" * 32)
    assert result is not None
    rec, _ = result
    assert rec.target.sni == "facebook.com"
    assert (rec.verdict, rec.outcome) == (
        "intercepted", "cert/known_interception_ca:kz-2019-qaznet-root")

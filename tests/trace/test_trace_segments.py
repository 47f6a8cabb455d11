"""TCP header facts from raw-socket bytes: the TTL and IP ID of a RST, payload lengths."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from tlswatch.trace.segments import TCP_ACK, TCP_RST, TCP_SYN, parse_tcp4, parse_tcp6


def test_rst_keeps_ttl_and_ip_id() -> None:
    pkt = bytes(IP(src="198.18.3.2", dst="198.18.1.2", ttl=61, id=4242) /
                TCP(sport=443, dport=40000, flags="R", seq=5))
    seg = parse_tcp4(pkt)
    assert seg is not None
    assert (seg.src, seg.sport, seg.dport, seg.ttl, seg.ip_id, seg.payload_len) == (
        "198.18.3.2", 443, 40000, 61, 4242, 0)
    assert seg.flags & TCP_RST


def test_payload_length_survives_a_short_read() -> None:
    pkt = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=443, dport=1, flags="PA",
                                                         options=[("NOP", None)] * 4)
                / (b"\x16" * 1000))
    seg = parse_tcp4(pkt[:80])  # raw sockets hand us headers only
    assert seg is not None and seg.payload_len == 1000


def test_syn_ack_v6_uses_ancillary_hop_limit() -> None:
    seg_bytes = bytes(TCP(sport=443, dport=40001, flags="SA"))
    seg = parse_tcp6(seg_bytes, "2001:db8::5", 58, len(seg_bytes))
    assert seg is not None and seg.ttl == 58 and seg.ip_id is None
    assert seg.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
    assert bytes(IPv6())  # scapy's IPv6 is importable: used to build quotes elsewhere


def test_malformed_headers_are_none() -> None:
    good = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP())
    assert parse_tcp4(good[:39]) is None  # TCP header cut
    bad_doff = bytearray(good)
    bad_doff[32] = 0x10  # data offset 4 bytes
    assert parse_tcp4(bytes(bad_doff)) is None
    frag = bytes(IP(src="10.0.0.1", dst="10.0.0.2", frag=10) / TCP())
    assert parse_tcp4(frag) is None
    assert parse_tcp6(b"\x00" * 10, "::1", None, 10) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 70000))
def test_hostile_bytes_never_raise(data: bytes, n: int) -> None:
    parse_tcp4(data)
    parse_tcp4(b"\x45" + data)
    parse_tcp6(data, "::1", None, n)

"""ICMP errors quoting our TCP segments: real packets built with scapy, and hostile bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6TimeExceeded,
    IPv6,
)
from scapy.packet import Raw

from tlswatch.trace.icmp import parse_icmp4, parse_icmp6

CLIENT, SERVER, ROUTER = "198.18.1.2", "198.18.3.2", "198.18.2.2"


def _quoted_v4(ttl: int = 1) -> IP:
    return IP(src=CLIENT, dst=SERVER, ttl=ttl) / TCP(sport=40000, dport=443, seq=12345,
                                                     flags="PA") / (b"\x16\x03\x01" + b"x" * 60)


def test_time_exceeded_v4_names_the_router_and_our_flow() -> None:
    pkt = bytes(IP(src=ROUTER, dst=CLIENT, ttl=63) / ICMP(type=11, code=0) / _quoted_v4())
    err = parse_icmp4(pkt)
    assert err is not None
    assert (err.router, err.kind, err.type, err.code, err.ttl) == (ROUTER, "time_exceeded", 11,
                                                                   0, 63)
    q = err.quote
    assert (q.src, q.dst, q.sport, q.dport, q.seq, q.ttl) == (CLIENT, SERVER, 40000, 443,
                                                              12345, 1)


def test_rfc792_minimum_quote_is_enough_and_four_bytes_give_no_seq() -> None:
    inner = bytes(_quoted_v4())
    eight = bytes(IP(src=ROUTER, dst=CLIENT) / ICMP(type=11) / Raw(inner[:28]))
    err = parse_icmp4(eight)
    assert err is not None and err.quote.seq == 12345 and err.quote.length == 28
    four = bytes(IP(src=ROUTER, dst=CLIENT) / ICMP(type=11) / Raw(inner[:24]))
    err4 = parse_icmp4(four)
    assert err4 is not None and err4.quote.seq is None and err4.quote.sport == 40000
    assert parse_icmp4(bytes(IP(src=ROUTER, dst=CLIENT) / ICMP(type=11) / Raw(inner[:23]))) is None
    # Bytes beyond the outer IP total length are link padding, not part of the quote.
    padded = bytes(IP(src=ROUTER, dst=CLIENT) / ICMP(type=11) / Raw(inner[:23])) + inner[23:]
    assert parse_icmp4(padded) is None


def test_unreachable_v4_and_other_icmp_types() -> None:
    unreach = bytes(IP(src=ROUTER, dst=CLIENT) / ICMP(type=3, code=13) / _quoted_v4(5))
    err = parse_icmp4(unreach)
    assert err is not None and err.kind == "unreachable" and err.code == 13
    assert err.quote.ttl == 5
    assert parse_icmp4(bytes(IP(src=ROUTER, dst=CLIENT) / ICMP(type=8))) is None  # echo
    assert parse_icmp4(bytes(IP(src=ROUTER, dst=CLIENT) / ICMP(type=11) /
                             IP(src=CLIENT, dst=SERVER) / UDP(sport=1, dport=53))) is None
    assert parse_icmp4(bytes(_quoted_v4())) is None  # TCP, not ICMP


def test_scapy_error_layers_parse_the_same() -> None:
    pkt = bytes(IP(src=ROUTER, dst=CLIENT) / ICMP(type=11) /
                IPerror(src=CLIENT, dst=SERVER, ttl=1) / TCPerror(sport=41000, dport=8443, seq=7))
    err = parse_icmp4(pkt)
    assert err is not None and (err.quote.sport, err.quote.dport, err.quote.seq) == (41000,
                                                                                   8443, 7)


def test_ip_options_in_outer_and_quoted_headers() -> None:
    inner = IP(src=CLIENT, dst=SERVER, ttl=1, options=b"\x01\x01\x01\x00") / TCP(sport=5,
                                                                               dport=443)
    pkt = bytes(IP(src=ROUTER, dst=CLIENT, options=b"\x01\x01\x01\x00") / ICMP(type=11) / inner)
    err = parse_icmp4(pkt)
    assert err is not None and err.quote.sport == 5 and err.router == ROUTER


def test_time_exceeded_v6_without_ip_header() -> None:
    quoted = IPv6(src="2001:db8::2", dst="2001:db8:3::2", hlim=1) / TCP(sport=40001,
                                                                       dport=443, seq=99)
    msg = bytes(ICMPv6TimeExceeded() / quoted)
    err = parse_icmp6(msg, "2001:db8:1::1", hop_limit=62)
    assert err is not None
    assert (err.router, err.kind, err.ttl) == ("2001:db8:1::1", "time_exceeded", 62)
    assert (err.quote.src, err.quote.dst, err.quote.sport, err.quote.seq, err.quote.ttl) == (
        "2001:db8::2", "2001:db8:3::2", 40001, 99, 1)
    unreach = parse_icmp6(bytes(ICMPv6DestUnreach(code=1) / quoted), "fe80::1%eth0")
    assert unreach is not None and unreach.kind == "unreachable" and unreach.router == "fe80::1"
    assert parse_icmp6(bytes(ICMPv6EchoRequest()), "2001:db8::1") is None
    assert parse_icmp6(msg, "not an address") is None


def test_every_truncation_is_none_or_a_parse_never_an_exception() -> None:
    pkt = bytes(IP(src=ROUTER, dst=CLIENT) / ICMP(type=11) / _quoted_v4())
    for n in range(len(pkt) + 1):
        parse_icmp4(pkt[:n])
    msg = bytes(ICMPv6TimeExceeded() / IPv6(src="::1", dst="::2") / TCP())
    for n in range(len(msg) + 1):
        parse_icmp6(msg[:n], "::3")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_hostile_bytes_never_raise(data: bytes) -> None:
    parse_icmp4(data)
    parse_icmp4(b"\x45" + data)
    parse_icmp6(data, "2001:db8::1")

"""Link, IP and transport decoding for every supported link type and header variant."""

from __future__ import annotations

import struct
from collections import Counter

import pytest
from scapy.layers.inet import IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Loopback
from scapy.packet import Packet, Raw

from tlswatch.capture import Anomaly, LinkType, decode, ip_to_str

from .capbuild import eth

TCP4 = IP(src="198.51.100.7", dst="192.0.2.1", ttl=51, id=4242) / TCP(
    sport=443, dport=51000, seq=123456, ack=654321, flags="PA", window=999) / Raw(b"hello")
TCP6 = IPv6(src="2001:db8::7", dst="2001:db8::1", hlim=44) / TCP(
    sport=443, dport=51000, seq=1, ack=2, flags="A") / Raw(b"v6 data")


def dec(linktype: int, frame: Packet | bytes) -> tuple[object, Counter[str]]:
    c: Counter[str] = Counter()
    return decode(linktype, bytes(frame), c), c


def check4(p: object) -> None:
    assert p is not None
    assert (ip_to_str(p.src), ip_to_str(p.dst), p.sport, p.dport) == (  # type: ignore[attr-defined]
        "198.51.100.7", "192.0.2.1", 443, 51000)
    assert (p.ttl, p.ip_id, p.seq, p.ack, p.flags, p.window, p.payload) == (  # type: ignore[attr-defined]
        51, 4242, 123456, 654321, 0x18, 999, b"hello")


def check6(p: object) -> None:
    assert p is not None
    assert (ip_to_str(p.src), ip_to_str(p.dst), p.ttl, p.ip_id) == (  # type: ignore[attr-defined]
        "2001:db8::7", "2001:db8::1", 44, None)
    assert p.payload == b"v6 data"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("linktype", "wrap"),
    [
        (LinkType.ETHERNET, lambda ip: eth() / ip),
        (LinkType.ETHERNET, lambda ip: eth() / Dot1Q(vlan=7) / ip),
        (LinkType.ETHERNET, lambda ip: eth() / Dot1AD(vlan=1) / Dot1Q(vlan=2) / ip),
        (LinkType.ETHERNET, lambda ip: eth(type=0x9100) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / ip),
        (LinkType.LINUX_SLL, lambda ip: CookedLinux() / ip),
        (LinkType.LINUX_SLL2, lambda ip: CookedLinuxV2() / ip),
        (LinkType.RAW, lambda ip: ip),
        (LinkType.RAW_DLT12, lambda ip: ip),
        (LinkType.RAW_DLT14, lambda ip: ip),
        (LinkType.NULL, lambda ip: Loopback() / ip),  # little-endian host order
        (LinkType.NULL, lambda ip: struct.pack(">I", 2 if IP in ip else 30) + bytes(ip)),
        (LinkType.LOOP, lambda ip: struct.pack(">I", 2 if IP in ip else 24) + bytes(ip)),
    ],
)
@pytest.mark.parametrize("version", [4, 6])
def test_link_types(linktype: int, wrap: object, version: int) -> None:
    ip = TCP4 if version == 4 else TCP6
    p, c = dec(linktype, wrap(ip.copy()))  # type: ignore[operator]
    (check4 if version == 4 else check6)(p)
    assert not c


def test_raw_ipv4_and_ipv6_link_types() -> None:
    check4(dec(LinkType.IPV4, TCP4)[0])
    check6(dec(LinkType.IPV6, TCP6)[0])


def test_linux_loopback_family_10() -> None:
    check6(dec(LinkType.NULL, struct.pack("<I", 10) + bytes(TCP6))[0])


def test_ipv4_options_and_ethernet_padding() -> None:
    ip = IP(src="198.51.100.7", dst="192.0.2.1", ttl=51, id=4242, options=[IPOption_RR()])
    frame = bytes(eth() / ip / TCP4[TCP].copy()) + b"\x00" * 20  # trailer / FCS
    check4(dec(LinkType.ETHERNET, frame)[0])


def test_tso_total_length_zero_uses_captured_length() -> None:
    raw = bytearray(bytes(TCP4))
    raw[2:4] = b"\x00\x00"
    check4(dec(LinkType.RAW, bytes(raw))[0])


@pytest.mark.parametrize(
    "ext",
    [
        IPv6ExtHdrHopByHop(),
        IPv6ExtHdrRouting(addresses=["2001:db8::99"]),
        IPv6ExtHdrDestOpt(),
        IPv6ExtHdrFragment(offset=0, m=0, id=5),  # atomic fragment
        IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(),
    ],
)
def test_ipv6_extension_headers(ext: Packet) -> None:
    ip = IPv6(src="2001:db8::7", dst="2001:db8::1", hlim=44) / ext / TCP6[TCP].copy()
    check6(dec(LinkType.RAW, ip)[0])


def test_ipv6_authentication_header() -> None:
    ip = IPv6(src="2001:db8::7", dst="2001:db8::1", hlim=44) / AH(
        nh=6, payloadlen=4, spi=1, seq=1, icv=b"\x00" * 12) / TCP6[TCP].copy()
    check6(dec(LinkType.RAW, ip)[0])


@pytest.mark.parametrize(
    "frame",
    [
        IP(flags="MF", frag=0) / TCP(),
        IP(frag=100) / Raw(b"x" * 32),
        IPv6() / IPv6ExtHdrFragment(offset=0, m=1) / TCP(),
        IPv6() / IPv6ExtHdrFragment(offset=8, m=0) / Raw(b"x" * 16),
    ],
)
def test_fragments_without_a_reassembler_are_counted_and_skipped(frame: Packet) -> None:
    # (read_flows passes a reassembler: tests/capture/test_ipfrag.py)
    p, c = dec(LinkType.RAW, frame)
    assert p is None and c == {Anomaly.IP_FRAGMENT: 1}


def test_udp() -> None:
    p, c = dec(LinkType.ETHERNET, eth() / IP(ttl=9, id=3) / UDP(sport=53, dport=5353) /
               Raw(b"dns") / Raw(b"\x00" * 0))
    assert p is not None and not c
    assert (p.proto, p.sport, p.dport, p.payload, p.ttl, p.ip_id) == (17, 53, 5353, b"dns", 9, 3)


@pytest.mark.parametrize(
    "frame",
    [eth() / Raw(b"\x00" * 40), eth(type=0x0806) / Raw(b"\x00" * 28),
     eth() / IP() / Raw(b"icmp-ish"), eth() / IPv6(nh=58) / Raw(b"icmp6")],
)
def test_benign_non_tcp_udp_is_none_without_anomaly(frame: Packet) -> None:
    p, c = dec(LinkType.ETHERNET, frame)
    assert p is None and not c


@pytest.mark.parametrize(
    ("linktype", "data", "anomaly"),
    [
        (LinkType.ETHERNET, b"\x00" * 10, Anomaly.TRUNCATED_LINK_HEADER),
        (LinkType.ETHERNET, b"\x00" * 12 + b"\x81\x00\x00", Anomaly.TRUNCATED_LINK_HEADER),
        (LinkType.LINUX_SLL2, b"\x08\x00", Anomaly.TRUNCATED_LINK_HEADER),
        (LinkType.NULL, b"\x02\x00", Anomaly.TRUNCATED_LINK_HEADER),
        (LinkType.RAW, bytes(TCP4)[:12], Anomaly.TRUNCATED_IP_HEADER),
        (LinkType.RAW, bytes(TCP6)[:30], Anomaly.TRUNCATED_IP_HEADER),
        (LinkType.RAW, b"\x75" + bytes(TCP4)[1:], Anomaly.BAD_IP_HEADER),
        (LinkType.RAW, b"\x43" + bytes(TCP4)[1:], Anomaly.BAD_IP_HEADER),
        (LinkType.RAW, bytes(TCP4)[:30], Anomaly.TRUNCATED_TCP_HEADER),
        (LinkType.RAW, bytes(IP() / UDP())[:24], Anomaly.TRUNCATED_UDP_HEADER),
        (LinkType.RAW, bytes(IP() / TCP(dataofs=3)), Anomaly.BAD_TCP_HEADER),
        (LinkType.RAW, bytes(IP() / TCP(dataofs=15)), Anomaly.BAD_TCP_HEADER),
        (147, bytes(TCP4), Anomaly.UNSUPPORTED_LINKTYPE),
        (LinkType.RAW, bytes(IPv6() / IPv6ExtHdrHopByHop())[:44], Anomaly.TRUNCATED_IP_HEADER),
    ],
)
def test_malformed_headers_are_counted(linktype: int, data: bytes, anomaly: Anomaly) -> None:
    p, c = dec(linktype, data)
    assert p is None and c == {anomaly: 1}


def test_snapped_payload_keeps_the_captured_part() -> None:
    p, c = dec(LinkType.RAW, bytes(TCP4)[:-2])
    assert p is not None and p.payload == b"hel" and c == {Anomaly.SNAPPED_PAYLOAD: 1}

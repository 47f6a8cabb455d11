"""Link, network and transport headers: Ethernet (with 802.1Q/QinQ), Linux SLL/SLL2, raw IP,
BSD loopback; IPv4 (options) and IPv6 (extension headers); TCP and UDP.

One function, one result tuple per packet, ``struct.unpack_from`` at offsets: no object per
layer and no per-byte loops. IP fragments of TCP and UDP go to a
:class:`~tlswatch.capture.ipfrag.FragmentReassembler` when the caller passes one (it counts
them as :attr:`Anomaly.IP_FRAGMENT` and hands back whole datagrams); without one they are
counted and skipped. IPv6 atomic fragments (offset 0 without M) are decoded normally.
Unfragmented packets never reach the fragment code: its cost is the fragments' own.
"""

from __future__ import annotations

import enum
import socket
import struct
from collections import Counter
from typing import TYPE_CHECKING, Final, NamedTuple

from .anomalies import Anomaly

if TYPE_CHECKING:
    from .ipfrag import FragmentReassembler

__all__ = [
    "FAST_PATH_LINKS",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "TCP_ACK",
    "TCP_FIN",
    "TCP_PSH",
    "TCP_RST",
    "TCP_SYN",
    "Decoded",
    "LinkType",
    "PacketTuple",
    "decode",
    "decode_ip_packet",
    "decode_tuple",
    "ip_to_str",
]

IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
TCP_FIN: Final = 0x01
TCP_SYN: Final = 0x02
TCP_RST: Final = 0x04
TCP_PSH: Final = 0x08
TCP_ACK: Final = 0x10


class LinkType(enum.IntEnum):
    """pcap/pcapng LINKTYPE_ values we decode (libpcap's mapping of the DLT_ numbers)."""

    NULL = 0  # BSD loopback, address family in host byte order
    ETHERNET = 1
    RAW_DLT12 = 12  # DLT_RAW on most BSDs, written as-is by some tools
    RAW_DLT14 = 14  # DLT_RAW on OpenBSD
    RAW = 101
    LOOP = 108  # OpenBSD loopback, address family in network byte order
    LINUX_SLL = 113
    IPV4 = 228
    IPV6 = 229
    LINUX_SLL2 = 276


class Decoded(NamedTuple):
    """One IP packet's transport view. Addresses are packed (4 or 16 bytes): convert them at
    the edge with :func:`ip_to_str`. UDP packets have seq/ack/flags/window 0."""

    src: bytes
    dst: bytes
    proto: int
    ttl: int  # IPv4 TTL or IPv6 hop limit
    ip_id: int | None  # IPv4 identification; None for IPv6
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes


_ETHER_IPV4: Final = 0x0800
_ETHER_IPV6: Final = 0x86DD
_VLAN_TAGS: Final = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})
_AF_INET6: Final = frozenset({10, 24, 28, 30})  # Linux, NetBSD/OpenBSD, FreeBSD, macOS
_IPV6_EXT: Final = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_MAX_EXT_HEADERS: Final = 12
# what may follow a fragment header and is worth reassembling: TCP, UDP, or an extension
# header (AH too) in front of them
_V6_FRAGMENTABLE: Final = frozenset({IPPROTO_TCP, IPPROTO_UDP, 51}) | _IPV6_EXT

# link kind: 0 ethertype at a fixed offset, 1 raw IP, 2 address family word
_ETHERTYPE_AT: Final[dict[int, tuple[int, int]]] = {  # linktype -> (ethertype offset, ip offset)
    LinkType.ETHERNET: (12, 14),
    LinkType.LINUX_SLL: (14, 16),
    LinkType.LINUX_SLL2: (0, 20),
}
_RAW: Final = frozenset({LinkType.RAW, LinkType.RAW_DLT12, LinkType.RAW_DLT14, LinkType.IPV4,
                         LinkType.IPV6})

#: Link types the C fast path reads (tlswatch/capture/_bulkbook.c), to its link kind:
#: Ethernet (with up to four VLAN tags), raw IP, Linux SLL and SLL2.
FAST_PATH_LINKS: Final[dict[int, int]] = {
    LinkType.ETHERNET: 0, LinkType.RAW: 1, LinkType.RAW_DLT12: 1, LinkType.RAW_DLT14: 1,
    LinkType.IPV4: 1, LinkType.IPV6: 1, LinkType.LINUX_SLL: 2, LinkType.LINUX_SLL2: 3,
}

_IPV4: Final = struct.Struct("!2xHHHBB").unpack_from  # total len, id, frag, ttl, proto
_IPV6: Final = struct.Struct("!4xHBB").unpack_from  # payload len, next header, hop limit
_TCP: Final = struct.Struct("!HHIIBBH").unpack_from
_UDP: Final = struct.Struct("!HHH").unpack_from
# IPv4 with IHL 5 and the TCP header that follows, in one call (the common case)
_V4TCP: Final = struct.Struct("!2xHHHBB2x4s4sHHIIBBH").unpack_from

# Decoded's fields as a plain tuple
PacketTuple = tuple[bytes, bytes, int, int, int | None, int, int, int, int, int, int, bytes]


def ip_to_str(packed: bytes) -> str:
    """Text form of a packed IPv4/IPv6 address (``Decoded.src``/``dst``)."""
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


def _ip_offset(linktype: int, data: bytes, n: int, anomalies: Counter[str]) -> int:
    """Offset of the IP header, -1 for a benign non-IP frame, -2 after counting an anomaly."""
    at = _ETHERTYPE_AT.get(linktype)
    if at is not None:
        et_off, off = at
        if n < off:
            anomalies[Anomaly.TRUNCATED_LINK_HEADER] += 1
            return -2
        et = data[et_off] << 8 | data[et_off + 1]
        while et in _VLAN_TAGS:  # 802.1Q / QinQ: 4 bytes each, the inner ethertype last
            if n < off + 4:
                anomalies[Anomaly.TRUNCATED_LINK_HEADER] += 1
                return -2
            et = data[off + 2] << 8 | data[off + 3]
            off += 4
        return off if et in (_ETHER_IPV4, _ETHER_IPV6) else -1
    if linktype in _RAW:
        return 0
    if linktype == LinkType.NULL or linktype == LinkType.LOOP:
        if n < 4:
            anomalies[Anomaly.TRUNCATED_LINK_HEADER] += 1
            return -2
        # NULL is in host byte order; family values are < 256, so one byte tells which.
        af = data[3] if linktype == LinkType.LOOP or data[0] == 0 else data[0]
        return 4 if af == 2 or af in _AF_INET6 else -1
    anomalies[Anomaly.UNSUPPORTED_LINKTYPE] += 1
    return -2


def _decode_ip(data: bytes, n: int, off: int, anomalies: Counter[str],
               frags: FragmentReassembler | None) -> PacketTuple | None:
    """The general path: any IP version, options, extension headers, TCP or UDP; fragments
    go to ``frags``."""
    if n < off + 1:
        anomalies[Anomaly.TRUNCATED_IP_HEADER] += 1
        return None
    version = data[off] >> 4
    if version == 4:
        if n < off + 20:
            anomalies[Anomaly.TRUNCATED_IP_HEADER] += 1
            return None
        ihl = (data[off] & 15) << 2
        total, ip_id, frag, ttl, proto = _IPV4(data, off)
        if ihl < 20 or (total and total < ihl):
            anomalies[Anomaly.BAD_IP_HEADER] += 1
            return None
        src = data[off + 12 : off + 16]
        dst = data[off + 16 : off + 20]
        end = off + total if total else n  # total 0: TSO segment captured before the NIC
        l4 = off + ihl
        if frag & 0x3FFF:  # MF set or a fragment offset
            if frags is None or (proto != IPPROTO_TCP and proto != IPPROTO_UDP) or not total:
                anomalies[Anomaly.IP_FRAGMENT] += 1
            else:
                frags.stash(src, dst, proto, ttl, ip_id, (frag & 0x1FFF) << 3,
                            bool(frag & 0x2000), data[l4 : min(end, n)])
            return None
        ipid: int | None = ip_id
    elif version == 6:
        if n < off + 40:
            anomalies[Anomaly.TRUNCATED_IP_HEADER] += 1
            return None
        plen, proto, ttl = _IPV6(data, off)
        src = data[off + 8 : off + 24]
        dst = data[off + 24 : off + 40]
        l4 = off + 40
        end = l4 + plen if plen else n  # 0: jumbogram or TSO
        ipid = None
        hops = 0
        while proto in _IPV6_EXT or proto == 44 or proto == 51:
            hops += 1
            if l4 + 8 > min(n, end) or hops > _MAX_EXT_HEADERS:
                anomalies[Anomaly.TRUNCATED_IP_HEADER] += 1
                return None
            if proto == 44:  # fragment header: only an atomic fragment is a whole packet
                field = data[l4 + 2] << 8 | data[l4 + 3]
                if field & 0xFFF9:
                    nxt = data[l4]
                    if frags is None or not plen or nxt not in _V6_FRAGMENTABLE:
                        anomalies[Anomaly.IP_FRAGMENT] += 1
                    else:
                        frags.stash(src, dst, nxt, ttl, int.from_bytes(data[l4 + 4 : l4 + 8]),
                                    field & 0xFFF8, bool(field & 1), data[l4 + 8 : min(end, n)])
                    return None
                size = 8
            elif proto == 51:  # AH: length in 4-octet units, minus 2
                size = (data[l4 + 1] + 2) << 2
            else:
                size = (data[l4 + 1] + 1) << 3
            proto = data[l4]
            l4 += size
    else:
        anomalies[Anomaly.BAD_IP_HEADER] += 1
        return None
    snapped = end > n
    if snapped:
        end = n
    if proto == IPPROTO_TCP:
        if l4 + 20 > end:
            anomalies[Anomaly.TRUNCATED_TCP_HEADER] += 1
            return None
        sport, dport, seq, ack, doff, flags, window = _TCP(data, l4)
        doff = (doff >> 4) << 2
        if doff < 20 or l4 + doff > end:
            anomalies[Anomaly.BAD_TCP_HEADER] += 1
            return None
        if snapped:  # counted only once the headers are known to be whole
            anomalies[Anomaly.SNAPPED_PAYLOAD] += 1
        return (src, dst, proto, ttl, ipid, sport, dport, seq, ack, flags, window,
                data[l4 + doff : end])
    if proto == IPPROTO_UDP:
        if l4 + 8 > end:
            anomalies[Anomaly.TRUNCATED_UDP_HEADER] += 1
            return None
        sport, dport, ulen = _UDP(data, l4)
        if ulen >= 8:
            end = min(end, l4 + ulen)
        if snapped:
            anomalies[Anomaly.SNAPPED_PAYLOAD] += 1
        return (src, dst, proto, ttl, ipid, sport, dport, 0, 0, 0, 0, data[l4 + 8 : end])
    return None


def decode_tuple(linktype: int, data: bytes, anomalies: Counter[str],
                 frags: FragmentReassembler | None = None) -> PacketTuple | None:
    """:func:`decode` as a plain tuple in :class:`Decoded` field order (the hot path: no
    named-tuple construction). Ethernet and IPv4 without options and TCP take one
    ``unpack_from``; everything else goes the general way. A TCP/UDP fragment is stashed in
    ``frags`` (None is returned: call ``frags.take(ts)`` for the datagram)."""
    n = len(data)
    if linktype == 1 and n >= 14:
        et = data[12] << 8 | data[13]
        off = 14 if et == 0x0800 or et == 0x86DD else _ip_offset(linktype, data, n, anomalies)
    else:
        off = _ip_offset(linktype, data, n, anomalies)
    if off < 0:
        return None
    if n >= off + 40 and data[off] == 0x45:
        total, ip_id, frag, ttl, proto, src, dst, sport, dport, seq, ack, doff, flags, win = (
            _V4TCP(data, off))
        if proto == 6 and not frag & 0x3FFF:
            doff = (doff >> 4) << 2
            end = off + total if total else n
            if doff >= 20 and off + 20 + doff <= end <= n:
                return (src, dst, 6, ttl, ip_id, sport, dport, seq, ack, flags, win,
                        data[off + 20 + doff : end])
    return _decode_ip(data, n, off, anomalies, frags)


def decode_ip_packet(data: bytes, anomalies: Counter[str]) -> PacketTuple | None:
    """An IP packet without a link header (e.g. a reassembled datagram); fragments are
    counted and skipped."""
    return _decode_ip(data, len(data), 0, anomalies, None)


def decode(linktype: int, data: bytes, anomalies: Counter[str]) -> Decoded | None:
    """Decode a TCP or UDP packet; None for anything else (anomalies counted when malformed,
    nothing counted for benign non-IP or non-TCP/UDP traffic)."""
    t = decode_tuple(linktype, data, anomalies)
    return None if t is None else Decoded._make(t)

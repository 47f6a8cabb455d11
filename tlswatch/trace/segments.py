"""TCP segments from the target as a raw socket hands them over: only the header facts.

We keep what tells who sent a segment (its IP TTL and IP ID) and what it did (flags, payload
length); payloads are not kept. IPv4 raw sockets include the IP header; IPv6 raw sockets do
not (the hop limit comes from ancillary data, and IPv6 has no IP ID). Hostile bytes: any
malformed header gives None.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["TCP_ACK", "TCP_FIN", "TCP_RST", "TCP_SYN", "TcpSeen", "parse_tcp4", "parse_tcp6"]

TCP_FIN: Final = 0x01
TCP_SYN: Final = 0x02
TCP_RST: Final = 0x04
TCP_ACK: Final = 0x10

_TCP: Final = struct.Struct("!HHIIBB")


@dataclass(frozen=True, slots=True)
class TcpSeen:
    """One TCP segment that arrived from the target (or something speaking for it)."""

    src: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    ttl: int | None
    ip_id: int | None
    payload_len: int


def _tcp(src: str, segment: bytes, ttl: int | None, ip_id: int | None,
         seg_len: int) -> TcpSeen | None:
    if len(segment) < 20:
        return None
    sport, dport, seq, ack, doff, flags = _TCP.unpack_from(segment)
    doff = (doff >> 4) * 4
    if doff < 20 or seg_len < doff:
        return None
    return TcpSeen(src, sport, dport, seq, ack, flags, ttl, ip_id, seg_len - doff)


def parse_tcp4(packet: bytes) -> TcpSeen | None:
    """An IPv4 packet (header included; the payload may be cut by a short read)."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != 6:
        return None
    ihl = (packet[0] & 15) * 4
    total, ip_id, frag = struct.unpack_from("!HHH", packet, 2)
    if ihl < 20 or total < ihl or frag & 0x1FFF:  # non-first fragments carry no TCP header
        return None
    src = socket.inet_ntop(socket.AF_INET, packet[12:16])
    return _tcp(src, packet[ihl:], packet[8], ip_id, total - ihl)


def parse_tcp6(segment: bytes, src: str, hop_limit: int | None, length: int) -> TcpSeen | None:
    """A TCP segment from an IPv6 raw socket; ``length`` is its full size (before a short read)."""
    return _tcp(src.split("%", 1)[0], segment, hop_limit, None, length)

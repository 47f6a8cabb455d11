"""ICMP errors that quote one of our TCP segments: time exceeded (the hop) and unreachable.

Bytes come from raw sockets, so from anyone on the path: every offset is checked against the
length and anything that does not parse is None, never an exception. IPv4 raw sockets hand
us the IP header too; IPv6 raw sockets hand us the ICMPv6 message only (the router's address
comes from ``recvfrom``). Routers must quote the IP header and at least 8 bytes of the
datagram (RFC 792, RFC 4443), enough for our ports and sequence number.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["IcmpError", "IcmpKind", "Quote", "parse_icmp4", "parse_icmp6"]

IcmpKind = Literal["time_exceeded", "unreachable"]

_IPPROTO_TCP: Final = 6
_ICMP4_KINDS: Final[dict[int, IcmpKind]] = {11: "time_exceeded", 3: "unreachable"}
_ICMP6_KINDS: Final[dict[int, IcmpKind]] = {3: "time_exceeded", 1: "unreachable"}
_PORTS_SEQ: Final = struct.Struct("!HHI")


@dataclass(frozen=True, slots=True)
class Quote:
    """The quoted TCP segment's addressing, as the router saw it.

    ``ttl`` is the quoted IP TTL / hop limit (what was left when the packet reached the
    router, usually 1 for time exceeded; other values hint at a box that rewrites TTLs);
    ``length`` how many bytes of the datagram were quoted.
    """

    src: str
    dst: str
    sport: int
    dport: int
    seq: int | None
    ttl: int
    length: int


@dataclass(frozen=True, slots=True)
class IcmpError:
    """One ICMP error from ``router`` about one of our segments."""

    router: str
    kind: IcmpKind
    type: int
    code: int
    quote: Quote
    ttl: int | None = None  # the ICMP packet's own TTL on arrival (None when unknown)


def _quote4(data: bytes) -> Quote | None:
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 15) * 4
    if ihl < 20 or data[9] != _IPPROTO_TCP or len(data) < ihl + 4:
        return None
    sport, dport = struct.unpack_from("!HH", data, ihl)
    seq = _PORTS_SEQ.unpack_from(data, ihl)[2] if len(data) >= ihl + 8 else None
    return Quote(socket.inet_ntop(socket.AF_INET, data[12:16]),
                 socket.inet_ntop(socket.AF_INET, data[16:20]), sport, dport, seq, data[8],
                 len(data))


def _quote6(data: bytes) -> Quote | None:
    # We send plain TCP (no extension headers), so the quoted next header must be TCP.
    if len(data) < 44 or data[0] >> 4 != 6 or data[6] != _IPPROTO_TCP:
        return None
    sport, dport = struct.unpack_from("!HH", data, 40)
    seq = _PORTS_SEQ.unpack_from(data, 40)[2] if len(data) >= 48 else None
    return Quote(socket.inet_ntop(socket.AF_INET6, data[8:24]),
                 socket.inet_ntop(socket.AF_INET6, data[24:40]), sport, dport, seq, data[7],
                 len(data))


def parse_icmp4(packet: bytes) -> IcmpError | None:
    """An IPv4 packet (header included) carrying an ICMP error that quotes TCP, else None."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != 1:
        return None
    ihl = (packet[0] & 15) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    end = min(len(packet), total) if total >= ihl else len(packet)
    if ihl < 20 or end < ihl + 8:
        return None
    icmp_type, code = packet[ihl], packet[ihl + 1]
    kind = _ICMP4_KINDS.get(icmp_type)
    if kind is None:
        return None
    quote = _quote4(packet[ihl + 8 : end])
    if quote is None:
        return None
    router = socket.inet_ntop(socket.AF_INET, packet[12:16])
    return IcmpError(router, kind, icmp_type, code, quote, packet[8])


def parse_icmp6(message: bytes, router: str, hop_limit: int | None = None) -> IcmpError | None:
    """An ICMPv6 message (no IPv6 header, as raw sockets give it) from ``router``, else None."""
    if len(message) < 8:
        return None
    kind = _ICMP6_KINDS.get(message[0])
    if kind is None:
        return None
    quote = _quote6(message[8:])
    if quote is None:
        return None
    try:
        addr = str(ipaddress.IPv6Address(router.split("%", 1)[0]))
    except ValueError:
        return None
    return IcmpError(addr, kind, message[0], message[1], quote, hop_limit)

"""The lab's resolvers (UDP and TCP), built on dnspython's message API.

A :class:`DnsView` maps names to answers: ``("a", ip)`` or ``("nxdomain", None)``.
The censored view answers middlebox addresses and tampered answers for DNS-blocked names;
the control view answers the origins' direct addresses. Unknown names get NXDOMAIN.
Every address is checked to be on this machine (or 0.0.0.0) before it is served; the
namespace lab passes its own check (``allowed``: addresses inside its namespaces).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from tlswatch.lab.addresses import is_lab_safe
from tlswatch.lab.wire import listen_tcp

__all__ = ["DnsServer", "DnsView", "answer_query"]

_TTL = 60


@dataclass(frozen=True)
class DnsView:
    name: str
    records: Mapping[str, tuple[str, str | None]]
    allowed: Callable[[str], bool] = field(default=is_lab_safe, compare=False)

    def __post_init__(self) -> None:
        for host, (kind, ip) in self.records.items():
            if kind == "a" and (ip is None or not self.allowed(ip)):
                raise ValueError(f"DNS view {self.name}: {host} -> {ip} is off this machine")

    def lookup(self, qname: str) -> tuple[str, str | None] | None:
        name = qname.lower().rstrip(".")
        hit = self.records.get(name)
        if hit is None and name.startswith("www."):
            hit = self.records.get(name[4:])  # www.X answers like X (origins carry both SANs)
        return hit


def answer_query(wire: bytes, view: DnsView) -> bytes | None:
    """The response to one query message, or None for garbage (dropped, like real resolvers)."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA | dns.flags.AA
    if len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()
    question = query.question[0]
    hit = view.lookup(question.name.to_text())
    if hit is None or hit[0] == "nxdomain":
        response.set_rcode(dns.rcode.NXDOMAIN)
    elif question.rdtype == dns.rdatatype.A and hit[1] is not None:
        response.answer.append(
            dns.rrset.from_text(question.name, _TTL, dns.rdataclass.IN, dns.rdatatype.A, hit[1])
        )
    # Other types for a known name: NOERROR with no answer (NODATA).
    return response.to_wire()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, view: DnsView) -> None:
        self.view = view
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        reply = answer_query(data, self.view)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class DnsServer:
    """One resolver address: UDP and TCP on ``port``."""

    def __init__(self, view: DnsView, ip: str, port: int) -> None:
        self.view, self.ip, self.port = view, ip, port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            usock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            usock.bind((self.ip, self.port))
        except BaseException:
            usock.close()
            raise
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self.view), sock=usock)
        self._udp = transport
        self._tcp = await asyncio.start_server(
            self._tcp_client, sock=listen_tcp(self.ip, self.port)
        )

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), 5.0)
                (length,) = struct.unpack(">H", head)
                reply = answer_query(
                    await asyncio.wait_for(reader.readexactly(length), 5.0), self.view
                )
                if reply is None:
                    break
                writer.write(struct.pack(">H", len(reply)) + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tcp.wait_closed(), 2.0)
            self._tcp = None

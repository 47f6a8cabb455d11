"""Raw sockets that watch what comes back for our probes: ICMP errors and the target's TCP.

Needs root or CAP_NET_RAW (:class:`RawSocketDenied` otherwise). Raw sockets receive copies:
the kernel's TCP stack still gets every segment, we only learn the header facts (the TTL and
IP ID of a RST, which a socket API never shows). Reads are bounded (one reused 64 KiB
buffer, only headers are parsed) and the number of kept events is capped.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from typing import Final

from tlswatch.trace.icmp import IcmpError, parse_icmp4, parse_icmp6
from tlswatch.trace.segments import TcpSeen, parse_tcp4, parse_tcp6

__all__ = ["MAX_EVENTS", "PathWatch", "RawSocketDenied"]

#: Events kept per probe; a flood beyond this is counted, not stored.
MAX_EVENTS: Final = 512
_HEADERS: Final = 192  # enough for IP + ICMP + quoted IP + TCP headers, or IP + TCP headers
_BATCH: Final = 256  # packets read per wake-up before yielding to the event loop
_SOL_RAW: Final = 255
_ICMP_FILTER: Final = 1  # Linux: bit n set = drop ICMP type n on this socket
_ICMP6_FILTER: Final = 1
_V4_WANTED: Final = (1 << 3) | (1 << 11)  # unreachable, time exceeded
_V6_WANTED: Final = (1, 3)  # unreachable, time exceeded


class RawSocketDenied(PermissionError):
    """Raw sockets need root or CAP_NET_RAW."""


@dataclass(slots=True)
class ProbeEvents:
    """What arrived for one probe (one local port)."""

    icmp: list[IcmpError] = field(default_factory=list)
    tcp: list[TcpSeen] = field(default_factory=list)
    dropped: int = 0


def _open(family: int, proto: int) -> socket.socket:
    try:
        sock = socket.socket(family, socket.SOCK_RAW, proto)
    except PermissionError as e:
        raise RawSocketDenied(str(e)) from None
    except OSError as e:
        if e.errno == errno.EPERM:
            raise RawSocketDenied(str(e)) from None
        raise
    sock.setblocking(False)
    return sock


class PathWatch:
    """Raw ICMP and TCP sockets of one address family, filtered to one target ip:port.

    Use as a context manager inside a running event loop. :meth:`begin` starts collecting
    for a new probe; :meth:`icmp_for` resolves when an ICMP error quoting a local port
    arrives; :meth:`events` returns (after a final drain) what arrived for that port.
    """

    def __init__(self, ip: str, port: int) -> None:
        addr = ipaddress.ip_address(ip)
        self.ip = str(addr)
        self.port = port
        self.v6 = addr.version == 6
        fam = socket.AF_INET6 if self.v6 else socket.AF_INET
        self._icmp = _open(fam, socket.IPPROTO_ICMPV6 if self.v6 else socket.IPPROTO_ICMP)
        try:
            self._tcp = _open(fam, socket.IPPROTO_TCP)
        except BaseException:
            self._icmp.close()
            raise
        if self.v6:
            # struct icmp6_filter: 8 host-order u32 words; a set bit blocks that ICMPv6 type.
            words = [0xFFFFFFFF] * 8
            for t in _V6_WANTED:
                words[t >> 5] &= ~(1 << (t & 31)) & 0xFFFFFFFF
            self._icmp.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER,
                                  struct.pack("=8I", *words))
            for s in (self._icmp, self._tcp):
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        else:
            self._icmp.setsockopt(_SOL_RAW, _ICMP_FILTER,
                                  struct.pack("=I", ~_V4_WANTED & 0xFFFFFFFF))
        self._buf = bytearray(65536)
        self._events: dict[int, ProbeEvents] = {}
        self._waiters: dict[int, asyncio.Future[IcmpError]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> PathWatch:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._icmp.fileno(), self._read, self._icmp, True)
        self._loop.add_reader(self._tcp.fileno(), self._read, self._tcp, False)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop is not None:
            for s in (self._icmp, self._tcp):
                self._loop.remove_reader(s.fileno())
            self._loop = None
        self._icmp.close()
        self._tcp.close()

    # -- per probe ----------------------------------------------------------------------
    def begin(self, local_port: int) -> None:
        """Collect for ``local_port`` from now on (forgetting anything older for it)."""
        self._events[local_port] = ProbeEvents()

    def icmp_for(self, local_port: int) -> asyncio.Future[IcmpError]:
        """A future set by the first ICMP error quoting ``local_port`` from now on."""
        assert self._loop is not None, "use PathWatch as a context manager"
        fut: asyncio.Future[IcmpError] = self._loop.create_future()
        self._waiters[local_port] = fut
        return fut

    def events(self, local_port: int) -> ProbeEvents:
        """Everything collected for ``local_port``; stops collecting for it."""
        self.drain()
        self._waiters.pop(local_port, None)
        return self._events.pop(local_port, ProbeEvents())

    def drain(self) -> None:
        """Read what is queued now (the kernel may have it before our reader callback ran)."""
        self._read(self._icmp, True)
        self._read(self._tcp, False)

    # -- reading ------------------------------------------------------------------------
    def _read(self, sock: socket.socket, icmp: bool) -> None:
        buf = self._buf
        for _ in range(_BATCH):
            try:
                if self.v6:
                    n, anc, _flags, addr = sock.recvmsg_into([buf], socket.CMSG_SPACE(4))
                    hop = _hop_limit(anc)
                    src = str(addr[0])
                else:
                    n = sock.recv_into(buf)
                    hop, src = None, ""
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. the socket was closed under us: nothing more to read
            head = bytes(buf[: min(n, _HEADERS)])
            if icmp:
                self._on_icmp(parse_icmp6(head, src, hop) if self.v6 else parse_icmp4(head))
            else:
                self._on_tcp(parse_tcp6(head, src, hop, n) if self.v6 else parse_tcp4(head))

    def _on_icmp(self, err: IcmpError | None) -> None:
        if err is None or err.quote.dst != self.ip or err.quote.dport != self.port:
            return
        ev = self._events.get(err.quote.sport)
        if ev is None:
            return
        if len(ev.icmp) < MAX_EVENTS:
            ev.icmp.append(err)
        else:
            ev.dropped += 1
        fut = self._waiters.pop(err.quote.sport, None)
        if fut is not None and not fut.done():
            fut.set_result(err)

    def _on_tcp(self, seg: TcpSeen | None) -> None:
        if seg is None or seg.src != self.ip or seg.sport != self.port:
            return
        ev = self._events.get(seg.dport)
        if ev is None:
            return
        if len(ev.tcp) < MAX_EVENTS:
            ev.tcp.append(seg)
        else:
            ev.dropped += 1


_HOPLIMIT: Final = getattr(socket, "IPV6_HOPLIMIT", 52)


def _hop_limit(anc: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in anc:
        if level == socket.IPPROTO_IPV6 and kind == _HOPLIMIT and len(data) >= 4:
            return int(struct.unpack("=i", data[:4])[0])
    return None


"""The TTL knob on ordinary TCP sockets, and TTL-limited SYNs.

Only the packets sent *after* :func:`set_ttl` carry the limit: the connection itself is
made with the system's TTL, so every hop on the path has seen the handshake (stateful
middleboxes track it) before our ClientHello is sent to expire at hop k.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["Connected", "abort", "connect", "get_ttl", "set_ttl"]

_LINGER_RESET: Final = struct.pack("ii", 1, 0)


def _level_opt(sock: socket.socket) -> tuple[int, int]:
    if sock.family == socket.AF_INET6:
        return socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS
    return socket.IPPROTO_IP, socket.IP_TTL


def set_ttl(sock: socket.socket, ttl: int) -> None:
    """IP TTL (IPv4) or unicast hop limit (IPv6) of the segments sent from now on."""
    level, opt = _level_opt(sock)
    sock.setsockopt(level, opt, ttl)


def get_ttl(sock: socket.socket) -> int:
    level, opt = _level_opt(sock)
    return sock.getsockopt(level, opt)


def abort(sock: socket.socket, ttl: int | None = None) -> None:
    """Close with a RST (sent at ``ttl``, the original TTL, when given), so the far end frees
    the connection at once and nothing still queued (an expired ClientHello) is resent."""
    try:
        if ttl is not None:
            set_ttl(sock, ttl)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass  # already dead: closing is all that is left
    sock.close()


@dataclass(frozen=True, slots=True)
class Connected:
    """A connect attempt: ``syn_ack`` (connected: someone at this TTL or closer terminates
    TCP; ``sock`` is then set and the caller owns it), ``refused`` (a RST), ``icmp`` (an
    ICMP error failed the connect, e.g. time exceeded), ``timeout``, or ``error:<errno>``.
    ``local_port`` lets the caller match what a raw socket saw for this connection."""

    response: str
    local_port: int
    elapsed_ms: float
    sock: socket.socket | None = None


async def connect(ip: str, port: int, timeout: float, *, ttl: int | None = None,
                  on_bound: Callable[[int], None] | None = None) -> Connected:
    """Connect to ``ip:port`` (the SYN limited to ``ttl`` hops when given). ``on_bound`` is
    told the local port before the SYN is sent, so the caller can start watching for it."""
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    keep = False
    try:
        sock.setblocking(False)
        # Small request/response exchanges: Nagle would only delay the ClientHello.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", 0))
        local_port = int(sock.getsockname()[1])
        if on_bound is not None:
            on_bound(local_port)
        original = get_ttl(sock)
        if ttl is not None:
            set_ttl(sock, ttl)
        start = time.perf_counter_ns()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, (ip, port))
            response = "syn_ack"
        except TimeoutError:
            response = "timeout"
        except ConnectionRefusedError:
            response = "refused"
        except OSError as e:
            # Linux fails a SYN_SENT socket at once on ICMP time exceeded / unreachable.
            response = ("icmp" if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)
                        else f"error:{errno.errorcode.get(e.errno or 0, 'oserror')}")
        elapsed = round((time.perf_counter_ns() - start) / 1e6, 3)
        if response != "syn_ack":
            return Connected(response, local_port, elapsed)
        if ttl is not None:
            set_ttl(sock, original)
        keep = True
        return Connected(response, local_port, elapsed, sock)
    finally:
        if not keep:
            sock.close()

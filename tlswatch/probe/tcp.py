"""TCP connect with its own timeout; failures named by errno, never by message text."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Final

from tlswatch.failures import Stage, TcpFailure, outcome
from tlswatch.model import TcpInfo

__all__ = ["TcpResult", "tcp_connect"]

_REFUSED: Final = frozenset({errno.ECONNREFUSED})
_RESET: Final = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE})
_UNREACHABLE: Final = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.EADDRNOTAVAIL}
)
_TIMEOUT: Final = frozenset({errno.ETIMEDOUT})


@dataclass(frozen=True, slots=True)
class TcpResult:
    """A connected non-blocking socket (the caller owns it) or the failure, plus timing."""

    info: TcpInfo
    sock: socket.socket | None
    local: tuple[str, int] | None = None


def _failure(exc: OSError) -> str:
    code = exc.errno
    if isinstance(exc, ConnectionRefusedError) or code in _REFUSED:
        return outcome(Stage.TCP, TcpFailure.REFUSED)
    if code in _RESET:
        return outcome(Stage.TCP, TcpFailure.RESET)
    if code in _UNREACHABLE:
        return outcome(Stage.TCP, TcpFailure.UNREACHABLE)
    if code in _TIMEOUT:
        return outcome(Stage.TCP, TcpFailure.TIMEOUT)
    return outcome(Stage.TCP, TcpFailure.UNREACHABLE, errno.errorcode.get(code or 0, "oserror"))


async def tcp_connect(ip: str, port: int, timeout: float) -> TcpResult:
    """Connect to ``ip:port`` (an IP literal: DNS is a separate stage) within ``timeout``."""
    addr = ipaddress.ip_address(ip)
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    # Handshakes are small request/response exchanges: Nagle would only add latency.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    loop = asyncio.get_running_loop()
    start = time.perf_counter_ns()
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (ip, port))
    except TimeoutError:
        sock.close()
        return TcpResult(TcpInfo(failure=outcome(Stage.TCP, TcpFailure.TIMEOUT)), None)
    except OSError as exc:
        sock.close()
        ms = (time.perf_counter_ns() - start) / 1e6
        return TcpResult(TcpInfo(failure=_failure(exc), connect_ms=round(ms, 3)), None)
    ms = (time.perf_counter_ns() - start) / 1e6
    local = sock.getsockname()
    return TcpResult(TcpInfo(connect_ms=round(ms, 3)), sock, (str(local[0]), int(local[1])))

"""Blocking middlebox behaviours, each applied right after the ClientHello arrived.

- ``reset``: RST (SO_LINGER 0) with the hello unread — the client sees RST after sending it;
- ``drop``: swallow everything, never answer, until the client gives up (bounded);
- ``alert``: one fatal ``handshake_failure`` alert record, then FIN;
- ``blockpage``: plain ``HTTP/1.1 403`` + HTML on the TLS port, then FIN.

``refused`` needs no code (an address without a listener) and DNS tampering lives in the
resolver. :func:`blockpage_server_handler` serves the page at the blockpage address.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from tlswatch.lab.origins import blockpage_response
from tlswatch.lab.wire import PeekedHello, alert_record, close_with_reset, hold_until_closed

__all__ = ["blockpage_server_handler", "run_blocker"]

_LINGER_AFTER_FIN = 2.0  # wait this long for the client's FIN, so our close is not an RST


async def _send_then_fin(sock: socket.socket, consume: int, payload: bytes) -> None:
    loop = asyncio.get_running_loop()
    # Consume the hello first: closing with unread data would turn our FIN into an RST.
    with contextlib.suppress(OSError):
        while consume > 0:
            got = sock.recv(consume)
            if not got:
                break
            consume -= len(got)
    await loop.sock_sendall(sock, payload)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    await hold_until_closed(sock, _LINGER_AFTER_FIN)


async def run_blocker(method: str, sock: socket.socket, peeked: PeekedHello, hold: float) -> None:
    if method == "reset":
        close_with_reset(sock)
    elif method == "drop":
        await hold_until_closed(sock, hold)
    elif method == "alert":
        await _send_then_fin(sock, len(peeked.data), alert_record(40))
    elif method == "blockpage":
        await _send_then_fin(sock, len(peeked.data), blockpage_response())
    else:  # pragma: no cover - config validation keeps other methods away
        raise ValueError(f"not an SNI blocker: {method}")


async def blockpage_server_handler(sock: socket.socket, local_ip: str) -> None:
    """The server tampered DNS answers point at: HTTP blockpage to whatever arrives first."""
    del local_ip
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop.sock_recv(sock, 65536), 1.0)
    await _send_then_fin(sock, 0, blockpage_response())

"""A tiny accept loop over raw sockets, so handlers can peek, reset or hand the socket to ssl.

Every accepted socket and handler task is tracked and torn down by :meth:`RawServer.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable

__all__ = ["Handler", "RawServer", "stream_from_socket"]

log = logging.getLogger("tlswatch.lab")

#: handler(connected socket, the local address it was accepted on)
Handler = Callable[[socket.socket, str], Awaitable[None]]


class RawServer:
    def __init__(self, name: str, handler: Handler) -> None:
        self.name = name
        self._handler = handler
        self._listeners: list[socket.socket] = []
        self._accept_tasks: list[asyncio.Task[None]] = []
        self._conns: set[asyncio.Task[None]] = set()
        self._socks: set[socket.socket] = set()

    def add(self, lsock: socket.socket) -> None:
        self._listeners.append(lsock)
        host = lsock.getsockname()[0]
        self._accept_tasks.append(asyncio.create_task(self._accept(lsock, host)))

    async def _accept(self, lsock: socket.socket, host: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(lsock)
            except OSError:
                if lsock.fileno() < 0:
                    return
                await asyncio.sleep(0.01)  # EMFILE and friends: back off, keep serving
                continue
            conn.setblocking(False)
            self._socks.add(conn)
            task = asyncio.create_task(self._run(conn, host))
            self._conns.add(task)
            task.add_done_callback(self._conns.discard)

    async def _run(self, conn: socket.socket, host: str) -> None:
        try:
            await self._handler(conn, host)
        except (ConnectionError, TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        except Exception:  # a lab bug must not kill the accept loop
            log.exception("%s handler failed", self.name)
        finally:
            self._socks.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    async def close(self) -> None:
        for task in self._accept_tasks:
            task.cancel()
        for lsock in self._listeners:
            lsock.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._accept_tasks, *self._conns, return_exceptions=True)
        for conn in list(self._socks):
            with contextlib.suppress(OSError):
                conn.close()
        self._socks.clear()
        self._listeners.clear()
        self._accept_tasks.clear()


async def stream_from_socket(
    sock: socket.socket,
    *,
    ssl_context: object | None = None,
    handshake_timeout: float = 10.0,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Wrap an accepted socket in streams; with ``ssl_context``, run the TLS server handshake."""
    import ssl

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    protocol = asyncio.StreamReaderProtocol(reader)
    ctx = ssl_context if isinstance(ssl_context, ssl.SSLContext) else None
    transport, _ = await loop.connect_accepted_socket(
        lambda: protocol,
        sock=sock,
        ssl=ctx,
        ssl_handshake_timeout=handshake_timeout if ctx else None,
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer

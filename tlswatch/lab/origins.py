"""Origin servers: one TLS server per lab domain, serving a small HTTP/1.1 page.

The page's ``<title>`` is the domain, so a body relayed through an interceptor can be checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import ssl

from tlswatch.lab.wire import listen_tcp

__all__ = ["BLOCKPAGE_HTML", "OriginServer", "blockpage_response", "page_for"]

BLOCKPAGE_HTML = (
    b"<!DOCTYPE html><html><head><title>Access restricted</title></head><body>"
    b"<h1>Access to this resource is restricted</h1>"
    b"<p>tlswatch lab blockpage: this site is blocked by the lab's censor.</p></body></html>\n"
)


def page_for(domain: str) -> bytes:
    d = html.escape(domain)
    return (
        f"<!DOCTYPE html><html><head><title>{d}</title></head>"
        f"<body><h1>{d}</h1><p>tlswatch lab origin for {d}.</p></body></html>\n"
    ).encode()


def _response(status: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + body


def blockpage_response() -> bytes:
    """The plain-HTTP blockpage every lab blocker serves (no TLS)."""
    return _response("403 Forbidden", BLOCKPAGE_HTML, "Server: lab-censor\r\n")


async def read_request_head(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Up to 16 KiB of request head, ending at the blank line (or whatever came in time)."""
    data = b""
    with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    return data[:16384]


class OriginServer:
    """The real site for ``domain`` at its own address (the control path reaches it directly)."""

    def __init__(
        self, domain: str, ip: str, port: int, ctx: ssl.SSLContext, timeout: float
    ) -> None:
        self.domain, self.ip, self.port = domain, ip, port
        self._ctx = ctx
        self._timeout = timeout
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        sock = listen_tcp(self.ip, self.port)
        self._server = await asyncio.start_server(
            self._handle, sock=sock, ssl=self._ctx, ssl_handshake_timeout=self._timeout
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await read_request_head(reader, self._timeout)
            if head.startswith(b"HEAD "):
                writer.write(
                    _response("200 OK", page_for(self.domain)).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
                )
            else:
                writer.write(_response("200 OK", page_for(self.domain), "Server: lab-origin\r\n"))
            await writer.drain()
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            close_clients = getattr(self._server, "close_clients", None)
            if close_clients is not None:  # 3.13+: drop lingering connections
                close_clients()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

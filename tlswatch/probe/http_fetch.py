"""``GET /`` over an established :class:`~tlswatch.probe.tls_client.TlsSession`.

Records status, a bounded and sanitised ``<title>``, and the body's SHA-256 and length (the
body read is capped; a capped body is hashed as read and flagged). Matching bodies against
blockpage fingerprints is ``classify``'s job, not ours.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from typing import Final

from OpenSSL import SSL

from tlswatch.failures import HttpFailure, Stage, outcome
from tlswatch.html_title import MAX_TITLE, extract_title
from tlswatch.model import HttpInfo
from tlswatch.probe.tls_client import TlsSession

__all__ = [
    "MAX_BODY",
    "MAX_HEADER",
    "MAX_TITLE",
    "HttpResult",
    "extract_title",
    "http_get",
]

MAX_BODY: Final = 1024 * 1024
MAX_HEADER: Final = 64 * 1024
_STATUS_RE: Final = re.compile(rb"HTTP/\d(?:\.\d)? +(\d{3})")


@dataclass(frozen=True, slots=True)
class HttpResult:
    info: HttpInfo | None
    failure: str | None
    anomalies: tuple[str, ...] = ()


class _Reader:
    """Decrypted bytes from the session, bounded in total."""

    def __init__(self, session: TlsSession) -> None:
        self.s = session
        self.buf = bytearray()
        self.eof = False

    async def fill(self) -> bool:
        """Append at least one more decrypted chunk; False at EOF."""
        while not self.eof:
            try:
                self.buf += self.s.conn.recv(65536)
                return True
            except SSL.WantReadError:
                pass
            except (SSL.ZeroReturnError, SSL.SysCallError):
                self.eof = True  # close_notify, or a TCP close without one
                return False
            if self.s.server_eof:
                self.eof = True
                return False
            await self.s.flush()  # TLS 1.3 may want to answer (key updates)
            if not await self.s.receive() and self.s.over_cap:
                raise _TooBig
            # On a socket EOF, loop once more: OpenSSL may still hold decrypted bytes.
        return False


class _TooBig(Exception):
    pass


async def _read_response(r: _Reader) -> tuple[int | None, bytes, bool]:
    """(status, body, truncated). Handles Content-Length, chunked and read-to-close."""
    while b"\r\n\r\n" not in r.buf and len(r.buf) < MAX_HEADER:
        if not await r.fill():
            break
    head, sep, rest = bytes(r.buf).partition(b"\r\n\r\n")
    m = _STATUS_RE.match(head)
    status = int(m.group(1)) if m else None
    if not sep:
        return status, b"", False
    headers: dict[bytes, bytes] = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    body = bytearray(rest)
    r.buf = body
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        return status, *await _read_chunked(r)
    length: int | None = None
    cl = headers.get(b"content-length", b"")
    if cl.isdigit():
        length = int(cl)
    want = min(length if length is not None else MAX_BODY + 1, MAX_BODY + 1)
    while len(r.buf) < want and await r.fill():
        pass
    data = bytes(r.buf[:want])
    truncated = len(data) > MAX_BODY
    return status, data[:MAX_BODY], truncated


async def _read_chunked(r: _Reader) -> tuple[bytes, bool]:
    out = bytearray()
    pos = 0
    while len(out) <= MAX_BODY:
        while b"\r\n" not in r.buf[pos:]:
            if not await r.fill():
                return bytes(out), False
        end = r.buf.index(b"\r\n", pos)
        size_text = bytes(r.buf[pos:end]).split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return bytes(out), False
        if size == 0:
            return bytes(out), False
        pos = end + 2
        while len(r.buf) < pos + size + 2:
            if not await r.fill():
                out += r.buf[pos : pos + size]
                return bytes(out[:MAX_BODY]), len(out) > MAX_BODY
        out += r.buf[pos : pos + size]
        pos += size + 2
    return bytes(out[:MAX_BODY]), True


async def http_get(session: TlsSession, host: str, timeout: float) -> HttpResult:
    """Send ``GET /`` with ``Host: host`` and read the answer within ``timeout`` seconds."""
    request = (
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tlswatch\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("idna" if not host.isascii() else "ascii")
    reader = _Reader(session)
    anomalies: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            session.conn.sendall(request)
            await session.flush()
            status, body, truncated = await _read_response(reader)
    except TimeoutError:
        return HttpResult(None, outcome(Stage.HTTP, HttpFailure.FAILED, "timeout"))
    except _TooBig:
        return HttpResult(None, outcome(Stage.HTTP, HttpFailure.FAILED, "byte_cap"))
    except ConnectionResetError:
        return HttpResult(None, outcome(Stage.HTTP, HttpFailure.FAILED, "reset"))
    except (OSError, SSL.Error):  # a TLS error mid-response (bad record MAC, an alert …)
        return HttpResult(None, outcome(Stage.HTTP, HttpFailure.FAILED, "tls_error"))
    if status is None:
        return HttpResult(None, outcome(Stage.HTTP, HttpFailure.FAILED, "no_status_line"))
    if truncated:
        anomalies.append("http_body_truncated")
    info = HttpInfo(
        status=status,
        title=extract_title(body),
        body_sha256=hashlib.sha256(body).hexdigest(),
        body_len=len(body),
    )
    return HttpResult(info, None, tuple(anomalies))

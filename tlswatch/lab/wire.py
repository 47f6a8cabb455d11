"""Socket helpers shared by the lab's servers: listening sockets, ClientHello peeking,
hand-written TLS records (alerts, ServerHello, Certificate) and a bounded relay.

Peeking (``MSG_PEEK``) leaves the ClientHello in the kernel buffer, so the spliced
path forwards the client's bytes untouched and the intercept path can hand the same
socket to ``ssl`` as if nothing had been read.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from tlswatch.tls import ClientHello, DecodeError, Detection, decode_client_hello, looks_like_tls

__all__ = [
    "MAX_HELLO_BYTES",
    "PeekedHello",
    "alert_record",
    "certificate_records",
    "close_with_reset",
    "hold_until_closed",
    "listen_tcp",
    "parse_hello",
    "peek_client_hello",
    "relay",
    "server_hello_record",
]

MAX_HELLO_BYTES = 64 * 1024  # a cap on what we buffer before giving up on a hello
_RECORD = struct.Struct(">BHH")


def listen_tcp(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A non-blocking listening socket with SO_REUSEADDR (a restart right after a stop works)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True, slots=True)
class PeekedHello:
    """What the first bytes of a connection were: ``hello`` is None unless a TLS ClientHello."""

    data: bytes
    hello: ClientHello | None
    is_tls: bool
    eof: bool = False

    @property
    def sni(self) -> str | None:
        name = self.hello.server_name if self.hello else None
        return name.lower().rstrip(".") if name else None


def _parse(buf: bytes) -> PeekedHello | None:
    """A complete verdict on ``buf``, or None when more bytes are needed."""
    det = looks_like_tls(buf[:5])
    if det is Detection.NEED_MORE:
        return None
    if det is Detection.NO or buf[0] != 22:  # not TLS, or an SSLv2 hello: no SNI
        return PeekedHello(buf, None, det is Detection.YES)
    handshake = bytearray()
    pos = 0
    while pos + 5 <= len(buf):
        ctype, _version, length = _RECORD.unpack_from(buf, pos)
        if ctype != 22:
            return PeekedHello(buf, None, True)
        if pos + 5 + length > len(buf):
            return None
        handshake += buf[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if len(handshake) >= 4:
            mlen = int.from_bytes(handshake[1:4], "big")
            if len(handshake) >= 4 + mlen:
                if handshake[0] != 1:
                    return PeekedHello(buf, None, True)
                try:
                    return PeekedHello(
                        buf, decode_client_hello(bytes(handshake[4 : 4 + mlen])), True
                    )
                except DecodeError:
                    return PeekedHello(buf, None, True)
    return None


def parse_hello(buf: bytes) -> PeekedHello | None:
    """What the first bytes of a client's stream are; None while a ClientHello is incomplete."""
    return _parse(buf[:MAX_HELLO_BYTES])


async def peek_client_hello(sock: socket.socket, timeout: float) -> PeekedHello:
    """Wait for a full ClientHello without consuming it. Raises TimeoutError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = -1
    while True:
        try:
            buf = sock.recv(MAX_HELLO_BYTES, socket.MSG_PEEK)
        except BlockingIOError:
            buf = None
        if buf is not None:
            if not buf:
                return PeekedHello(b"", None, False, eof=True)
            verdict = _parse(buf)
            if verdict is not None:
                return verdict
            if len(buf) >= MAX_HELLO_BYTES:
                return PeekedHello(buf, None, True)
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError("no complete ClientHello")
        if buf is None or len(buf) == last:
            # Nothing new yet. A peeked socket stays readable, so after a partial hello we
            # poll briefly instead of waiting for readability (which would spin).
            if buf is None:
                await _readable(sock, remaining)
            else:
                await asyncio.sleep(min(0.005, remaining))
        last = len(buf) if buf is not None else last


async def _readable(sock: socket.socket, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, wake)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fut, timeout)
    finally:
        loop.remove_reader(fd)


def close_with_reset(sock: socket.socket) -> None:
    """Close so that the peer gets a TCP RST (SO_LINGER with a zero timeout)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def hold_until_closed(sock: socket.socket, limit: float) -> None:
    """Read and discard until the peer closes or ``limit`` seconds pass; never answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while (remaining := deadline - loop.time()) > 0:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            await _readable(sock, remaining)
            continue
        except OSError:
            return
        if not data:
            return


def alert_record(description: int = 40, version: int = 0x0303) -> bytes:
    """One fatal alert record (default: handshake_failure)."""
    return _RECORD.pack(21, version, 2) + bytes((2, description))


def _handshake(msg_type: int, body: bytes) -> bytes:
    return bytes((msg_type,)) + len(body).to_bytes(3, "big") + body


def _records(ctype: int, payload: bytes, version: int = 0x0303) -> bytes:
    out = bytearray()
    for i in range(0, len(payload), 16384):
        chunk = payload[i : i + 16384]
        out += _RECORD.pack(ctype, version, len(chunk)) + chunk
    return bytes(out)


def server_hello_record(hello: ClientHello | None, random: bytes) -> bytes:
    """A TLS 1.2 ServerHello record choosing an ECDHE-RSA/ECDSA suite the client offered."""
    offered = hello.cipher_suites if hello else ()
    preferred = (0xC02F, 0xC02B, 0xC030, 0xC02C, 0x009C)
    suite = next((s for s in preferred if s in offered), offered[0] if offered else 0xC02F)
    session_id = hello.session_id if hello and hello.session_id else random[::-1]
    body = (
        b"\x03\x03"
        + random[:32]
        + bytes((len(session_id),))
        + session_id
        + suite.to_bytes(2, "big")
        + b"\x00"
        + b"\x00\x05"
        + b"\xff\x01\x00\x01\x00"  # renegotiation_info, as real servers send
    )
    return _records(22, _handshake(2, body))


def certificate_records(chain_der: Sequence[bytes], with_done: bool = True) -> bytes:
    """A TLS 1.2 Certificate message (records of at most 16 KiB), optionally ServerHelloDone."""
    certs = b"".join(len(c).to_bytes(3, "big") + c for c in chain_der)
    msg = _handshake(11, len(certs).to_bytes(3, "big") + certs)
    if with_done:
        msg += _handshake(14, b"")
    return _records(22, msg)


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, cap: int) -> None:
    moved = 0
    while moved < cap:
        data = await src.read(65536)
        if not data:
            break
        moved += len(data)
        dst.write(data)
        await dst.drain()
    if dst.can_write_eof():
        with contextlib.suppress(OSError, RuntimeError):
            dst.write_eof()


async def relay(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    limit: float,
    cap: int = 64 * 1024 * 1024,
) -> None:
    """Copy both ways until the server side ends (or ``limit`` s / ``cap`` bytes), then close.

    The client->server direction ending first (a half-close after the request) keeps the
    relay alive, so the response still arrives.
    """
    up = asyncio.ensure_future(_pump(client[0], server[1], cap))
    down = asyncio.ensure_future(_pump(server[0], client[1], cap))
    try:
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            await asyncio.wait_for(asyncio.shield(down), limit)
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        for w in (client[1], server[1]):
            w.close()
        for w in (client[1], server[1]):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(w.wait_closed(), 1.0)

"""In-test servers for the probe tests: all on 127.0.0.1, port 0, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ObjectIdentifier

from tlswatch.testing import CertFactory, Issued

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Pki:
    """leaf -> intermediate -> root, written out for Python's ssl module."""

    root: Issued
    ca: Issued
    leaf: Issued
    cert_file: Path  # leaf, intermediate, root (the full chain is sent)
    key_file: Path

    @property
    def chain_der(self) -> tuple[bytes, ...]:
        return (self.leaf.der, self.ca.der, self.root.der)


def make_pki(directory: Path, host: str = "example.com") -> Pki:
    f = CertFactory(seed=7)
    root = f.root("CN=probe test root")
    ca = f.intermediate("CN=probe test intermediate", root)
    leaf = f.leaf(ca, [host, "127.0.0.1"])
    cert_file = directory / "chain.pem"
    key_file = directory / "key.pem"
    cert_file.write_bytes(leaf.pem + ca.pem + root.pem)
    key_file.write_bytes(leaf.key_pem)
    return Pki(root, ca, leaf, cert_file, key_file)


def make_big_chain(directory: Path, pki: Pki, count: int = 200, pad: int = 10_000) -> Path:
    """The leaf plus ``count - 1`` padded CA certificates (~count * pad bytes in all)."""
    f = CertFactory(seed=7)
    extra: list[bytes] = []
    filler = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x00" * pad)
    for i in range(count - 1):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name.from_rfc4514_string(f"CN=filler {i}"))
            .issuer_name(pki.root.cert.subject)
            .public_key(pki.ca.key.public_key())
            .serial_number(i + 1)
            .not_valid_before(f.now - timedelta(days=1))
            .not_valid_after(f.now + timedelta(days=30))
            .add_extension(filler, critical=False)
        )
        cert = builder.sign(pki.root.key, hashes.SHA256())
        extra.append(cert.public_bytes(serialization.Encoding.PEM))
    path = directory / "big-chain.pem"
    path.write_bytes(pki.leaf.pem + b"".join(extra))
    return path


@dataclass
class TlsServerLog:
    snis: list[str | None] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)


def server_context(
    cert_file: Path,
    key_file: Path,
    *,
    max_version: ssl.TLSVersion | None = None,
    min_version: ssl.TLSVersion | None = None,
    alpn: Sequence[str] = (),
    log: TlsServerLog | None = None,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    if max_version is not None:
        ctx.maximum_version = max_version
    if min_version is not None:
        ctx.minimum_version = min_version
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if log is not None:

        def _sni(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            log.snis.append(name)

        ctx.sni_callback = _sni
    return ctx


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler, ssl_ctx: ssl.SSLContext | None = None) -> asyncio.Server:
    async def quiet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Handlers still running when the test's loop ends are cancelled: not an error.
        try:
            await handler(reader, writer)
        except (asyncio.CancelledError, ConnectionError, ssl.SSLError):
            writer.transport.abort()

    return await asyncio.start_server(quiet, HOST, 0, ssl=ssl_ctx)


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def tls_idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After the handshake: wait for the client to go away."""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await reader.read()
    writer.close()


def http_handler(body: bytes, status: str = "200 OK", log: TlsServerLog | None = None) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = await reader.readuntil(b"\r\n\r\n")
            if log is not None:
                log.requests.append(req)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/html\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        writer.close()

    return handler


async def read_client_hello(reader: asyncio.StreamReader) -> bytes:
    """Read exactly one TLS record (our ClientHello fits in one)."""
    header = await reader.readexactly(5)
    (length,) = struct.unpack(">H", header[3:5])
    return header + await reader.readexactly(length)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the kernel sends a RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# -- a tiny DNS server -----------------------------------------------------------------------

DnsAnswer = list[str] | str  # addresses, or "NXDOMAIN" / "SERVFAIL" / "REFUSED" / "DROP"


class DnsServer(asyncio.DatagramProtocol):
    def __init__(self, zone: dict[str, DnsAnswer]) -> None:
        self.zone = {k.rstrip(".").lower(): v for k, v in zone.items()}
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[tuple[str, str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        q = dns.message.from_wire(data)
        question = q.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rdtype = question.rdtype
        self.queries.append((name, dns.rdatatype.to_text(rdtype)))
        entry = self.zone.get(name, "NXDOMAIN")
        if entry == "DROP":
            return
        resp = dns.message.make_response(q)
        resp.flags |= dns.flags.RA
        if isinstance(entry, str):
            resp.set_rcode(dns.rcode.from_text(entry))
        else:
            want = "AAAA" if rdtype == dns.rdatatype.AAAA else "A"
            addrs = [a for a in entry if (":" in a) == (want == "AAAA")]
            if addrs:
                resp.answer.append(dns.rrset.from_text(question.name, 60, "IN", want, *addrs))
        assert self.transport is not None
        self.transport.sendto(resp.to_wire(), addr)


async def dns_server(zone: dict[str, DnsAnswer]) -> tuple[DnsServer, asyncio.DatagramTransport]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: DnsServer(zone), local_addr=(HOST, 0)
    )
    return proto, transport


async def reset_after_hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An SNI filter: read the ClientHello, then answer with a RST."""
    await read_client_hello(reader)
    reset(writer)


@contextlib.contextmanager
def background_loop(start: Callable[[dict[str, Any]], Awaitable[None]]
                    ) -> Iterator[dict[str, Any]]:
    """Run ``start(box)`` (which starts servers and fills ``box``) on an event loop in a
    thread, for tests whose code under test runs its own loop; stopped on exit."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def boot() -> None:
        await start(box)
        ready.set()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(boot())
        loop.run_forever()

    t = threading.Thread(target=main, daemon=True)
    t.start()
    assert ready.wait(10), "test servers did not start"
    try:
        yield box
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)

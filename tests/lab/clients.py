"""Independent clients for the lab tests: raw sockets, Python ssl over memory BIOs, dnspython.

Chains are read from the wire with ``tlswatch.tls`` (TLS 1.2, so the Certificate message is
in clear), never from the lab's own objects.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from dataclasses import dataclass, field

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from cryptography import x509

from tlswatch.tls import TLSConnection

TIMEOUT = 2.0


def client_hello(sni: str) -> bytes:
    """The first flight of a real Python ssl client for ``sni``."""
    ctx = _ctx(None)
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def _ctx(max_version: ssl.TLSVersion | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


@dataclass
class Fetch:
    chain: list[x509.Certificate] = field(default_factory=list)
    chain_der: list[bytes] = field(default_factory=list)
    body: bytes = b""
    version: str | None = None

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


def tls_fetch(
    ip: str, port: int, sni: str, *, tls12: bool = True, path: str = "/", timeout: float = TIMEOUT
) -> Fetch:
    """Handshake (no verification), GET ``path``, read to EOF; the chain as seen on the wire."""
    obj = _ctx(ssl.TLSVersion.TLSv1_2 if tls12 else None).wrap_bio(
        inc := ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname=sni
    )
    wire = TLSConnection()
    result = Fetch()
    with socket.create_connection((ip, port), timeout=timeout) as sock:

        def pump_in() -> bool:
            data = sock.recv(65536)
            if not data:
                inc.write_eof()
                return False
            wire.feed_server(data)
            inc.write(data)
            return True

        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(out.read())
                if not pump_in():
                    raise ConnectionError("EOF during handshake") from None
        sock.sendall(out.read())
        result.version = obj.version()
        obj.write(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        sock.sendall(out.read())
        while True:
            try:
                chunk = obj.read(65536)
                if not chunk:
                    break
                result.body += chunk
            except ssl.SSLWantReadError:
                if not pump_in():
                    break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
    result.chain_der = list(wire.certificates or ())
    result.chain = [x509.load_der_x509_certificate(d) for d in result.chain_der]
    return result


def resolve(server: dict[str, object], name: str, tcp: bool = False) -> tuple[str, list[str]]:
    """(rcode text, A answers) from a lab resolver description."""
    q = dns.message.make_query(name, dns.rdatatype.A)
    ip, port = str(server["ip"]), int(str(server["port"]))
    r = (dns.query.tcp if tcp else dns.query.udp)(q, ip, port=port, timeout=TIMEOUT)
    answers = [rd.address for rrset in r.answer for rd in rrset if rrset.rdtype == dns.rdatatype.A]
    return dns.rcode.to_text(r.rcode()), answers


def send_hello(ip: str, port: int, sni: str, *, timeout: float = TIMEOUT) -> socket.socket:
    sock = socket.create_connection((ip, port), timeout=timeout)
    sock.sendall(client_hello(sni))
    return sock


def read_all(sock: socket.socket, limit: int = 1 << 22) -> bytes:
    data = b""
    while len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data

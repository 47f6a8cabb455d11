"""Synthetic trace runs for the judging/locating tests: Attempts as the probes make them."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tlswatch.testing import CertFactory
from tlswatch.trace.hops import Attempt, HopResult

R = ["198.18.0.1", "198.18.0.5", "198.18.0.9", "198.18.0.13", "198.18.0.17"]


def ders(chain: Sequence[x509.Certificate]) -> tuple[bytes, ...]:
    return tuple(c.public_bytes(Encoding.DER) for c in chain)


def icmp(ttl: int) -> Attempt:
    return Attempt("icmp_time_exceeded", router=R[ttl - 1], failure="tls/timeout", quoted_ttl=1,
                   syn_ack_ttl=60)


def hello(chain: tuple[bytes, ...], ttl_seen: int = 60) -> Attempt:
    return Attempt("server_hello", chain_der=chain, tls_version="TLSv1.3", syn_ack_ttl=ttl_seen,
                   server_ttl=ttl_seen)


def rst(rst_ttl: int, router: str | None = None, offset: int | None = None) -> Attempt:
    return Attempt("rst", router=router, failure="tls/reset", syn_ack_ttl=60, rst_ttl=rst_ttl,
                   rst_ip_id=0, quoted_offset=offset)


def timeout() -> Attempt:
    return Attempt("timeout", failure="tls/timeout", syn_ack_ttl=60)


def hops(*attempts: Attempt) -> tuple[HopResult, ...]:
    return tuple(HopResult(i + 1, (a,)) for i, a in enumerate(attempts))


class LoopbackTls:
    """TLS on loopback; resets (SO_LINGER 0) any connection whose ClientHello names BLOCKED."""

    BLOCKED = b"reset.test"

    def __init__(self, factory: CertFactory, directory: Path, family: int) -> None:
        ca = factory.public_ca()
        leaf = factory.leaf(ca, ["example.org", "www.example.org"])
        chain = directory / "chain.pem"
        chain.write_bytes(leaf.pem + ca.pem)
        key = directory / "key.pem"
        key.write_bytes(leaf.key_pem)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(chain, key)
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        self.sock = socket.create_server((host, 0), family=family)
        self.sock.settimeout(0.2)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError), conn:
            conn.settimeout(1.0)
            head = conn.recv(4096, socket.MSG_PEEK)
            if self.BLOCKED in head:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(2)

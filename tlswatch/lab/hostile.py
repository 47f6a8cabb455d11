"""Hostile servers: each misbehaves in one named way, bounded in time and memory.

- ``silent``: accepts, reads, never answers (until the client closes or ``hold`` s);
- ``slow``: a real-looking TLS 1.2 ServerHello + Certificate flight, 1 byte per interval;
- ``garbage``: seeded random bytes that are not TLS, then FIN;
- ``hugechain``: ServerHello + a Certificate message of 200 certificates (~2 MB), then stalls;
- ``midclose``: ServerHello and half a Certificate record, then FIN.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import socket
from datetime import timedelta
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from tlswatch.lab.pki import LabPKI, origin_hosts
from tlswatch.lab.wire import (
    certificate_records,
    hold_until_closed,
    peek_client_hello,
    server_hello_record,
)

__all__ = ["HUGE_CHAIN_CERTS", "HostileServers"]

HUGE_CHAIN_CERTS = 200
_PAD = 10_000  # bytes of padding extension per certificate: 200 x ~10.3 KB ~ 2 MB
_PAD_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.77.1")  # private arc, non-critical


def _cn(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


class HostileServers:
    """The behaviour for each hostile address, keyed by local IP."""

    def __init__(
        self,
        pki: LabPKI,
        kinds: dict[str, str],
        domains: dict[str, str],
        hold: float,
        slow_interval: float,
        io_timeout: float,
    ) -> None:
        self.pki = pki
        self.kinds = kinds  # ip -> kind
        self.domains = domains  # kind -> domain
        self.hold = hold
        self.slow_interval = slow_interval
        self.io_timeout = io_timeout
        self._rng_seed = pki.seed

    def _random(self, label: str, n: int) -> bytes:
        return random.Random(f"hostile|{self._rng_seed}|{label}").randbytes(n)

    @cached_property
    def huge_chain(self) -> tuple[bytes, ...]:
        """200 DER certificates, each issued by the next, ~2 MB in total (built once)."""
        f = self.pki.factory
        keys = [f.key(f"hugechain:{i}") for i in range(HUGE_CHAIN_CERTS + 1)]
        pad = x509.UnrecognizedExtension(_PAD_OID, hashlib.sha256(b"pad").digest() * (_PAD // 32))
        out: list[bytes] = []
        for i in range(HUGE_CHAIN_CERTS):
            subject = _cn(self.domains["hugechain"]) if i == 0 else _cn(f"Huge Chain CA {i}")
            builder = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(_cn(f"Huge Chain CA {i + 1}"))
                .public_key(keys[i].public_key())
                .serial_number(f.serial("hugechain", str(i)))
                .not_valid_before(f.now - timedelta(days=30))
                .not_valid_after(f.now + timedelta(days=60))
                .add_extension(pad, critical=False)
            )
            if i == 0:
                builder = builder.add_extension(
                    x509.SubjectAlternativeName(
                        [x509.DNSName(h) for h in origin_hosts(self.domains["hugechain"])]
                    ),
                    critical=False,
                )
            cert = builder.sign(keys[i + 1], hashes.SHA256(), ecdsa_deterministic=True)
            out.append(cert.public_bytes(serialization.Encoding.DER))
        return tuple(out)

    @cached_property
    def slow_chain(self) -> tuple[bytes, ...]:
        leaf = self.pki.factory.leaf(self.pki.public_ca, origin_hosts(self.domains["slow"]))
        return (leaf.der, self.pki.public_ca.der)

    async def handle(self, sock: socket.socket, local_ip: str) -> None:
        kind = self.kinds[local_ip]
        loop = asyncio.get_running_loop()
        if kind == "silent":
            await hold_until_closed(sock, self.hold)
            return
        try:
            peeked = await peek_client_hello(sock, self.io_timeout)
        except TimeoutError:
            return
        with contextlib.suppress(OSError):  # consume it, so our close is a FIN, not an RST
            sock.recv(len(peeked.data))
        hello = peeked.hello
        if kind == "garbage":
            junk = bytearray(self._random("garbage", 4096))
            junk[0] = 0x00  # not a TLS content type: any detector says "not TLS" at byte one
            await loop.sock_sendall(sock, bytes(junk))
        elif kind == "slow":
            stream = server_hello_record(hello, self._random("slow", 32)) + certificate_records(
                self.slow_chain
            )
            deadline = loop.time() + self.hold
            for b in stream:
                if loop.time() >= deadline:
                    break
                await loop.sock_sendall(sock, bytes((b,)))
                await asyncio.sleep(self.slow_interval)
        elif kind == "hugechain":
            chain = await loop.run_in_executor(None, lambda: self.huge_chain)
            stream = server_hello_record(hello, self._random("huge", 32)) + certificate_records(
                chain, with_done=False
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(loop.sock_sendall(sock, stream), self.hold)
            await hold_until_closed(sock, self.hold)  # then stall: no ServerHelloDone, ever
            return
        elif kind == "midclose":
            cert = certificate_records(self.slow_chain)
            await loop.sock_sendall(
                sock, server_hello_record(hello, self._random("mid", 32)) + cert[: len(cert) // 2]
            )
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        await hold_until_closed(sock, 2.0)

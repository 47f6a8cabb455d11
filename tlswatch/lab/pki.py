"""The lab's certificates: the "public" PKI of the origins, the 2019 KZ chain and forger,
and sslsplit's CA — all from the seeded :class:`~tlswatch.testing.CertFactory`.

SSL contexts need files, so chains and (test-only) keys are written under the lab workdir.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import multiprocessing
import ssl
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tlswatch.testing import CertFactory, Issued, derive_key, to_pem, write_store_pem
from tlswatch.testing.keys import RSA_2048_E3, PrivateKey, cached_key

__all__ = ["LabPKI", "host_key_pem", "origin_hosts"]


def origin_hosts(domain: str) -> list[str]:
    """SANs of an origin's leaf: the domain and its ``www.`` name."""
    return [domain] if domain.startswith("www.") else [domain, "www." + domain]


def _key_pem(issued: Issued) -> bytes:
    return issued.key_pem



def host_key_pem(seed: int, host: str) -> bytes:
    """The 2019 forger's RSA-2048 e=3 key for ``host`` as PKCS#8 PEM (runs in a worker)."""
    return _pkcs8(derive_key(seed, "kz2019-host:" + host.lower(), RSA_2048_E3))


def _pkcs8(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())

class LabPKI:
    def __init__(self, seed: int, now: datetime, workdir: Path, send_kz_root: bool) -> None:
        self.factory = CertFactory(seed=seed, now=now)
        self.seed = seed
        self.dir = workdir / "pki"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.send_kz_root = send_kz_root
        self.public_root = self.factory.public_root()
        self.public_ca = self.factory.public_ca()
        # RSA-4096 root: from the committed key cache for seed 0, seconds otherwise.
        self.kz_root = self.factory.kz_root()
        self.kz_ca = self.factory.kz_intermediate()
        self.store_path = write_store_pem(workdir / "lab-public-root.pem", [self.public_root.cert])
        self._forged: dict[tuple[str, bytes], asyncio.Future[ssl.SSLContext]] = {}
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.forged_leaves: dict[str, x509.Certificate] = {}

    # -- origins -----------------------------------------------------------------------

    def origin_context(self, domain: str, *,
                       private: bool = False) -> tuple[ssl.SSLContext, Issued]:
        """The origin's TLS context: a chain from the lab's public CA, or from a private CA
        (self-signed root, in no store and no registry) when ``private``."""
        issuer = self.private_ca() if private else self.public_ca
        leaf = self.factory.leaf(issuer, origin_hosts(domain))
        ctx = self._server_context(f"origin-{domain}", [leaf.cert, issuer.cert], leaf)
        return ctx, leaf

    def private_ca(self) -> Issued:
        tag = hashlib.sha256(f"private-ca:{self.seed}".encode()).hexdigest()[:8]
        return self.factory.root(f"O=Private Corp {tag},CN=Private Corp {tag} Root")

    def _server_context(
        self, name: str, chain: list[x509.Certificate], leaf: Issued | None, key_pem: bytes = b""
    ) -> ssl.SSLContext:
        cert_file = self.dir / f"{name}.chain.pem"
        key_file = self.dir / f"{name}.key.pem"
        cert_file.write_bytes(to_pem(chain))
        key_file.write_bytes(_key_pem(leaf) if leaf is not None else key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        return ctx

    # -- the 2019 forger -----------------------------------------------------------------

    def kz_chain(self) -> list[x509.Certificate]:
        """What follows the forged leaf: Security Certificate CA [, Qaznet root]."""
        return [self.kz_ca.cert, self.kz_root.cert] if self.send_kz_root else [self.kz_ca.cert]

    def _forge_sync(self, host: str, origin_der: bytes, key_pem: bytes) -> ssl.SSLContext:
        origin = x509.load_der_x509_certificate(origin_der)
        forged = self.factory.forge_2019(origin, host=host)
        tag = hashlib.sha256(origin_der).hexdigest()[:12]
        self.forged_leaves[host] = forged
        return self._server_context(
            f"forged-{host}-{tag}", [forged, *self.kz_chain()], None, key_pem
        )

    async def forged_context(self, host: str, origin_der: bytes) -> ssl.SSLContext:
        """The TLS server context for ``host``, forged from the origin's leaf (cached).

        A host key not in the bundled cache takes ~0.1-0.4 s of pure Python: it is derived
        in a worker *process*, so neither the lab's loop nor a probe sharing this process
        is starved of the GIL while dozens of hosts are forged at once.
        """
        cache_key = (host, hashlib.sha256(origin_der).digest())
        fut = self._forged.get(cache_key)
        if fut is None:
            fut = asyncio.ensure_future(self._forge(host, origin_der))
            self._forged[cache_key] = fut
        try:
            return await asyncio.shield(fut)
        except Exception:
            self._forged.pop(cache_key, None)
            raise

    async def _forge(self, host: str, origin_der: bytes) -> ssl.SSLContext:
        loop = asyncio.get_running_loop()
        cached = cached_key(self.seed, "kz2019-host:" + host.lower(), RSA_2048_E3)
        key_pem = (_pkcs8(cached) if cached is not None else
                   await loop.run_in_executor(self._procs(), host_key_pem, self.seed, host))
        return await loop.run_in_executor(None, self._forge_sync, host, origin_der, key_pem)

    def _procs(self) -> concurrent.futures.Executor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=2, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def close(self) -> None:
        """Stop the key-derivation workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # -- sslsplit ------------------------------------------------------------------------

    def sslsplit_ca(self) -> tuple[Path, Path, x509.Certificate]:
        """A CA with a seed-derived name that is in no registry: (cert file, key file, cert)."""
        tag = hashlib.sha256(f"sslsplit-ca|{self.seed}".encode()).hexdigest()[:8]
        ca = self.factory.root(f"O=Lab Corp {tag},CN=Lab Corp {tag} Inspection CA")
        cert_file = self.dir / "sslsplit-ca.crt"
        key_file = self.dir / "sslsplit-ca.key"
        cert_file.write_bytes(ca.pem)
        key_file.write_bytes(
            ca.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o644)  # sslsplit may drop privileges before reading; test key only
        return cert_file, key_file, ca.cert

"""Seeded, reproducible private keys for tests, the lab and benchmarks.

``cryptography`` cannot seed its key generators, so keys are derived from ``(seed, name)``:

- EC P-256: the private scalar is SHA-256 of the label, reduced into ``[1, n-1]``;
- RSA: primes are drawn from a ``random.Random`` seeded by the label and tested with a
  small-prime sieve plus Miller-Rabin, then assembled with the ``rsa_crt_*`` helpers.

The same ``(seed, name, spec)`` always gives the same key. Keys are cached in-process; when
the environment variable ``TLSWATCH_KEY_CACHE`` names a directory, RSA keys are also cached
there as unencrypted PKCS#8 PEM (test keys only: they are derived from public labels anyway).

NEVER use these keys for anything but testing: anyone who knows the label knows the key.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = [
    "BUNDLED_DIR",
    "EC_P256",
    "KEY_CACHE_ENV",
    "RSA_2048",
    "RSA_2048_E3",
    "RSA_4096",
    "KeySpec",
    "PrivateKey",
    "bundle_key",
    "cached_key",
    "derive_key",
    "derive_rsa_uncached",
]

KEY_CACHE_ENV = "TLSWATCH_KEY_CACHE"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What kind of key to derive: ``ec`` (P-256 only) or ``rsa`` with ``bits``/``exponent``."""

    kind: Literal["ec", "rsa"] = "ec"
    bits: int = 256
    exponent: int = 65537

    def __post_init__(self) -> None:
        if self.kind == "ec" and self.bits != 256:
            raise ValueError("only P-256 EC keys are supported")
        if self.kind == "rsa":
            if self.bits < 1024 or self.bits % 16:
                raise ValueError(f"unsupported RSA size {self.bits}")
            if self.exponent < 3 or self.exponent % 2 == 0:
                raise ValueError(f"RSA exponent must be odd and >= 3, got {self.exponent}")


EC_P256 = KeySpec("ec", 256)
RSA_2048 = KeySpec("rsa", 2048, 65537)
RSA_4096 = KeySpec("rsa", 4096, 65537)
#: The 2019 Kazakhstan forged leaves used RSA-2048 keys with public exponent 3.
RSA_2048_E3 = KeySpec("rsa", 2048, 3)

# Order of the P-256 group.
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

_SIEVE_LIMIT = 1 << 15
_WINDOW = 4096  # odd candidates examined per random starting point


def _small_primes(limit: int) -> tuple[int, ...]:
    flags = bytearray([1]) * limit
    flags[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(limit) + 1):
        if flags[i]:
            flags[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return tuple(i for i in range(3, limit) if flags[i])


_SMALL_PRIMES = _small_primes(_SIEVE_LIMIT)


def _label(seed: int, name: str, spec: KeySpec) -> bytes:
    return f"tlswatch-testkey/1|{seed}|{spec.kind}|{spec.bits}|{spec.exponent}|{name}".encode()


def _is_probable_prime(n: int, rng: random.Random, rounds: int) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        a = rng.randrange(2, n - 2)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(rng: random.Random, bits: int, e: int) -> int:
    """A ``bits``-bit prime with the two top bits set (so p*q has exactly 2*bits bits)."""
    while True:
        base = rng.getrandbits(bits) | (0b11 << (bits - 2)) | 1
        # Sieve a window of odd candidates base + 2i by every small prime at once (slice
        # assignment), so only ~10 % of candidates reach a modular exponentiation.
        alive = bytearray([1]) * _WINDOW
        for p in _SMALL_PRIMES:
            start = (-(base % p) * ((p + 1) // 2)) % p  # i with base + 2i = 0 (mod p)
            alive[start::p] = bytes(len(range(start, _WINDOW, p)))
        for i in range(_WINDOW):
            if not alive[i]:
                continue
            cand = base + 2 * i
            if cand.bit_length() != bits or math.gcd(e, cand - 1) != 1:
                continue
            # Cheap Fermat filter first, then Miller-Rabin with seeded bases.
            if pow(2, cand - 1, cand) == 1 and _is_probable_prime(cand, rng, 8):
                return cand


def _rsa_numbers(seed: int, name: str, spec: KeySpec) -> rsa.RSAPrivateNumbers:
    rng = random.Random(hashlib.sha256(_label(seed, name, spec)).digest())
    e = spec.exponent
    half = spec.bits // 2
    while True:
        p = _prime(rng, half, e)
        q = _prime(rng, half, e)
        if p == q:
            continue
        if p < q:
            p, q = q, p
        n = p * q
        phi = (p - 1) * (q - 1)
        if n.bit_length() != spec.bits or math.gcd(e, phi) != 1:
            continue
        d = pow(e, -1, phi)
        return rsa.RSAPrivateNumbers(
            p=p,
            q=q,
            d=d,
            dmp1=rsa.rsa_crt_dmp1(d, p),
            dmq1=rsa.rsa_crt_dmq1(d, q),
            iqmp=rsa.rsa_crt_iqmp(p, q),
            public_numbers=rsa.RSAPublicNumbers(e, n),
        )


# Pre-derived seed-0 keys of the fixed test PKI (the RSA-4096 Qaznet test root takes seconds
# in pure Python); tests check they equal a fresh derivation.
BUNDLED_DIR = Path(__file__).resolve().parent / "keycache"


def _file_name(seed: int, name: str, spec: KeySpec) -> str:
    digest = hashlib.sha256(_label(seed, name, spec)).hexdigest()[:40]
    return f"rsa{spec.bits}-e{spec.exponent}-{digest}.pem"


def bundle_key(seed: int, name: str, spec: KeySpec, directory: Path = BUNDLED_DIR) -> Path:
    """Derive an RSA key from scratch and store it in the bundled cache (maintainers only)."""
    path = directory / _file_name(seed, name, spec)
    _store_cached(path, derive_rsa_uncached(seed, name, spec))
    return path


def _disk_path(seed: int, name: str, spec: KeySpec) -> Path | None:
    where = os.environ.get(KEY_CACHE_ENV)
    return Path(where) / _file_name(seed, name, spec) if where else None


def derive_rsa_uncached(seed: int, name: str, spec: KeySpec) -> rsa.RSAPrivateKey:
    """Derive an RSA key from scratch, bypassing every cache (slow; for checking caches)."""
    return _rsa_numbers(seed, name, spec).private_key()


def _load_cached(path: Path, spec: KeySpec) -> rsa.RSAPrivateKey | None:
    try:
        # Our own derived test keys: skipping OpenSSL's RSA consistency check (primality of
        # p and q, ~35 ms a key) makes a lab forge a host in 5 ms instead of 80.
        key = serialization.load_pem_private_key(path.read_bytes(), password=None,
                                                 unsafe_skip_rsa_key_validation=True)
    except (OSError, ValueError, TypeError):
        return None  # missing or corrupt cache entry: just derive again
    if not isinstance(key, rsa.RSAPrivateKey):
        return None
    pub = key.public_key().public_numbers()
    if key.key_size != spec.bits or pub.e != spec.exponent:
        return None
    return key


def _store_cached(path: Path, key: rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so parallel test workers never read half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, path)
    except OSError:
        pass  # the cache is an optimisation only


def cached_key(seed: int, name: str, spec: KeySpec) -> PrivateKey | None:
    """The key if it is cheap to have now (EC, bundled or in the disk cache), else None."""
    if spec.kind == "ec":
        return derive_key(seed, name, spec)
    bundled = _load_cached(BUNDLED_DIR / _file_name(seed, name, spec), spec)
    if bundled is not None:
        return bundled
    path = _disk_path(seed, name, spec)
    return _load_cached(path, spec) if path is not None else None


@lru_cache(maxsize=512)
def derive_key(seed: int, name: str, spec: KeySpec = EC_P256) -> PrivateKey:
    """The private key for ``(seed, name, spec)``; identical on every call and every machine."""
    if spec.kind == "ec":
        digest = hashlib.sha256(_label(seed, name, spec)).digest()
        scalar = int.from_bytes(digest, "big") % (_P256_N - 1) + 1
        return ec.derive_private_key(scalar, ec.SECP256R1())
    bundled = _load_cached(BUNDLED_DIR / _file_name(seed, name, spec), spec)
    if bundled is not None:
        return bundled
    path = _disk_path(seed, name, spec)
    if path is not None:
        cached = _load_cached(path, spec)
        if cached is not None:
            return cached
    key = _rsa_numbers(seed, name, spec).private_key()
    if path is not None:
        _store_cached(path, key)
    return key

"""Keyed, prefix-preserving IP pseudonyms (Crypto-PAn), for sharing capture results.

Two addresses that share their first k bits get pseudonyms that share exactly their first k
bits, so subnets stay recognisable while hosts do not (Xu, Fan, Ammar, Moon: "Prefix-
preserving IP address anonymization", ICNP 2002). The pseudonym depends on a 32-byte key:
the same key gives the same mapping across runs and files; without the key the mapping
cannot be inverted. AES comes from ``cryptography``.
"""

from __future__ import annotations

import ipaddress
import os
from collections import OrderedDict
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["KEY_BYTES", "AnonymizeKeyError", "PrefixPreservingAnonymizer", "load_or_create_key"]

KEY_BYTES = 32


class AnonymizeKeyError(ValueError):
    """The key file is unusable (one line: which file, what is wrong)."""


def load_or_create_key(path: Path) -> bytes:
    """The 32-byte key in ``path``; a new random one is written there (0600) if it is absent."""
    if path.exists():
        data = path.read_bytes()
        if len(data) != KEY_BYTES:
            raise AnonymizeKeyError(f"{path}: an anonymization key is {KEY_BYTES} bytes, "
                                    f"this file has {len(data)}")
        return data
    key = os.urandom(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


class PrefixPreservingAnonymizer:
    """Crypto-PAn over IPv4 and IPv6 with a bounded cache of recent addresses."""

    def __init__(self, key: bytes, *, cache_size: int = 65536) -> None:
        if len(key) != KEY_BYTES:
            raise AnonymizeKeyError(f"anonymization key must be {KEY_BYTES} bytes")
        self._enc = Cipher(algorithms.AES(key[:16]), modes.ECB()).encryptor()
        # The pad fills the bits after the prefix being encrypted (the paper's f_k input).
        pad = self._aes(key[16:])
        self._pad = int.from_bytes(pad, "big")
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cache_size = cache_size

    def _aes(self, block: bytes) -> bytes:
        return self._enc.update(block)

    def _anonymize_int(self, value: int, bits: int) -> int:
        pad = self._pad >> (128 - bits) if bits < 128 else self._pad
        result = 0
        for i in range(bits):
            # The first i bits of the address, then the pad's remaining bits.
            keep = bits - i
            prefix = (value >> keep) << keep
            mixed = prefix | (pad & ((1 << keep) - 1))
            # The block's remaining bytes are the pad's own (as in the reference code).
            low = self._pad & ((1 << (128 - bits)) - 1)
            block = ((mixed << (128 - bits)) | low).to_bytes(16, "big")
            first_bit = self._aes(block)[0] >> 7
            result = (result << 1) | first_bit
        return value ^ result

    def anonymize(self, address: str) -> str:
        """The pseudonym of an IPv4 or IPv6 address (text in, text out)."""
        hit = self._cache.get(address)
        if hit is not None:
            self._cache.move_to_end(address)
            return hit
        ip = ipaddress.ip_address(address)
        bits = 32 if ip.version == 4 else 128
        out = str(ipaddress.ip_address(self._anonymize_int(int(ip), bits))
                  if ip.version == 4 else
                  ipaddress.IPv6Address(self._anonymize_int(int(ip), bits)))
        self._cache[address] = out
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out

"""Crypto-PAn pseudonyms: prefix-preserving, keyed, deterministic, bounded."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswatch.anonymize import AnonymizeKeyError, PrefixPreservingAnonymizer, load_or_create_key

KEY = bytes(range(32))


def _common_prefix(a: int, b: int, bits: int) -> int:
    x = a ^ b
    return bits if x == 0 else bits - x.bit_length()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_ipv4_prefixes_are_preserved_exactly(a: int, b: int) -> None:
    anon = PrefixPreservingAnonymizer(KEY)
    pa = int(ipaddress.IPv4Address(anon.anonymize(str(ipaddress.IPv4Address(a)))))
    pb = int(ipaddress.IPv4Address(anon.anonymize(str(ipaddress.IPv4Address(b)))))
    assert _common_prefix(a, b, 32) == _common_prefix(pa, pb, 32)


def test_ipv6_prefixes_are_preserved_and_keys_matter() -> None:
    rng = random.Random(7)
    a = rng.getrandbits(128)
    b = a ^ (1 << 40)  # differ at bit 87 from the left
    anon = PrefixPreservingAnonymizer(KEY)
    pa = int(ipaddress.IPv6Address(anon.anonymize(str(ipaddress.IPv6Address(a)))))
    pb = int(ipaddress.IPv6Address(anon.anonymize(str(ipaddress.IPv6Address(b)))))
    assert _common_prefix(pa, pb, 128) == _common_prefix(a, b, 128) == 87
    other = PrefixPreservingAnonymizer(bytes(32))
    assert other.anonymize("192.0.2.1") != anon.anonymize("192.0.2.1")
    assert anon.anonymize("192.0.2.1") == PrefixPreservingAnonymizer(KEY).anonymize("192.0.2.1")
    assert anon.anonymize("192.0.2.1") != "192.0.2.1"


def test_key_file_is_created_once_and_checked(tmp_path: Path) -> None:
    p = tmp_path / "anon.key"
    k1 = load_or_create_key(p)
    assert load_or_create_key(p) == k1 and len(k1) == 32
    assert p.stat().st_mode & 0o777 == 0o600
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"short")
    with pytest.raises(AnonymizeKeyError, match=r"bad\.key"):
        load_or_create_key(bad)


# The sample trace of the Crypto-PAn reference implementation (J. Fan, 2002), with its key;
# the same vectors are used by the Go (Yawning/cryptopan) and other ports.
SAMPLE_KEY = bytes([21, 34, 23, 141, 51, 164, 207, 128, 19, 10, 91, 22, 73, 144, 125, 16,
                    216, 152, 143, 131, 121, 121, 101, 39, 98, 87, 76, 45, 42, 132, 34, 2])


@pytest.mark.parametrize(("raw", "anonymized"), [
    ("128.11.68.132", "135.242.180.132"),
    ("129.118.74.4", "134.136.186.123"),
    ("130.132.252.244", "133.68.164.234"),
    ("141.223.7.43", "141.167.8.160"),
    ("141.233.145.108", "141.129.237.235"),
])
def test_reference_vectors(raw: str, anonymized: str) -> None:
    assert PrefixPreservingAnonymizer(SAMPLE_KEY).anonymize(raw) == anonymized

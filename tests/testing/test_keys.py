"""Seeded key derivation: deterministic, right shape, caches agree with a fresh derivation."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tlswatch.testing import keys
from tlswatch.testing.keys import (
    BUNDLED_DIR,
    EC_P256,
    RSA_2048,
    RSA_2048_E3,
    RSA_4096,
    KeySpec,
    derive_key,
    derive_rsa_uncached,
)


def test_ec_keys_are_deterministic_and_distinct() -> None:
    a = derive_key(1, "a", EC_P256)
    assert isinstance(a, ec.EllipticCurvePrivateKey)
    derive_key.cache_clear()
    again = derive_key(1, "a", EC_P256)
    assert isinstance(again, ec.EllipticCurvePrivateKey)
    assert a.private_numbers() == again.private_numbers()
    other = derive_key(2, "a", EC_P256)
    assert isinstance(other, ec.EllipticCurvePrivateKey)
    assert other.private_numbers() != a.private_numbers()


def test_rsa_e3_key_shape_and_determinism() -> None:
    k = derive_rsa_uncached(7, "host", KeySpec("rsa", 1024, 3))
    nums = k.private_numbers()
    assert k.key_size == 1024 and nums.public_numbers.e == 3
    assert nums.p * nums.q == nums.public_numbers.n
    assert derive_rsa_uncached(7, "host", KeySpec("rsa", 1024, 3)).private_numbers() == nums


def test_disk_cache_roundtrip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(keys.KEY_CACHE_ENV, str(tmp_path))
    derive_key.cache_clear()
    first = derive_key(3, "disk", KeySpec("rsa", 1024))
    assert len(list(tmp_path.iterdir())) == 1
    derive_key.cache_clear()
    second = derive_key(3, "disk", KeySpec("rsa", 1024))
    assert isinstance(first, rsa.RSAPrivateKey) and isinstance(second, rsa.RSAPrivateKey)
    assert first.private_numbers() == second.private_numbers()


def test_bad_specs_rejected() -> None:
    with pytest.raises(ValueError):
        KeySpec("ec", 384)
    with pytest.raises(ValueError):
        KeySpec("rsa", 2048, 4)


@pytest.mark.slow
def test_bundled_keys_equal_fresh_derivation() -> None:
    # Bundled by tools/make_keycache.py: the fixed test PKI and the forger's key of every
    # host of the packaged target list (and its www. name).
    from tlswatch.lab.config import default_targets_path, load_targets

    bundled = {p.name for p in BUNDLED_DIR.glob("*.pem")}
    specs = {"kz2019-root": RSA_4096, "kz2019-security": RSA_2048}
    for host in load_targets(default_targets_path()):
        specs["kz2019-host:" + host] = RSA_2048_E3
        specs["kz2019-host:www." + host] = RSA_2048_E3
    assert {keys._file_name(0, n, s) for n, s in specs.items()} == bundled
    for name in ("kz2019-root", "kz2019-security", "kz2019-host:facebook.com",
                 "kz2019-host:www.vk.com"):
        spec = specs[name]
        key = derive_key(0, name, spec)
        assert isinstance(key, rsa.RSAPrivateKey)
        assert key.private_numbers() == derive_rsa_uncached(0, name, spec).private_numbers()

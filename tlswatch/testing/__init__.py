"""Public test kit: seeded keys, a deterministic certificate factory, chain scenarios.

Everything here is deterministic: keys are derived from ``(seed, name)``, serials from the
seed, ECDSA signatures are RFC 6979, and every time is explicit (default ``FIXED_NOW``).

Keys (``tlswatch.testing.keys``)
    ``KeySpec(kind="ec"|"rsa", bits, exponent)``; ``EC_P256``, ``RSA_2048``, ``RSA_4096``,
    ``RSA_2048_E3``; ``derive_key(seed, name, spec) -> PrivateKey`` (lru-cached; RSA keys
    also cached on disk under ``$TLSWATCH_KEY_CACHE`` when set). RSA derivation is pure
    Python: ~0.1–0.4 s for 2048 bits, ~2–7 s for 4096 bits, so prefer EC keys.

Certificates (``tlswatch.testing.certs``)
    ``FIXED_NOW``; ``Issued(cert, key)`` with ``.der``, ``.pem``, ``.key_pem``;
    ``CertFactory(seed=0, now=FIXED_NOW)`` with ``key()``, ``serial()``, ``root()``,
    ``intermediate()``, ``leaf()`` (``issuer=None`` self-signs), the fixed PKIs
    ``public_root()``, ``public_ca()``, ``kz_root()`` (RSA-4096, ``C=KZ, CN=Qaznet Trust
    Network``, our own key), ``kz_intermediate()`` (RSA-2048, ``C=KZ, CN=Security
    Certificate``) and ``forge_2019(origin_leaf, host=None)``;
    ``forge_2019(origin_leaf, intermediate_cert, intermediate_key, rng, *, seed, host)``;
    ``to_pem(certs)``, ``write_store_pem(path, roots)``, ``real_qaznet_root()``.

Scenarios
    ``Scenario(name, chain, roots, host, at, expect, leaf_key)``; ``expect`` is ``"valid"``
    or the primary ``Validation.error`` against a store of ``roots``. Builders on the
    factory: ``legitimate``, ``expired``, ``not_yet_valid``, ``wrong_host``, ``self_signed``,
    ``incomplete_chain``, ``shuffled_chain``, ``forged_2019`` (``include_root``),
    ``forged_random_ca``, ``real_qaznet_root_chain``; ``scenarios()`` returns the fast ones.
"""

from tlswatch.testing.certs import (
    FIXED_NOW,
    KZ_ROOT_SUBJECT,
    KZ_SECURITY_SUBJECT,
    CertFactory,
    Issued,
    Scenario,
    forge_2019,
    real_qaznet_root,
    real_qaznet_root_path,
    to_pem,
    write_store_pem,
)
from tlswatch.testing.keys import (
    EC_P256,
    RSA_2048,
    RSA_2048_E3,
    RSA_4096,
    KeySpec,
    PrivateKey,
    derive_key,
)

__all__ = [
    "EC_P256",
    "FIXED_NOW",
    "KZ_ROOT_SUBJECT",
    "KZ_SECURITY_SUBJECT",
    "RSA_2048",
    "RSA_2048_E3",
    "RSA_4096",
    "CertFactory",
    "Issued",
    "KeySpec",
    "PrivateKey",
    "Scenario",
    "derive_key",
    "forge_2019",
    "real_qaznet_root",
    "real_qaznet_root_path",
    "to_pem",
    "write_store_pem",
]

"""Chains that contain the *real* interception roots of the registry (Kazakhstan and others)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tlswatch.classify.chain import ChainJudge, decide
from tlswatch.failures import Verdict
from tlswatch.testing import CertFactory
from tlswatch.x509.registry import load_registry

REGISTRY = load_registry()
F = CertFactory(seed=0)
REAL = [e for e in REGISTRY.entries if e.certificate is not None]


@pytest.mark.parametrize("entry", REAL, ids=[e.label for e in REAL])
def test_a_real_root_in_the_chain_is_named_with_verified_evidence(entry: object) -> None:
    from tlswatch.x509.registry import RegistryEntry

    assert isinstance(entry, RegistryEntry) and entry.certificate is not None
    leaf = F.legitimate("vk.com").chain[0]
    chain = [leaf.public_bytes(Encoding.DER), entry.certificate.public_bytes(Encoding.DER)]
    # Judged at a time inside the root's validity, against the store of that time.
    at = max(entry.certificate.not_valid_before_utc, F.now)
    j = ChainJudge(None, REGISTRY).judge(chain, host="vk.com", at=at)
    assert j.interception.label == entry.label
    assert j.interception.incident == entry.incident
    assert j.interception.evidence == "verified_signature"
    d = decide(j)
    assert d.verdict is Verdict.INTERCEPTED and d.confidence >= 0.99


def test_every_kazakhstan_root_is_in_the_registry() -> None:
    kz = {e.label for e in REAL if e.label.startswith("kz-")}
    assert "kz-2019-qaznet-root" in kz and "kz-2021-isca-nursultan-root" in kz
    assert sum(1 for label in kz if label.startswith("kz-2020-isca")) == 8

"""The certificate factory's promises, checked independently of the factory's own code."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from tlswatch.testing import (
    FIXED_NOW,
    CertFactory,
    forge_2019,
    real_qaznet_root,
    to_pem,
    write_store_pem,
)

SHA = hashes.SHA256()


@pytest.fixture(scope="module")
def f() -> CertFactory:
    return CertFactory(seed=0)


def test_same_seed_same_bytes(f: CertFactory) -> None:
    a = CertFactory(seed=0).legitimate().chain
    b = f.legitimate().chain
    assert [c.fingerprint(SHA) for c in a] == [c.fingerprint(SHA) for c in b]
    assert CertFactory(seed=1).legitimate().chain[0].serial_number != a[0].serial_number


def test_leaf_has_web_pki_extensions(f: CertFactory) -> None:
    leaf = f.leaf(f.public_ca(), ["example.com", "192.0.2.7"]).cert
    oids = [e.oid for e in leaf.extensions]
    for oid in (
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ):
        assert oid in oids
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["example.com"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]
    assert leaf.not_valid_before_utc < FIXED_NOW < leaf.not_valid_after_utc


def test_explicit_times_are_used(f: CertFactory) -> None:
    nb = FIXED_NOW - timedelta(days=3)
    na = FIXED_NOW + timedelta(days=3)
    leaf = f.leaf(f.public_ca(), ["t.example"], not_before=nb, not_after=na).cert
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (nb, na)


def test_store_pem_roundtrip(f: CertFactory, tmp_path: Path) -> None:
    roots = [f.public_root().cert, f.root("CN=Other Root").cert]
    path = write_store_pem(tmp_path / "store.pem", roots)
    assert x509.load_pem_x509_certificates(path.read_bytes()) == roots
    assert to_pem(roots) == path.read_bytes()


def test_forge_2019_properties(f: CertFactory) -> None:
    origin = f.leaf(f.public_ca(), ["facebook.com", "www.facebook.com"]).cert
    ca = f.kz_intermediate()
    forged = forge_2019(origin, ca.cert, ca.key, random.Random(5))
    # Parse the bytes again: the promises are about what a client would see.
    forged = x509.load_der_x509_certificate(forged.public_bytes(Encoding.DER))
    assert forged.subject == origin.subject
    assert forged.issuer == ca.cert.subject
    san_f = forged.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    san_o = origin.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san_f) == list(san_o)
    pub = forged.public_key()
    assert isinstance(pub, rsa.RSAPublicKey)
    assert pub.key_size == 2048 and pub.public_numbers().e == 3
    six = timedelta(hours=6)
    assert forged.not_valid_before_utc == origin.not_valid_before_utc - six
    assert forged.not_valid_after_utc == origin.not_valid_after_utc - six
    low = (1 << 33) - 1
    assert forged.serial_number >> 33 == origin.serial_number >> 33
    assert forged.serial_number != origin.serial_number
    assert [e.oid for e in forged.extensions] == [ExtensionOID.SUBJECT_ALTERNATIVE_NAME]
    forged.verify_directly_issued_by(ca.cert)
    # Same host -> same key; another rng -> another serial (low bits only).
    again = forge_2019(origin, ca.cert, ca.key, random.Random(6))
    assert again.public_key().public_numbers() == pub.public_numbers()  # type: ignore[union-attr]
    assert again.serial_number & ~low == forged.serial_number & ~low


def test_kz_test_pki_shape(f: CertFactory) -> None:
    root, ca = f.kz_root(), f.kz_intermediate()
    assert root.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "Qaznet Trust Network"
    )
    assert root.cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "KZ"
    assert root.cert.public_key().key_size == 4096  # type: ignore[union-attr]
    assert ca.cert.public_key().key_size == 2048  # type: ignore[union-attr]
    assert ca.cert.subject.rfc4514_string() == "CN=Security Certificate,C=KZ"
    ca.cert.verify_directly_issued_by(root.cert)
    real = real_qaznet_root()
    assert real is not None
    assert real.subject == root.cert.subject  # same name, different key
    assert real.public_key() != root.cert.public_key()


def test_forged_random_ca_name_depends_on_seed() -> None:
    a = CertFactory(seed=0).forged_random_ca().chain[-1].subject
    b = CertFactory(seed=1).forged_random_ca().chain[-1].subject
    assert a != b


def test_scenarios_have_expected_shapes(f: CertFactory) -> None:
    by_name = {s.name: s for s in f.scenarios()}
    assert by_name["self_signed"].chain[0].issuer == by_name["self_signed"].chain[0].subject
    assert len(by_name["incomplete_chain"].chain) == 1
    shuffled = by_name["shuffled_chain"].chain
    assert len(shuffled) > len({c.fingerprint(SHA) for c in shuffled})
    assert all(s.at == FIXED_NOW for s in by_name.values())

"""cert_facts: every field, hostile input never raises, bounded strings."""

from __future__ import annotations

import base64
import hashlib
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlswatch.testing import CertFactory, real_qaznet_root
from tlswatch.x509.facts import (
    MAX_SANS,
    MAX_STR,
    cert_facts,
    cert_facts_and_notes,
    chain_facts,
    clean_str,
)

F = CertFactory(seed=0)
LEAF = F.leaf(F.public_ca(), ["example.com", "192.0.2.1"])
LEAF_DER = LEAF.cert.public_bytes(Encoding.DER)


def test_leaf_fields() -> None:
    fa = cert_facts(LEAF_DER)
    c = LEAF.cert
    assert fa.sha256 == hashlib.sha256(LEAF_DER).hexdigest()
    assert base64.b64decode(fa.der_b64) == LEAF_DER
    spki = c.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert fa.spki_sha256 == hashlib.sha256(spki).hexdigest()
    assert fa.subject == "CN=example.com"
    assert fa.issuer == "C=US,O=tlswatch test PKI,CN=tlswatch Test CA 1"
    assert fa.serial == format(c.serial_number, "x")
    assert fa.not_before == "2019-07-02T12:00:00Z" and fa.not_after == "2019-09-30T12:00:00Z"
    assert fa.key is not None and (fa.key.type, fa.key.bits, fa.key.curve) == (
        "ec",
        256,
        "secp256r1",
    )
    assert fa.sans == ("example.com", "192.0.2.1")
    assert fa.sct is False
    assert fa.extensions == (
        "basicConstraints",
        "keyUsage",
        "extendedKeyUsage",
        "subjectAltName",
        "subjectKeyIdentifier",
        "authorityKeyIdentifier",
    )
    assert fa.self_signed is False and fa.is_ca is False
    assert fa.ski is not None and fa.aki is not None and fa.parse_error is None
    assert cert_facts(LEAF_DER, LEAF.cert) == fa


def test_forged_2019_leaf_facts() -> None:
    sc = F.forged_2019()
    fa = chain_facts([c.public_bytes(Encoding.DER) for c in sc.chain])
    assert fa[0].key is not None and (fa[0].key.type, fa[0].key.bits, fa[0].key.exponent) == (
        "rsa",
        2048,
        3,
    )
    assert fa[0].extensions == ("subjectAltName",) and fa[0].ski is None and fa[0].aki is None
    assert fa[0].is_ca is None
    assert fa[2].self_signed is True and fa[2].is_ca is True
    assert fa[2].subject == "CN=Qaznet Trust Network,C=KZ"


def test_real_qaznet_root() -> None:
    real = real_qaznet_root()
    assert real is not None
    fa = cert_facts(real.public_bytes(Encoding.DER))
    assert fa.sha256 == "00309c736dd661da6f1eb24173aa849944c168a43a15bffd192eecfdb6f8dbd2"
    assert fa.spki_sha256 == "b5ba8dd7f89564c2889d3d6453c84998c77824919b64ea0835aa62986591be50"
    assert fa.self_signed and fa.key is not None and fa.key.bits == 4096


def test_garbage_is_data() -> None:
    fa = cert_facts(b"\x30\x03\x02\x01\x01")
    assert fa.parse_error and fa.sha256 and fa.der_b64 and fa.subject is None


def test_self_signed_with_bad_signature_is_not_self_signed() -> None:
    root = F.public_root().cert
    der = bytearray(root.public_bytes(Encoding.DER))
    der[-5] ^= 0x01  # inside the signature value
    fa = cert_facts(bytes(der))
    assert fa.parse_error is None
    assert fa.subject == fa.issuer and fa.self_signed is False


def test_long_and_control_strings_are_bounded() -> None:
    nasty = "a\x1b[31m\u202eb"
    hosts = [f"h{i}.example" for i in range(MAX_SANS + 5)]
    cert = F.leaf(
        F.public_ca(),
        hosts,
        subject=x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, nasty * 200)]),
    ).cert
    fa, notes = cert_facts_and_notes(cert.public_bytes(Encoding.DER))
    assert len(fa.sans) == MAX_SANS and "sans_truncated" in notes
    assert fa.subject is not None and len(fa.subject) <= MAX_STR and "subject_truncated" in notes
    assert fa.subject.isprintable() and "\\x1b" in fa.subject and "\\u202e" in fa.subject
    assert clean_str("ok") == ("ok", False)


def test_negative_serial_is_a_note_not_a_warning() -> None:
    # Build a certificate with a negative serial by patching the DER of a positive one.
    key = F.key("neg")
    base = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=neg"))
        .issuer_name(x509.Name.from_rfc4514_string("CN=neg"))
        .public_key(key.public_key())
        .serial_number(0x7F)
        .not_valid_before(F.now)
        .not_valid_after(F.now)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    der = bytearray(base.public_bytes(Encoding.DER))
    i = der.index(b"\x02\x01\x7f")
    der[i + 2] = 0xFF  # serial -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any leaked warning fails the test
        fa, notes = cert_facts_and_notes(bytes(der))
    assert fa.serial == "-1" and "serial_not_positive" in notes
    assert fa.self_signed is False  # the signature no longer matches the patched TBS


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    fa = cert_facts(data)
    assert fa.sha256 == hashlib.sha256(data).hexdigest()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(LEAF_DER) - 1), st.integers(0, 255)), max_size=4),
    st.integers(0, len(LEAF_DER)),
)
def test_mutated_der_never_raises(edits: list[tuple[int, int]], cut: int) -> None:
    der = bytearray(LEAF_DER)
    for pos, val in edits:
        der[pos] = val
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fa = cert_facts(bytes(der[: max(cut, 1)]))
    assert fa.sha256

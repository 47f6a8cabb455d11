"""Tests for tlswatch.x509.pem: strict user input, tolerant peer chains."""

from __future__ import annotations

import base64
import datetime as dt
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswatch.x509.pem import (
    CertificateInputError,
    load_certificates,
    load_certificates_from_path,
    parse_der_chain,
)

ANCHORS = Path(__file__).resolve().parents[2] / "trust_anchors"
QAZNET = ANCHORS / "interception_cas" / "kz-2019-qaznet-root.pem"

_KEY = ec.generate_private_key(ec.SECP256R1())


def _cert(cn: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
        .sign(_KEY, hashes.SHA256())
    )


CERTS = [_cert(f"c{i}") for i in range(3)]
PEMS = [c.public_bytes(serialization.Encoding.PEM) for c in CERTS]
DERS = [c.public_bytes(serialization.Encoding.DER) for c in CERTS]


def test_single_pem() -> None:
    assert load_certificates(PEMS[0], source="t") == [CERTS[0]]


def test_many_pem_with_junk_between() -> None:
    data = b"junk\n" + PEMS[0] + b"\n# comment\nsubject=foo\n" + PEMS[1] + b"trailer" + PEMS[2]
    assert load_certificates(data, source="t") == CERTS


def test_der_single_and_concatenated() -> None:
    assert load_certificates(DERS[0], source="t") == [CERTS[0]]
    assert load_certificates(b"".join(DERS), source="t") == CERTS


def test_real_qaznet_root_from_path() -> None:
    (cert,) = load_certificates_from_path(QAZNET)
    assert "Qaznet Trust Network" in cert.subject.rfc4514_string()


def test_other_pem_blocks_are_skipped() -> None:
    key = _KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert load_certificates(key + PEMS[0], source="t") == [CERTS[0]]
    with pytest.raises(CertificateInputError, match=r"t: no certificate found .*PUBLIC KEY"):
        load_certificates(key, source="t")


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (b"", r"^src: empty input$"),
        (b" \n\t", r"^src: empty input$"),
        (b"hello world", r"^src: no certificate found"),
        (PEMS[0][:-30], r"^src: PEM block 1 \(CERTIFICATE\) is truncated"),
        (PEMS[0] + PEMS[1].replace(b"MII", b"M*I", 1), r"^src: PEM block 2 .*not valid base64"),
        (DERS[0][:-10], r"^src: DER certificate 1 is truncated"),
        (DERS[0] + b"\x00\x01", r"^src: unexpected data after DER certificate 1"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
         r"^src: PEM block 1 .*(truncated|not a valid certificate)"),
    ],
)
def test_errors_are_one_line_and_name_source(data: bytes, pattern: str) -> None:
    with pytest.raises(CertificateInputError, match=pattern) as info:
        load_certificates(data, source="src")
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_pem_block_with_valid_base64_but_bad_der_names_block() -> None:
    # A complete DER SEQUENCE that is not a certificate.
    body = base64.encodebytes(b"\x30\x03\x02\x01\x05")
    data = PEMS[0] + b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"
    with pytest.raises(CertificateInputError, match=r"PEM block 2 \(CERTIFICATE\) is not a valid"):
        load_certificates(data, source="s")


def test_truncated_der_inside_pem() -> None:
    body = base64.encodebytes(DERS[0][:200])
    data = b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"
    with pytest.raises(CertificateInputError, match=r"PEM block 1 .* is truncated"):
        load_certificates(data, source="s")


def test_max_certs_is_cheap_on_ten_thousand() -> None:
    data = PEMS[0] * 10_000
    start = time.perf_counter()
    with pytest.raises(CertificateInputError, match=r"more than 100 certificates"):
        load_certificates(data, source="big")
    with pytest.raises(CertificateInputError, match=r"more than 5 certificates"):
        load_certificates(DERS[0] * 10_000, source="big", max_certs=5)
    assert time.perf_counter() - start < 2.0
    assert len(load_certificates(PEMS[0] * 100, source="ok")) == 100


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(CertificateInputError, match=r"nope\.pem: cannot read"):
        load_certificates_from_path(tmp_path / "nope.pem")


def test_parse_der_chain_reports_errors() -> None:
    parsed = parse_der_chain([DERS[0], b"\x30\x03\x02\x01\x05", b"", DERS[1]])
    assert [p.ok for p in parsed] == [True, False, False, True]
    assert parsed[0].certificate == CERTS[0]
    assert parsed[1].error and parsed[1].certificate is None
    assert parsed[1].der == b"\x30\x03\x02\x01\x05"
    assert len(parsed[2].sha256) == 64


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=2000))
def test_garbage_never_escapes_as_other_errors(junk: bytes, cut: int) -> None:
    for data in (junk, PEMS[0][:cut] + junk, DERS[0][:cut] + junk):
        try:
            load_certificates(data, source="fuzz")
        except CertificateInputError as exc:
            assert "\n" not in str(exc)
    for p in parse_der_chain([junk, DERS[0][:cut]]):
        assert (p.certificate is None) != (p.error is None)

"""The 2019 interceptor as a client sees it, compared with the origin via the control path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .clients import resolve, tls_fetch


def _kz(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "KZ"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


KZ_CA = _kz("Security Certificate")
KZ_ROOT = _kz("Qaznet Trust Network")


def _cn(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _via_dns(desc: dict[str, Any], name: str, control: bool = False) -> str:
    rcode, answers = resolve(desc["control_resolver" if control else "resolver"], name)
    assert rcode == "NOERROR" and len(answers) == 1
    return answers[0]


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


@pytest.mark.parametrize("domain", ["facebook.com", "mail.google.com", "vk.com", "www.google.com"])
def test_targeted_sni_gets_forged_2019_chain(desc: dict[str, Any], domain: str) -> None:
    port = desc["port"]
    seen = tls_fetch(_via_dns(desc, domain), port, domain)
    origin = tls_fetch(_via_dns(desc, domain, control=True), port, domain)
    forged, real = seen.leaf, origin.leaf
    # chain shape: leaf -> Security Certificate -> Qaznet Trust Network
    assert forged.issuer == KZ_CA
    assert [c.subject for c in seen.chain[1:]] == [KZ_CA, KZ_ROOT]
    assert seen.chain[2].issuer == KZ_ROOT
    # the 2019 forgery pattern, judged against the origin's certificate
    assert forged.subject == real.subject
    assert _sans(forged) == _sans(real)
    assert [e.oid for e in forged.extensions] == [x509.SubjectAlternativeName.oid]
    key = forged.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048 and key.public_numbers().e == 3
    assert forged.not_valid_before_utc == real.not_valid_before_utc - timedelta(hours=6)
    assert forged.not_valid_after_utc == real.not_valid_after_utc - timedelta(hours=6)
    assert forged.serial_number >> 33 == real.serial_number >> 33
    assert forged.serial_number != real.serial_number
    # the origin presented the lab's public PKI
    assert "tlswatch Test CA" in _cn(real.issuer)
    # transparent proxy: the origin's page still arrives
    assert f"<title>{domain}</title>".encode() in seen.body
    assert seen.body.startswith(b"HTTP/1.1 200")


def test_forged_chain_verifies_to_lab_kz_root(desc: dict[str, Any]) -> None:
    seen = tls_fetch(_via_dns(desc, "twitter.com"), desc["port"], "twitter.com")
    leaf, ca, root = seen.chain
    leaf.verify_directly_issued_by(ca)
    ca.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    import hashlib

    assert hashlib.sha256(seen.chain_der[2]).hexdigest() == desc["interceptor"]["root_sha256"]


@pytest.mark.parametrize("domain", ["example.org", "wikipedia.org", "lab-untargeted.test"])
def test_untargeted_sni_is_spliced_byte_identical(desc: dict[str, Any], domain: str) -> None:
    port = desc["port"]
    seen = tls_fetch(_via_dns(desc, domain), port, domain)
    origin = tls_fetch(_via_dns(desc, domain, control=True), port, domain)
    assert seen.chain_der == origin.chain_der
    assert "tlswatch Test CA" in _cn(seen.leaf.issuer)
    assert f"<title>{domain}</title>".encode() in seen.body


def test_tls13_relay_delivers_body(desc: dict[str, Any]) -> None:
    seen = tls_fetch(_via_dns(desc, "instagram.com"), desc["port"], "instagram.com", tls12=False)
    assert seen.version == "TLSv1.3"
    assert b"<title>instagram.com</title>" in seen.body


def test_incountry_address_with_targeted_sni_is_intercepted(desc: dict[str, Any]) -> None:
    kz_ip = desc["incountry"]["kz-host-1.kz"]["ip"]
    assert _via_dns(desc, "kz-host-1.kz") == kz_ip
    seen = tls_fetch(kz_ip, desc["port"], "facebook.com")
    assert seen.leaf.issuer == KZ_CA
    sans = _sans(seen.leaf).get_values_for_type(x509.DNSName)
    assert sans == ["facebook.com", "www.facebook.com"]
    # the origin fetched from is the SNI's origin, as the box did
    assert b"<title>facebook.com</title>" in seen.body


def test_incountry_address_with_untargeted_sni_is_spliced_to_that_host(
    desc: dict[str, Any],
) -> None:
    kz_ip = desc["incountry"]["kz-host-2.kz"]["ip"]
    direct = tls_fetch(desc["incountry"]["kz-host-2.kz"]["origin"], desc["port"], "kz-host-2.kz")
    seen = tls_fetch(kz_ip, desc["port"], "kz-host-2.kz")
    assert seen.chain_der == direct.chain_der
    assert b"<title>kz-host-2.kz</title>" in seen.body
    # an untargeted foreign SNI at an in-country address reaches that host, untouched
    other = tls_fetch(kz_ip, desc["port"], "example.org")
    assert other.chain_der == direct.chain_der


def test_control_path_is_never_intercepted(desc: dict[str, Any]) -> None:
    for domain in desc["targets"]["domains"][:5]:
        origin = tls_fetch(_via_dns(desc, domain, control=True), desc["port"], domain)
        assert "tlswatch Test CA" in _cn(origin.leaf.issuer)


def test_target_list_is_the_2019_list(desc: dict[str, Any]) -> None:
    targets = desc["targets"]["domains"]
    assert len(targets) == 37
    assert {"facebook.com", "mail.ru", "twitter.com", "www.youtube.com"} <= set(targets)
    roles = {d: v["role"] for d, v in desc["domains"].items()}
    assert all(roles[t] == "target" for t in targets)


def test_forged_keys_are_per_host_and_stable(desc: dict[str, Any]) -> None:
    port = desc["port"]
    a1 = tls_fetch(_via_dns(desc, "facebook.com"), port, "facebook.com").leaf
    a2 = tls_fetch(_via_dns(desc, "facebook.com"), port, "facebook.com").leaf
    b = tls_fetch(_via_dns(desc, "vk.com"), port, "vk.com").leaf
    assert a1.public_key() == a2.public_key() != b.public_key()
    assert a1 == a2  # seeded: reruns and captures are reproducible

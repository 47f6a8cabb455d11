"""Tests for tlswatch.x509.registry with the real registry data plus locally made CAs.

We can't sign with the real interception keys, so "signature verifies" cases use CAs and keys
generated here and loaded as user registries; the real data is matched by hash and by name.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tlswatch.x509.pem import load_certificates_from_path
from tlswatch.x509.registry import (
    RegistryError,
    forgery_pattern,
    forgery_pattern_matches,
    is_forgery_pattern,
    load_registry,
)
from tlswatch.x509.stores import anchors_dir, cert_sha256, spki_sha256

CAS = anchors_dir() / "interception_cas"
QAZNET = load_certificates_from_path(CAS / "kz-2019-qaznet-root.pem")[0]
ISCA_0704 = load_certificates_from_path(CAS / "kz-2020-isca-root-0704.pem")[0]
NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)

# Keys made once per module: EC is fast; one RSA e=3 key for the forgery pattern.
CA_KEYS = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
E3_KEY = rsa.generate_private_key(public_exponent=3, key_size=2048)

EXPECTED_LABELS = {
    "kz-2019-qaznet-root": "kz-2019",
    "kz-2020-isca-ca-root": "kz-2020-isca",
    "kz-2020-isca-root-0539": "kz-2020-isca",
    "kz-2020-isca-root-0616": "kz-2020-isca",
    "kz-2020-isca-root-0630": "kz-2020-isca",
    "kz-2020-isca-root-0643": "kz-2020-isca",
    "kz-2020-isca-root-0646": "kz-2020-isca",
    "kz-2020-isca-root-0648": "kz-2020-isca",
    "kz-2020-isca-root-0704": "kz-2020-isca",
    "kz-2021-isca-nursultan-root": "kz-2020-isca",
    "superfish-2014-root": "superfish-2014",
    "dell-2015-edellroot": "dell-2015",
    "dell-2015-dsdtestprovider": "dell-2015",
    "sennheiser-2017-senncomrootca": "sennheiser-2017",
    "sennheiser-2017-127.0.0.1-ca": "sennheiser-2017",
    "cyberoam-2012-shared-dpi-key": "cyberoam-2012",
    "trustwave-2012-mitm-subca": "trustwave-2012",
}


def _name(*attrs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


QAZNET_DN = _name((NameOID.COUNTRY_NAME, "KZ"), (NameOID.COMMON_NAME, "Qaznet Trust Network"))
ISCA_DN = ISCA_0704.subject


def _make(subject: x509.Name, issuer: x509.Name, key: object, signer: object, *,
          ca: bool = False, ski: bool = True, aki: bytes | None = None,
          eku: bool = False, san: str | None = None) -> x509.Certificate:
    pub = key.public_key()  # type: ignore[attr-defined]
    b = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=90))
    )
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    if ski:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
    if aki is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                            critical=False)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return b.sign(signer, hashes.SHA256())  # type: ignore[arg-type]


def _ca(cn: str, key: ec.EllipticCurvePrivateKey, dn: x509.Name | None = None) -> x509.Certificate:
    name = dn or _name((NameOID.COMMON_NAME, cn))
    return _make(name, name, key, key, ca=True)


def _leaf(issuer: x509.Name, signer: object, *, host: str = "example.kz",
          aki: bytes | None = None) -> x509.Certificate:
    return _make(_name((NameOID.COMMON_NAME, host)), issuer, LEAF_KEY, signer, aki=aki,
                 san=host, eku=True)


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


# --- the shipped data ------------------------------------------------------------------------

def test_builtin_labels_incidents_and_version() -> None:
    reg = load_registry()
    assert {e.label: e.incident for e in reg.entries} == EXPECTED_LABELS
    assert reg.version == (anchors_dir() / "VERSION").read_text().strip()
    assert all(e.citations for e in reg.entries)
    assert load_registry() is not reg  # fresh object, but built-in entries are cached
    assert load_registry().entries == reg.entries


def test_builtin_hashes_match_index_csv() -> None:
    with (CAS / "index.csv").open(newline="") as fh:
        rows = {r["file"]: r for r in csv.DictReader(fh)}
    for e in load_registry().entries:
        assert e.file is not None
        row = rows[e.file]
        assert e.spki_sha256 == row["sha256_spki"]
        assert e.sha256 == (row["sha256_der"] or None)
        assert e.kind == row["kind"]
        if e.certificate is not None:
            assert cert_sha256(e.certificate) == e.sha256
            assert spki_sha256(e.certificate) == e.spki_sha256
    by_label = {e.label: e for e in load_registry().entries}
    # Chromium named the 0704 root's file after its SPKI hash; we record the real DER hash.
    e704 = by_label["kz-2020-isca-root-0704"]
    assert e704.sha256 == "235150de7df7db2e538d461bc4d210c4e0819be2c4c76969476e3cbe67b723dd"
    assert e704.spki_sha256 is not None and e704.spki_sha256.startswith("3472e4f16c57")
    assert by_label["kz-2019-qaznet-root"].ski == "f494bfde50b6db6b243d9ef7be3aae36d7fb0e05"
    assert by_label["trustwave-2012-mitm-subca"].public_key is not None


def test_registry_json_is_what_loader_reads() -> None:
    data = json.loads((CAS / "registry.json").read_text(encoding="utf-8"))
    assert [e["label"] for e in data["entries"]] == load_registry().labels()


# --- matching ---------------------------------------------------------------------------------

def test_real_qaznet_root_in_chain_is_verified_by_hash() -> None:
    leaf = _leaf(QAZNET_DN, CA_KEYS[0])
    m = load_registry().match([leaf, QAZNET])
    assert m is not None
    assert (m.label, m.incident, m.evidence, m.via) == (
        "kz-2019-qaznet-root", "kz-2019", "verified_signature", "der_sha256")
    assert m.matched_sha256 == cert_sha256(QAZNET)


def test_qaznet_name_with_wrong_key_is_issuer_name_only() -> None:
    leaf = _leaf(QAZNET_DN, CA_KEYS[0])
    m = load_registry().match([leaf])
    assert m is not None
    assert (m.label, m.evidence, m.via) == ("kz-2019-qaznet-root", "issuer_name_only",
                                            "issuer_dn")
    assert m.matched_sha256 == cert_sha256(leaf)


def test_dn_compare_ignores_case() -> None:
    dn = _name((NameOID.COUNTRY_NAME, "kz"), (NameOID.COMMON_NAME, "QAZNET trust network"))
    m = load_registry().match([_leaf(dn, CA_KEYS[0])])
    assert m is not None and m.evidence == "issuer_name_only"


def test_aki_equal_to_registry_ski_is_issuer_name_only() -> None:
    other = _name((NameOID.COMMON_NAME, "Something Else"))
    leaf = _leaf(other, CA_KEYS[0], aki=bytes.fromhex("f494bfde50b6db6b243d9ef7be3aae36d7fb0e05"))
    m = load_registry().match([leaf])
    assert m is not None and (m.label, m.evidence, m.via) == (
        "kz-2019-qaznet-root", "issuer_name_only", "aki")


def test_isca_shared_dn_name_only() -> None:
    m = load_registry().match([_leaf(ISCA_DN, CA_KEYS[0])])
    assert m is not None
    assert m.incident == "kz-2020-isca" and m.evidence == "issuer_name_only"


def test_random_ca_is_not_matched() -> None:
    ca = _ca("Totally Normal CA", CA_KEYS[1])
    assert load_registry().match([_leaf(ca.subject, CA_KEYS[1]), ca]) is None
    assert load_registry().match([]) is None


def test_strongest_evidence_wins_across_chain() -> None:
    weak = _leaf(QAZNET_DN, CA_KEYS[0])
    m = load_registry().match([weak, ISCA_0704])
    assert m is not None
    assert (m.label, m.evidence) == ("kz-2020-isca-root-0704", "verified_signature")


def test_user_pem_registry_verified_signature(tmp_path: Path) -> None:
    ca = _ca("Corp Inspection CA", CA_KEYS[1])
    path = tmp_path / "corp.pem"
    path.write_bytes(_pem(ca))
    reg = load_registry([path])
    assert "user:Corp Inspection CA" in reg.labels()
    assert reg.version.endswith("+user")
    m = reg.match([_leaf(ca.subject, CA_KEYS[1])])  # CA not sent: found by signature
    assert m is not None
    assert (m.label, m.incident, m.evidence, m.via) == (
        "user:Corp Inspection CA", "user", "verified_signature", "signature")
    # Same name, different key: name only.
    m2 = reg.match([_leaf(ca.subject, CA_KEYS[2])])
    assert m2 is not None and m2.evidence == "issuer_name_only"


def test_user_pem_label_falls_back_to_sha(tmp_path: Path) -> None:
    dn = _name((NameOID.ORGANIZATION_NAME, "No CN Org"))
    ca = _ca("", CA_KEYS[1], dn)
    path = tmp_path / "nocn.pem"
    path.write_bytes(_pem(ca))
    assert f"user:{cert_sha256(ca)[:12]}" in load_registry([path]).labels()


def test_shared_dn_tries_every_candidate(tmp_path: Path) -> None:
    dn = _name((NameOID.COUNTRY_NAME, "ZZ"), (NameOID.COMMON_NAME, "Shared Name CA"))
    entries = []
    for i, key in enumerate(CA_KEYS):
        f = tmp_path / f"ca{i}.pem"
        f.write_bytes(_pem(_ca("", key, dn)))
        entries.append({"label": f"shared-{i}", "incident": "test-shared", "kind": "certificate",
                        "file": f.name})
    reg_file = tmp_path / "reg.json"
    reg_file.write_text(json.dumps({"entries": entries}))
    reg = load_registry([reg_file])
    m = reg.match([_leaf(dn, CA_KEYS[2])])
    assert m is not None and (m.label, m.evidence) == ("shared-2", "verified_signature")


def test_spki_only_entry(tmp_path: Path) -> None:
    key = CA_KEYS[2]
    key_file = tmp_path / "leaked.spki.pem"
    key_file.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    reg_file = tmp_path / "keys.json"
    reg_file.write_text(json.dumps({"entries": [
        {"label": "leaked-dpi-key", "incident": "test-dpi", "kind": "spki-only",
         "file": key_file.name},
    ]}))
    reg = load_registry([reg_file])
    # A cert whose own key is the listed key: matched by SPKI hash.
    ca_cert = _ca("Whatever Name", key)
    m = reg.match([ca_cert])
    assert m is not None and (m.label, m.evidence, m.via) == (
        "leaked-dpi-key", "verified_signature", "spki_sha256")
    # A leaf signed by the key under an unrelated name: matched by signature.
    leaf = _leaf(_name((NameOID.COMMON_NAME, "Random DPI")), key)
    m2 = reg.match([leaf])
    assert m2 is not None and (m2.label, m2.via) == ("leaked-dpi-key", "signature")
    # Signed by another key: nothing.
    assert reg.match([_leaf(_name((NameOID.COMMON_NAME, "Random DPI")), CA_KEYS[0])]) is None


def test_hash_only_user_entry(tmp_path: Path) -> None:
    ca = _ca("Hash Only CA", CA_KEYS[0])
    reg_file = tmp_path / "h.json"
    reg_file.write_text(json.dumps({"entries": [
        {"label": "hash-only", "incident": "t", "kind": "spki-only",
         "spki_sha256": spki_sha256(ca)}]}))
    m = load_registry([reg_file]).match([ca])
    assert m is not None and m.label == "hash-only"


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("{not json", r"not valid JSON"),
        ('{"entries": [{"label": "x"}]}', r"entry without 'incident'"),
        ('{"entries": [{"label": "x", "incident": "i", "kind": "certificate", '
         '"file": "missing.pem"}]}', r"cannot read"),
        ('{"entries": [{"label": "x", "incident": "i", "kind": "spki-only"}]}',
         r"no file, sha256 or spki_sha256"),
        ('{"entries": [{"label": "x", "incident": "i", "kind": "weird", "sha256": "00"}]}',
         r"kind must be"),
    ],
)
def test_bad_user_registries(tmp_path: Path, content: str, pattern: str) -> None:
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(RegistryError, match=pattern):
        load_registry([f])


def test_missing_and_non_cert_user_files(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry([tmp_path / "nope.pem"])
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(RegistryError, match="no certificate found"):
        load_registry([junk])


# --- 2019 forgery pattern ---------------------------------------------------------------------

def test_forgery_pattern_on_kz2019_style_leaf() -> None:
    # As in Raman et al. (IMC 2020): RSA-2048 e=3, copied subject/SAN, no other extensions.
    leaf = _make(_name((NameOID.COMMON_NAME, "www.facebook.com")),
                 _name((NameOID.COUNTRY_NAME, "KZ"), (NameOID.COMMON_NAME,
                                                      "Security Certificate")),
                 E3_KEY, CA_KEYS[0], ski=False, san="www.facebook.com")
    traits = forgery_pattern([leaf])
    assert traits == ["rsa_exponent_3", "no_subject_key_identifier",
                      "no_authority_key_identifier", "no_extended_key_usage", "no_sct_list",
                      "only_extension_is_san"]
    assert forgery_pattern_matches(traits) and is_forgery_pattern(tuple(traits))


def test_forgery_pattern_normal_leaf() -> None:
    ca = _ca("Normal CA", CA_KEYS[0])
    leaf = _leaf(ca.subject, CA_KEYS[0], aki=b"\x01" * 20)
    traits = forgery_pattern([leaf, ca])
    assert traits == ["no_sct_list"]
    assert not forgery_pattern_matches(traits)
    assert forgery_pattern([]) == []
    # The real roots are not leaves with e=3.
    assert not forgery_pattern_matches(forgery_pattern([QAZNET]))

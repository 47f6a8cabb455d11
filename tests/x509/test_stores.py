"""Tests for tlswatch.x509.stores against the shipped trust_anchors/ snapshots."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cryptography.x509.verification import Store

from tlswatch.x509.pem import load_certificates
from tlswatch.x509.stores import (
    STORE_NAMES,
    StoreError,
    TrustStore,
    anchors_dir,
    auto_store,
    cert_sha256,
    load_store,
    load_stores,
)

STORES_DIR = anchors_dir() / "stores"
EXPECTED_COUNTS = {  # from the source bundles (sslyze YAML counts / certifi files)
    "mozilla_nss": 144, "apple": 158, "microsoft_windows": 251, "google_aosp": 129,
    "openjdk": 89, "oracle_java": 93, "mozilla@2019-06": 138, "mozilla@2020-12": 129,
}
QAZNET_SHA = "00309c736dd661da6f1eb24173aa849944c168a43a15bffd192eecfdb6f8dbd2"
# Removed from Mozilla after 2019 and the classic source of false "untrusted" alarms.
DST_ROOT_CA_X3 = "0687260331a72403d909f105e69bcf0d32e1bd2493ffc6d9206d11bcd6770739"


def _manifest(name: str) -> dict[str, object]:
    path = STORES_DIR / f"{name.replace('@', '-')}.manifest.json"
    data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("name", STORE_NAMES)
def test_named_store_matches_manifest(name: str) -> None:
    store = load_store(name)
    manifest = _manifest(name)
    assert store.name == name == manifest["name"]
    assert store.version == manifest["version"]
    assert len(store) == manifest["count"]
    if name in EXPECTED_COUNTS:
        assert len(store) == EXPECTED_COUNTS[name]
    listed = manifest["certificates"]
    assert isinstance(listed, list)
    assert [c["sha256"] for c in listed] == [cert_sha256(c) for c in store.certificates]
    assert store.sha256_set == {c["sha256"] for c in listed}
    assert store.date is not None and store.date.isoformat() == manifest["date"]
    assert QAZNET_SHA not in store.sha256_set


def test_manifest_hashes_match_pem_bytes_independently() -> None:
    # Recompute from the raw PEM without going through the loader's cache.
    for name in STORE_NAMES:
        manifest = _manifest(name)
        raw = (STORES_DIR / str(manifest["file"])).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == manifest["pem_sha256"]
        certs = load_certificates(raw, source=name, max_certs=1000)
        listed = manifest["certificates"]
        assert isinstance(listed, list)
        assert {cert_sha256(c) for c in certs} == {c["sha256"] for c in listed}


def test_versions_and_dates() -> None:
    assert load_store("mozilla@2019-06").version == "2019.6.16"
    assert load_store("mozilla@2019-06").date == dt.date(2019, 6, 16)
    assert load_store("mozilla@2020-12").version == "2020.12.5"
    assert load_store("mozilla@2020-12").date == dt.date(2020, 12, 5)
    assert load_store("openjdk").version == "jdk-17.0.2"
    assert load_store("mozilla_nss").version == "2023-07-27"  # no own version: fetch date
    assert "9187a8d3b4b711dd51f53c2fd29041cf7c7b9535329556bfc9c706f38db0f81a" in load_store(
        "mozilla_nss").blocked_sha256  # DigiNotar


def test_old_snapshot_has_roots_removed_since() -> None:
    assert DST_ROOT_CA_X3 in load_store("mozilla@2019-06").sha256_set
    assert DST_ROOT_CA_X3 not in load_store("mozilla").sha256_set


def test_store_is_cached_and_verification_store_cached() -> None:
    a = load_store("apple")
    assert load_store("apple") is a
    vs = a.verification_store()
    assert isinstance(vs, Store)
    assert a.verification_store() is vs
    assert a.contains(a.certificates[0]) and a.contains_key(a.certificates[0])


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (dt.datetime(2019, 8, 1, tzinfo=dt.UTC), "mozilla@2019-06"),
        (dt.datetime(2021, 3, 1, tzinfo=dt.UTC), "mozilla@2020-12"),
        (dt.datetime(2020, 12, 5, 12, 0), "mozilla@2020-12"),  # naive = UTC, same day counts
        (dt.datetime(2020, 12, 4, 23, 0, tzinfo=dt.UTC), "mozilla@2019-06"),
        (dt.datetime(2015, 1, 1, tzinfo=dt.UTC), "mozilla@2019-06"),  # earlier than all
        (dt.date(2024, 1, 1), "mozilla@2020-12"),
    ],
)
def test_auto_store(at: dt.datetime, expected: str) -> None:
    assert auto_store(at).name == expected


def test_auto_store_2026_is_current_certifi_snapshot() -> None:
    current = load_store("mozilla")
    assert current.date is not None and current.date <= dt.date(2026, 11, 28)
    assert auto_store(dt.datetime(2026, 11, 28, tzinfo=dt.UTC)) is current


def test_load_stores_all_auto_dedupe() -> None:
    stores = load_stores(["all"])
    assert [s.name for s in stores] == list(STORE_NAMES)
    mixed = load_stores(["mozilla", "auto", "mozilla"], at=dt.datetime(2019, 8, 1))
    assert [s.name for s in mixed] == ["mozilla", "mozilla@2019-06"]
    assert [s.name for s in load_stores("apple")] == ["apple"]  # lone str tolerated
    with pytest.raises(StoreError, match="needs the time"):
        load_stores(["auto"])
    with pytest.raises(StoreError, match="no trust store given"):
        load_stores([])


def test_path_store(tmp_path: Path) -> None:
    src = STORES_DIR / "openjdk.pem"
    path = tmp_path / "my roots.pem"
    shutil.copyfile(src, path)
    store = load_store(str(path))
    assert isinstance(store, TrustStore)
    assert store.name == str(path.resolve())
    assert store.version == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert len(store) == 89
    assert store.date is not None
    # Editing the file is noticed (cache keyed by mtime/size).
    path.write_bytes(path.read_bytes().split(b"-----END CERTIFICATE-----")[0]
                     + b"-----END CERTIFICATE-----\n")
    assert len(load_store(str(path))) == 1


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("mozila", r"unknown trust store 'mozila'; valid: mozilla, mozilla_nss, .*oracle_java"),
        ("auto", r"not a single store"),
        ("all", r"not a single store"),
        ("./missing.pem", r"trust store file not found: ./missing.pem"),
    ],
)
def test_bad_names(spec: str, pattern: str) -> None:
    with pytest.raises(StoreError, match=pattern) as info:
        load_store(spec)
    assert "\n" not in str(info.value)


def test_bad_pem_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"not a certificate")
    with pytest.raises(StoreError, match=r"bad\.pem: no certificate found"):
        load_store(str(bad))


def test_env_override_and_integrity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "anchors"
    shutil.copytree(anchors_dir(), copy)
    monkeypatch.setenv("TLSWATCH_ANCHORS", str(copy))
    assert anchors_dir() == copy
    assert len(load_store("google_aosp")) == 129
    pem = copy / "stores" / "openjdk.pem"
    pem.write_bytes(pem.read_bytes() + b"\n")
    with pytest.raises(StoreError, match=r"openjdk\.pem does not match its manifest"):
        load_store("openjdk")

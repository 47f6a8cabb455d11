#!/usr/bin/env python3
"""Regenerate ``trust_anchors/`` from the shared source data (maintainer script).

Usage::

    python tools/update_anchors.py ../shared/data [--anchors trust_anchors]
                                   [--registry-version 2026.11.28]

Reads ``<data>/trust_stores/`` (sslyze PEM bundles + YAML manifests, certifi snapshots),
``<data>/interception_cas/`` (Chromium blocklist PEMs, index.csv, SOURCES.md) and the
*installed* ``certifi`` bundle (the ``mozilla`` store is a pinned snapshot of it, so results
don't drift when certifi is upgraded; rerun this script to refresh it).

Output is deterministic: same inputs (and same certifi version) -> byte-identical files. No
clock is read; the registry version comes from ``--registry-version`` or the existing
``trust_anchors/VERSION``.

Every hash written is computed here from the certificate bytes and cross-checked against the
sources (sslyze YAML fingerprints, ``index.csv``); any disagreement aborts the run.

Needs PyYAML (maintainer-only dependency; the runtime loaders read JSON only).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

REPO = Path(__file__).resolve().parents[1]

SSLYZE_SOURCE = {
    "repository": "github.com/nabla-c0d3/sslyze",
    "commit": "ef9131715f99a2d750499ea1a5c1ea7f0098b26c",
    "path": "sslyze/plugins/certificate_info/trust_stores/pem_files/",
    "upstream": "github.com/nabla-c0d3/trust_stores_observatory",
}

# store name -> (source PEM, sslyze YAML or None, output file stem)
SSLYZE_STORES = ["mozilla_nss", "apple", "microsoft_windows", "google_aosp", "openjdk",
                 "oracle_java"]
CERTIFI_SNAPSHOTS = {
    # name: (file in trust_stores/, certifi version, snapshot date)
    "mozilla@2019-06": ("mozilla_certifi_2019.6.16.pem", "2019.6.16", "2019-06-16"),
    "mozilla@2020-12": ("mozilla_certifi_2020.12.5.pem", "2020.12.5", "2020-12-05"),
}

CHROMIUM = "chromium/chromium net/data/ssl/blocklist/"
CHROMIUM_INC = ("chromium/chromium net/cert/cert_verify_proc_blocklist.inc "
                "(rev 8bd1dd910d22b6ff130b30589d25ec9f0792ce7a)")
OONI_2024 = "https://ooni.org/post/2024-kazakhstan-report/"
BOTH = ["kSPKIBlockList", "kKnownInterceptionList"]

# Curated per-entry metadata transcribed from interception_cas/SOURCES.md. Hashes, subjects,
# SKIs are NOT written here: they are computed from the files and checked against index.csv.
# Incident choice: every ISCA root (O=ISCA, incl. the 2021 Nur-Sultan DN) shares `kz-2020-isca`
# because the sources describe one operator whose roots were blocked together and used in a
# continuing 2020-2024 programme, not separate campaigns; the 2019 Qaznet root is `kz-2019`.
CURATED: dict[str, dict[str, Any]] = {
    "kz-2019-qaznet-root": {
        "incident": "kz-2019",
        "chromium_file": "00309c736dd661da6f1eb24173aa849944c168a43a15bffd192eecfdb6f8dbd2.pem",
        "chromium_lists": ["kSPKIBlockList"],
        "first_seen": "2019-07", "last_seen": "2019-08",
        "dates": [
            ["2019-07", "ISPs tell users to install it from http://qca.kz/ (qazca.cer/pem/der)"],
            ["2019-08-21", "added to Firefox OneCRL"],
        ],
        "citations": [
            "https://security.googleblog.com/2019/08/protecting-chrome-users-in-kazakhstan.html",
            "https://bugzilla.mozilla.org/show_bug.cgi?id=1567114",
            "https://github.com/net4people/bbs/issues/6",
        ],
        "notes": "Root of the July-August 2019 national interception. Leaves were issued by "
                 "the intermediate 'C=KZ, CN=Security Certificate' (RSA-2048; PEM not "
                 "available). Forged leaves: RSA e=3, no SKI/AKI/EKU/SCT.",
    },
    "kz-2020-isca-ca-root": {
        "incident": "kz-2020-isca",
        "chromium_file": "61c0fc2e38b5b6f9071b42cee54a9013d858b6697c68b460948551b3249576a1.pem",
        "chromium_lists": BOTH,
        "first_seen": "2020-12-06", "last_seen": None,
        "dates": [
            ["2020-12-06", "start of the Nur-Sultan 'cyber-exercise' interception"],
            ["2020-12-18", "Mozilla blog post announcing the block"],
        ],
        "citations": [
            "https://bugzilla.mozilla.org/show_bug.cgi?id=1680927",
            "Mozilla blog, 2020-12-18",
            "https://github.com/net4people/bbs/issues/56",
            "https://censoredplanet.org/kazakhstan/live",
            "https://archive.org/details/isca-ca-certificate",
        ],
        "notes": "Root of the December 2020 'cyber-exercise' interception in Nur-Sultan; "
                 "OONI calls it 'Information Security Certification Authority CA'. Its SPKI "
                 "is in CRLSet BlockedInterceptionSPKIs (CRLSet 6313).",
    },
    "kz-2020-isca-root-0539": {
        "incident": "kz-2020-isca",
        "chromium_file": "c530fadc9bfa265e63b755cc6ee04c2d70d60bb916ce2f331dc7359362571b25.pem",
        "chromium_lists": BOTH,
        "first_seen": "2023-08-09", "last_seen": "2024-01-16",
        "dates": [
            ["2023-08-09/2023-10-23", "validity of a MITM intermediate it signed (OONI)"],
            ["2023-11-02/2024-01-16", "validity of a MITM intermediate it signed (OONI)"],
        ],
        "citations": [OONI_2024, "https://crt.sh/?id=11106964945"],
        "notes": "ISCA root of the 2020-02-28 batch; first_seen/last_seen span the validity "
                 "of the MITM intermediates OONI attributes to it.",
    },
    "kz-2020-isca-root-0616": {
        "incident": "kz-2020-isca",
        "chromium_file": "89107c8e50e029b7b5f4ff0ccd2956bcc9d0c8ba2bfb6a58374ed63a6b034a30.pem",
        "chromium_lists": BOTH,
        "first_seen": "2023-11-28", "last_seen": "2024-06-15",
        "dates": [
            ["2023-11-28/2024-02-11", "validity of a MITM intermediate it signed (OONI)"],
            ["2024-01-04/2024-04-03", "validity of the m.reactor.cc leaf in Mozilla bug 1879046"],
            ["2024-02-07", "Mozilla bug 1879046 filed (add to OneCRL)"],
            ["2024-06-15", "served from isca.gov.kz (web.archive.org snapshot)"],
        ],
        "citations": [
            "https://bugzilla.mozilla.org/show_bug.cgi?id=1879046",
            "https://github.com/net4people/bbs/issues/339",
            "https://crt.sh/?id=12281942153",
            OONI_2024,
        ],
        "notes": "The 'new Kazakhstan root' of 2024 (Mozilla bug 1879046).",
    },
    "kz-2020-isca-root-0630": {
        "incident": "kz-2020-isca",
        "chromium_file": "06fd20629c143b9eab28d2799caefc5d23fde267d16c631e3f5b8b4bab3f68e6.pem",
        "chromium_lists": BOTH,
        "first_seen": None, "last_seen": None, "dates": [],
        "citations": [OONI_2024],
        "notes": "Further ISCA root of the 2020-02-28 batch; no source ties it to a specific "
                 "MITM observation.",
    },
    "kz-2020-isca-root-0643": {
        "incident": "kz-2020-isca",
        "chromium_file": "1df696f021ab1c3ace9a376b07ed7256a40214cd3396d7934087614924e2d7ef.pem",
        "chromium_lists": BOTH,
        "first_seen": None, "last_seen": None, "dates": [],
        "citations": [],
        "notes": "Sibling ISCA root blocked by Chromium together with the Dec 2020 root; no "
                 "source states where it was used.",
    },
    "kz-2020-isca-root-0646": {
        "incident": "kz-2020-isca",
        "chromium_file": "0bd39de4793cdc117138f47708aa4d583acf67adb059a0d91f668d1803bf6489.pem",
        "chromium_lists": BOTH,
        "first_seen": "2021-06-18", "last_seen": "2021-09-01",
        "dates": [
            ["2021-06-18/2021-09-01", "validity of a MITM intermediate it signed (OONI)"],
            ["2021-08-08", "OONI measurement 20210808015758.022737_KZ"],
        ],
        "citations": [OONI_2024],
        "notes": "OONI matches its SHA-1 and serial.",
    },
    "kz-2020-isca-root-0648": {
        "incident": "kz-2020-isca",
        "chromium_file": "c95c133b68319ee516b5f41e377f589878af1556567cc2834ef03b1d10830fd3.pem",
        "chromium_lists": BOTH,
        "first_seen": None, "last_seen": None, "dates": [],
        "citations": [OONI_2024],
        "notes": "Further ISCA root of the 2020-02-28 batch; no source ties it to a specific "
                 "MITM observation.",
    },
    "kz-2020-isca-root-0704": {
        "incident": "kz-2020-isca",
        # Chromium named this file after the SPKI hash, not the certificate hash.
        "chromium_file": "3472e4f16c570e0dd388aaaa4a64a34a4b939f1ca770996b5be0037c1aded9c1.pem",
        "chromium_lists": ["kKnownInterceptionList"],
        "first_seen": "2024-08-23", "last_seen": "2024-11-06",
        "dates": [
            ["2024-08-23/2024-11-06", "validity of a MITM intermediate it signed (OONI)"],
            ["2024-09-20", "downloadable from isca.gov.kz (net4people/bbs#339 comment)"],
        ],
        "citations": [
            "https://github.com/net4people/bbs/issues/339",
            "https://isca.gov.kz/Information_Security_Certification_Authority_CA_pem.crt",
            OONI_2024,
        ],
        "notes": "Chromium's file name is this root's SPKI hash, not its DER hash. Not on "
                 "crt.sh.",
    },
    "kz-2021-isca-nursultan-root": {
        "incident": "kz-2020-isca",
        "chromium_file": "0230a604d99220e5612ee7862ab9f7a6e18e4f1ac4c9e27075788cc5220169ab.pem",
        "chromium_lists": BOTH,
        "first_seen": None, "last_seen": None, "dates": [],
        "citations": [],
        "notes": "ISCA root with a different DN (ST/L=Nur-Sultan), issued 2021-04-28, no AKI. "
                 "Same operator as the 2020 roots, so same incident; no source ties it to a "
                 "specific MITM observation.",
    },
    "superfish-2014-root": {
        "incident": "superfish-2014",
        "chromium_file": "b6fe9151402bad1c06d7e66db67a26aa7356f2e6c644dbcf9f98968ff632e1b7.pem",
        "chromium_lists": ["kSPKIBlockList"],
        "first_seen": None, "last_seen": None,
        "dates": [["2015", "private key extracted and published (EFF 2015)"]],
        "citations": ["EFF 2015 (cited by the Chromium blocklist README)"],
        "notes": "Root preinstalled on Lenovo computers with Superfish adware; one root and "
                 "key on every machine.",
    },
    "dell-2015-edellroot": {
        "incident": "dell-2015",
        "chromium_file": "ec30c9c3065a06bb07dc5b1c6b497f370c1ca65c0f30c08e042ba6bcecc78f2c.pem",
        "chromium_lists": ["kSPKIBlockList"],
        "first_seen": None, "last_seen": None,
        "dates": [["2015-11", "Dell advisory SLN300321"]],
        "citations": ["Dell SLN300321, Nov 2015"],
        "notes": "Installed by Dell software; private key trivially extracted. Legacy "
                 "signature OID 1.3.14.3.2.29.",
    },
    "dell-2015-dsdtestprovider": {
        "incident": "dell-2015",
        "chromium_file": "0f912fd7be760be25afbc56bdc09cd9e5dcc9c6f6a55a778aefcb6aa30e31554.pem",
        "chromium_lists": ["kSPKIBlockList"],
        "first_seen": None, "last_seen": None,
        "dates": [["2015-11", "Dell advisory SLN300321"]],
        "citations": ["Dell SLN300321, Nov 2015"],
        "notes": "Installed by Dell software; private key trivially extracted. Negative "
                 "serial number (cryptography warns).",
    },
    "sennheiser-2017-senncomrootca": {
        "incident": "sennheiser-2017",
        "chromium_file": "91e5cc32910686c5cac25c18cc805696c7b33868c280caf0c72844a2a8eb91e2.pem",
        "chromium_lists": ["kSPKIBlockList"],
        "first_seen": None, "last_seen": None, "dates": [],
        "citations": [],
        "notes": "Sennheiser HeadSetup software; private key disclosed.",
    },
    "sennheiser-2017-127.0.0.1-ca": {
        "incident": "sennheiser-2017",
        "chromium_file": "ddd8ab9178c99cbd9685ea4ae66dc28bfdc9a5a8a166f7f69ad0b5042ad6eb28.pem",
        "chromium_lists": ["kSPKIBlockList"],
        "first_seen": None, "last_seen": None, "dates": [],
        "citations": [],
        "notes": "Sennheiser HeadSetup software (CN=127.0.0.1, CA:TRUE); private key "
                 "disclosed.",
    },
    "trustwave-2012-mitm-subca": {
        "incident": "trustwave-2012",
        "chromium_file": "32ecc96f912f96d889e73088cd031c7ded2c651c805016157a23b6f32f798a3b.key",
        "chromium_lists": ["kSPKIBlockList"],
        "first_seen": None, "last_seen": None, "dates": [],
        "citations": ["https://bugzilla.mozilla.org/show_bug.cgi?id=724929"],
        "notes": "Public key shared by two Trustwave sub-CAs issued for enterprise "
                 "man-in-the-middle. Only the key is published.",
    },
    "cyberoam-2012-shared-dpi-key": {
        "incident": "cyberoam-2012",
        "chromium_file": "1af56c98ff043ef92bebff54cebb4dd67a25ba956c817f3e6dd3c1e52eb584c1.key",
        "chromium_lists": ["kSPKIBlockList"],
        "first_seen": None, "last_seen": None,
        "dates": [["2012", "CVE-2012-3372"]],
        "citations": ["Tor Project blog (Cyberoam DPI)", "CVE-2012-3372"],
        "notes": "Default private key shared by Cyberoam DPI devices, leaked. Only the key "
                 "is published.",
    },
}


class SourceMismatch(Exception):
    """A computed value disagrees with what the sources say."""


@dataclass(frozen=True)
class Cert:
    der: bytes
    cert: x509.Certificate

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def spki_sha256(self) -> str:
        return hashlib.sha256(spki_der(self.cert)).hexdigest()

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()


def spki_der(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def read_pem_certs(path: Path) -> list[Cert]:
    with warnings.catch_warnings():
        # Several real roots have negative serials; they are data, not our bug.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    out = [Cert(c.public_bytes(serialization.Encoding.DER), c) for c in certs]
    shas = [c.sha256 for c in out]
    if len(set(shas)) != len(shas):
        raise SourceMismatch(f"{path}: duplicate certificates")
    return out


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def canonical_pem(certs: list[Cert]) -> str:
    """One canonical PEM block per cert (source order) with a human-readable comment."""
    parts = []
    for c in certs:
        pem = c.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        parts.append(f"# {c.subject}\n# SHA256: {c.sha256}\n{pem}")
    return "\n".join(parts)


def store_file_stem(name: str) -> str:
    return name.replace("@", "-")


def write_store(out: Path, name: str, certs: list[Cert], *, version: str, date: str,
                source: dict[str, Any], blocked: list[dict[str, str]]) -> dict[str, Any]:
    stem = store_file_stem(name)
    pem_text = canonical_pem(certs)
    write_text(out / f"{stem}.pem", pem_text)
    manifest = {
        "name": name,
        "file": f"{stem}.pem",
        "pem_sha256": hashlib.sha256(pem_text.encode("utf-8")).hexdigest(),
        "version": version,
        "date": date,
        "source": source,
        "count": len(certs),
        "certificates": [{"sha256": c.sha256, "subject": c.subject} for c in certs],
        "blocked_certificates": blocked,
    }
    write_text(out / f"{stem}.manifest.json", dump_json(manifest))
    return manifest


def build_stores(data: Path, anchors: Path) -> list[dict[str, Any]]:
    import certifi  # maintainer-time only: the snapshot is pinned in trust_anchors/
    import yaml  # type: ignore[import-untyped]

    src = data / "trust_stores"
    out = anchors / "stores"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    manifests = []

    cver = certifi.__version__
    cdate = dt.date(*(int(p) for p in cver.split(".")[:3])).isoformat()
    manifests.append(write_store(
        out, "mozilla", read_pem_certs(Path(certifi.where())), version=cver, date=cdate,
        source={"description": f"Mozilla root bundle as shipped in certifi {cver} (PyPI)",
                "package": "certifi", "package_version": cver, "path": "certifi/cacert.pem"},
        blocked=[]))

    for name in SSLYZE_STORES:
        certs = read_pem_certs(src / f"{name}.pem")
        meta = yaml.safe_load((src / f"{name}.yaml").read_text(encoding="utf-8"))
        yaml_fps = [c["fingerprint"].lower() for c in meta["trusted_certificates"]]
        if sorted(yaml_fps) != sorted(c.sha256 for c in certs):
            raise SourceMismatch(f"{name}: PEM and YAML fingerprints differ")
        if meta["trusted_certificates_count"] != len(certs):
            raise SourceMismatch(f"{name}: YAML count {meta['trusted_certificates_count']}")
        date_fetched = meta["date_fetched"]
        date = (date_fetched.isoformat() if isinstance(date_fetched, dt.date)
                else str(date_fetched))
        # DESIGN §5: a store's version is its own version, or its fetch date if it has none.
        version = str(meta["version"]) if meta["version"] is not None else date
        blocked = [{"sha256": b["fingerprint"].lower(), "subject": b["subject_name"].strip()}
                   for b in meta.get("blocked_certificates") or []]
        manifests.append(write_store(
            out, name, certs, version=version, date=date,
            source={**SSLYZE_SOURCE, "file": f"{name}.pem", "platform": meta["platform"],
                    "url": meta["url"], "date_fetched": date},
            blocked=blocked))

    for name, (fname, ver, date) in CERTIFI_SNAPSHOTS.items():
        manifests.append(write_store(
            out, name, read_pem_certs(src / fname), version=ver, date=date,
            source={"description": f"Mozilla root bundle as shipped in certifi {ver} (PyPI)",
                    "package": "certifi", "package_version": ver, "file": fname},
            blocked=[]))
    return manifests


def read_index(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}


def build_registry(data: Path, anchors: Path, version: str) -> list[dict[str, Any]]:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    src = data / "interception_cas"
    out = anchors / "interception_cas"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    index = read_index(src / "index.csv")
    labels_seen = set()
    entries = []
    for fname in sorted(index):
        row = index[fname]
        label = fname.removesuffix(".pem").removesuffix(".spki")
        if label not in CURATED:
            raise SourceMismatch(f"{fname}: no curated metadata for label {label!r}")
        labels_seen.add(label)
        cur = CURATED[label]
        raw = (src / fname).read_bytes()
        shutil.copyfile(src / fname, out / fname)
        entry: dict[str, Any] = {"label": label, "incident": cur["incident"],
                                 "kind": row["kind"], "file": fname}
        if row["kind"] == "spki-only":
            key = load_pem_public_key(raw)
            spki = key.public_bytes(serialization.Encoding.DER,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
            entry.update(subject=None, sha256=None,
                         spki_sha256=hashlib.sha256(spki).hexdigest(), ski=None,
                         not_before=None, not_after=None)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                cert = x509.load_pem_x509_certificate(raw)
            c = Cert(cert.public_bytes(serialization.Encoding.DER), cert)
            try:
                ski: str | None = cert.extensions.get_extension_for_class(
                    x509.SubjectKeyIdentifier).value.digest.hex()
            except x509.ExtensionNotFound:
                ski = None
            entry.update(subject=c.subject, sha256=c.sha256, spki_sha256=c.spki_sha256,
                         ski=ski, not_before=cert.not_valid_before_utc.isoformat(),
                         not_after=cert.not_valid_after_utc.isoformat())
            if c.sha256 != row["sha256_der"]:
                raise SourceMismatch(f"{fname}: DER sha256 {c.sha256} != index.csv")
            chromium_name = cur["chromium_file"].split(".")[0]
            if chromium_name not in (c.sha256, c.spki_sha256):
                raise SourceMismatch(f"{fname}: Chromium file name matches neither hash")
        if entry["spki_sha256"] != row["sha256_spki"]:
            raise SourceMismatch(f"{fname}: SPKI sha256 {entry['spki_sha256']} != index.csv")
        entry.update(
            first_seen=cur["first_seen"], last_seen=cur["last_seen"], dates=cur["dates"],
            chromium_lists=cur["chromium_lists"],
            citations=[CHROMIUM + cur["chromium_file"], CHROMIUM_INC, *cur["citations"]],
            notes=cur["notes"],
        )
        entries.append(entry)
    if missing := set(CURATED) - labels_seen:
        raise SourceMismatch(f"curated labels without a file: {sorted(missing)}")
    shutil.copyfile(src / "SOURCES.md", out / "SOURCES.md")
    shutil.copyfile(src / "index.csv", out / "index.csv")
    registry = {
        "format": "tlswatch-interception-registry/1",
        "version": version,
        "source": "Chromium net/data/ssl/blocklist (see SOURCES.md in this folder)",
        "entries": entries,
    }
    write_text(out / "registry.json", dump_json(registry))
    return entries


def build_sources_md(data: Path, anchors: Path, manifests: list[dict[str, Any]]) -> None:
    src_text = (data / "trust_stores" / "SOURCES.md").read_text(encoding="utf-8").strip()
    lines = [
        "# Provenance of trust_anchors/",
        "",
        "Generated by `tools/update_anchors.py`; do not edit by hand.",
        "",
        "## Trust stores (`stores/`)",
        "",
        "Source notes, verbatim from the shared data set:",
        "",
        *[f"> {line}" if line else ">" for line in src_text.splitlines()],
        "",
        "`mozilla` is a pinned snapshot of the certifi bundle installed when this script ran.",
        "",
        "| store | version | date | count | origin |",
        "|---|---|---|---|---|",
    ]
    for m in manifests:
        s = m["source"]
        origin = s.get("url") or s.get("description", "")
        lines.append(f"| `{m['name']}` | {m['version']} | {m['date']} | {m['count']} | "
                     f"{origin} |")
    lines += [
        "",
        "## Interception CAs (`interception_cas/`)",
        "",
        "See `interception_cas/SOURCES.md` (verbatim copy, with citations) and `index.csv`.",
        "",
    ]
    write_text(anchors / "SOURCES.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="shared data dir (with trust_stores/, "
                    "interception_cas/)")
    ap.add_argument("--anchors", type=Path, default=REPO / "trust_anchors")
    ap.add_argument("--registry-version", help="default: keep trust_anchors/VERSION")
    args = ap.parse_args(argv)
    version_file = args.anchors / "VERSION"
    version = args.registry_version or (
        version_file.read_text(encoding="utf-8").strip() if version_file.exists() else None)
    if not version:
        ap.error("no trust_anchors/VERSION yet: pass --registry-version YYYY.MM.DD")
    try:
        manifests = build_stores(args.data, args.anchors)
        entries = build_registry(args.data, args.anchors, version)
    except SourceMismatch as exc:
        print(f"update_anchors: source mismatch: {exc}", file=sys.stderr)
        return 1
    build_sources_md(args.data, args.anchors, manifests)
    write_text(version_file, version + "\n")
    for m in manifests:
        print(f"store {m['name']:<18} version={m['version']!s:<20.20} count={m['count']}")
    print(f"registry {version}: {len(entries)} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Trust stores: the pinned snapshots in ``trust_anchors/stores/`` and user PEM files.

Every verdict names its store and version (DESIGN §3.6, §5), so stores are immutable snapshots
shipped with the repo rather than whatever the OS or certifi has today.

Data location: ``$TLSWATCH_ANCHORS`` if set, else ``<repo>/trust_anchors`` found relative to
this file (``Path(__file__).resolve().parents[2]``), which is right for a checkout and an
editable install.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import Store

from tlswatch.x509.pem import CertificateInputError, load_certificates

__all__ = [
    "AUTO_CANDIDATES",
    "STORE_NAMES",
    "StoreError",
    "TrustStore",
    "anchors_dir",
    "auto_store",
    "cert_sha256",
    "load_store",
    "load_stores",
    "spki_sha256",
]

STORE_NAMES: tuple[str, ...] = (
    "mozilla",
    "mozilla_nss",
    "apple",
    "microsoft_windows",
    "google_aosp",
    "openjdk",
    "oracle_java",
    "mozilla@2019-06",
    "mozilla@2020-12",
)
#: Mozilla snapshots `auto` chooses from (their dates come from the manifests).
AUTO_CANDIDATES: tuple[str, ...] = ("mozilla@2019-06", "mozilla@2020-12", "mozilla")
_MAX_STORE_CERTS = 5000  # bundles have ~100-250 roots; this only bounds hostile files
_SPECIAL = ("all", "auto")


class StoreError(ValueError):
    """A trust store can't be found or loaded; ``str()`` is a one-line message."""


def anchors_dir() -> Path:
    """Directory holding the shipped anchors (``$TLSWATCH_ANCHORS`` overrides)."""
    env = os.environ.get("TLSWATCH_ANCHORS")
    if env:
        return Path(env)
    # tlswatch/_anchors is a symlink to the repo's trust_anchors/ in a checkout and a real
    # copy inside a built wheel.
    return Path(__file__).resolve().parents[1] / "_anchors"


def cert_sha256(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the certificate's DER."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def spki_sha256(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo (what Chrome's blocklists and pins use)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


@dataclass(frozen=True)
class TrustStore:
    """An immutable set of trust anchors with the name/version that verdicts cite.

    Not slotted: the hash sets and the verification ``Store`` are built lazily with
    ``functools.cached_property`` (building a ``Store`` from ~150 roots is not free).
    """

    name: str
    version: str
    date: dt.date | None
    source: str
    certificates: tuple[x509.Certificate, ...] = field(repr=False)
    #: SHA-256 of certificates the platform explicitly distrusts (from the sslyze YAMLs).
    blocked_sha256: frozenset[str] = field(default=frozenset(), repr=False)

    def __len__(self) -> int:
        return len(self.certificates)

    @functools.cached_property
    def sha256_set(self) -> frozenset[str]:
        """DER SHA-256 of every anchor."""
        return frozenset(cert_sha256(c) for c in self.certificates)

    @functools.cached_property
    def spki_sha256_set(self) -> frozenset[str]:
        """SPKI SHA-256 of every anchor (matches re-issued roots with the same key)."""
        return frozenset(spki_sha256(c) for c in self.certificates)

    def contains(self, cert: x509.Certificate) -> bool:
        """True if ``cert`` is one of the anchors (by DER hash)."""
        return cert_sha256(cert) in self.sha256_set

    def contains_key(self, cert: x509.Certificate) -> bool:
        """True if ``cert``'s public key is an anchor's key (by SPKI hash)."""
        return spki_sha256(cert) in self.spki_sha256_set

    @functools.cached_property
    def _verification_store(self) -> Store:
        return Store(list(self.certificates))

    def verification_store(self) -> Store:
        """A ``cryptography.x509.verification.Store`` of the anchors, built once and cached."""
        return self._verification_store


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StoreError(f"cannot read store manifest {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise StoreError(f"store manifest {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StoreError(f"store manifest {path} is not a JSON object")
    return data


def _manifest_path(name: str, base: Path) -> Path:
    return base / "stores" / f"{name.replace('@', '-')}.manifest.json"


@functools.lru_cache(maxsize=32)
def _load_named(name: str, base: Path) -> TrustStore:
    manifest = _read_manifest(_manifest_path(name, base))
    pem_path = base / "stores" / str(manifest["file"])
    try:
        raw = pem_path.read_bytes()
    except OSError as exc:
        raise StoreError(f"store {name}: cannot read {pem_path}: {exc.strerror}") from None
    # Integrity: the PEM must be exactly what update_anchors.py wrote for this manifest.
    if hashlib.sha256(raw).hexdigest() != manifest.get("pem_sha256"):
        raise StoreError(f"store {name}: {pem_path.name} does not match its manifest "
                         "(rerun tools/update_anchors.py)")
    try:
        certs = load_certificates(raw, source=str(pem_path), max_certs=_MAX_STORE_CERTS)
    except CertificateInputError as exc:
        raise StoreError(f"store {name}: {exc}") from None
    if len(certs) != manifest.get("count"):
        raise StoreError(f"store {name}: {len(certs)} certificates, manifest says "
                         f"{manifest.get('count')}")
    date = manifest.get("date")
    src = manifest.get("source") or {}
    source = src.get("url") or src.get("description") or str(src.get("repository", ""))
    return TrustStore(
        name=name,
        version=str(manifest["version"]),
        date=dt.date.fromisoformat(date) if date else None,
        source=source,
        certificates=tuple(certs),
        blocked_sha256=frozenset(
            b["sha256"] for b in manifest.get("blocked_certificates") or ()
        ),
    )


@functools.lru_cache(maxsize=32)
def _load_path(path: Path, _mtime_ns: int, _size: int) -> TrustStore:
    # mtime/size are part of the cache key so an edited file is reloaded.
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read trust store {path}: {exc.strerror or exc}") from None
    try:
        certs = load_certificates(raw, source=str(path), max_certs=_MAX_STORE_CERTS)
    except CertificateInputError as exc:
        raise StoreError(str(exc)) from None
    mtime = dt.datetime.fromtimestamp(_mtime_ns / 1e9, tz=dt.UTC).date()
    return TrustStore(
        name=str(path),
        version=hashlib.sha256(raw).hexdigest()[:12],
        date=mtime,
        source=f"file:{path}",
        certificates=tuple(certs),
    )


def _valid_names() -> str:
    return ", ".join((*STORE_NAMES, *_SPECIAL)) + ", or a path to a PEM file"


def load_store(name_or_path: str) -> TrustStore:
    """Load a named store (see ``STORE_NAMES``) or a PEM file; cached per process."""
    if name_or_path in STORE_NAMES:
        return _load_named(name_or_path, anchors_dir().resolve())
    if name_or_path in _SPECIAL:
        raise StoreError(f"{name_or_path!r} is not a single store: use load_stores() "
                         "(and pass at= for 'auto')")
    path = Path(name_or_path)
    looks_like_path = os.sep in name_or_path or "/" in name_or_path or path.suffix != ""
    if path.is_file():
        resolved = path.resolve()
        st = resolved.stat()
        store = _load_path(resolved, st.st_mtime_ns, st.st_size)
        return store
    if looks_like_path:
        raise StoreError(f"trust store file not found: {name_or_path}")
    raise StoreError(f"unknown trust store {name_or_path!r}; valid: {_valid_names()}")


def auto_store(at: dt.datetime | dt.date) -> TrustStore:
    """The Mozilla snapshot for judging a chain seen at ``at`` (DESIGN §5).

    The latest snapshot dated at or before ``at``; if ``at`` predates them all, the earliest.
    Naive datetimes are taken as UTC.
    """
    if isinstance(at, dt.datetime):
        day = (at.astimezone(dt.UTC) if at.tzinfo is not None else at).date()
    else:
        day = at
    stores = [load_store(n) for n in AUTO_CANDIDATES]
    dated = sorted((s for s in stores if s.date is not None), key=lambda s: s.date or day)
    if not dated:
        raise StoreError("no dated Mozilla snapshot available for 'auto'")
    before = [s for s in dated if s.date is not None and s.date <= day]
    return before[-1] if before else dated[0]


def load_stores(
    spec: Sequence[str], *, at: dt.datetime | dt.date | None = None
) -> list[TrustStore]:
    """Load several stores; ``all`` expands to every named store, ``auto`` needs ``at``.

    Duplicates are dropped, order kept.
    """
    if isinstance(spec, str):  # a lone str is a Sequence[str]; almost certainly a mistake
        spec = [spec]
    out: list[TrustStore] = []
    seen: set[tuple[str, str]] = set()
    for item in spec:
        if item == "all":
            stores = [load_store(n) for n in STORE_NAMES]
        elif item == "auto":
            if at is None:
                raise StoreError("store 'auto' needs the time being judged (at=)")
            stores = [auto_store(at)]
        else:
            stores = [load_store(item)]
        for s in stores:
            if (s.name, s.version) not in seen:
                seen.add((s.name, s.version))
                out.append(s)
    if not out:
        raise StoreError(f"no trust store given; valid: {_valid_names()}")
    return out

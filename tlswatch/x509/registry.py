"""Registry of known interception CAs and the 2019 Kazakhstan forgery pattern.

Built-in data: ``trust_anchors/interception_cas/registry.json`` (see its SOURCES.md), located
like the trust stores (``$TLSWATCH_ANCHORS`` or ``<repo>/trust_anchors``).

Evidence strength, strongest first:

* ``verified_signature``: a chain certificate *is* a registry certificate/key (DER or SPKI
  hash), or its signature verifies under a registry key. Cryptographic, so safe at 0.99.
* ``issuer_name_only``: a chain certificate names a registry CA as issuer (DN or AKI == SKI)
  but the signature doesn't verify or can't be checked, e.g. a forgery reusing the name or a
  chain whose issuing intermediate we don't have.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtensionOID, NameOID

from tlswatch.x509.pem import CertificateInputError, load_certificates
from tlswatch.x509.stores import anchors_dir, cert_sha256, spki_sha256

__all__ = [
    "FORGERY_CORE_TRAITS",
    "Evidence",
    "InterceptionRegistry",
    "RegistryEntry",
    "RegistryError",
    "RegistryMatch",
    "forgery_pattern",
    "forgery_pattern_matches",
    "is_forgery_pattern",
    "load_registry",
]

Evidence = Literal["verified_signature", "issuer_name_only"]
Kind = Literal["certificate", "spki-only"]

class RegistryError(ValueError):
    """A registry file is missing, malformed or inconsistent; ``str()`` is one line."""


@dataclass(frozen=True)
class RegistryEntry:
    """One interception CA certificate or public key, with its provenance."""

    label: str
    incident: str
    kind: Kind
    file: str | None
    subject: str | None
    sha256: str | None
    spki_sha256: str | None
    ski: str | None
    first_seen: str | None = None
    last_seen: str | None = None
    dates: tuple[tuple[str, str], ...] = ()
    citations: tuple[str, ...] = ()
    notes: str = ""
    certificate: x509.Certificate | None = field(default=None, repr=False, compare=False)
    public_key: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class RegistryMatch:
    """The strongest registry hit for a chain.

    ``matched_sha256`` is the DER SHA-256 of the *chain* certificate that matched; ``via`` says
    how (``der_sha256``, ``spki_sha256``, ``signature``, ``issuer_dn``, ``aki``).
    """

    label: str
    incident: str
    matched_sha256: str
    evidence: Evidence
    via: str


def _name_key(name: x509.Name) -> tuple[tuple[str, str], ...]:
    # Compare DNs by (OID, value) ignoring string type and case: a forger may re-encode a
    # PrintableString as UTF8String, and we still want the name-only hint.
    return tuple(
        (attr.oid.dotted_string, str(attr.value).strip().casefold())
        for rdn in name.rdns
        for attr in rdn
    )


def _ski(cert: x509.Certificate) -> str | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    except (x509.ExtensionNotFound, ValueError):
        return None


def _aki(cert: x509.Certificate) -> str | None:
    try:
        ext = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except (x509.ExtensionNotFound, ValueError):
        return None
    return ext.value.key_identifier.hex() if ext.value.key_identifier else None


def _signature_verifies(cert: x509.Certificate, key: Any) -> bool:
    """Check ``cert``'s signature with a bare public key (no name checks)."""
    try:
        params = cert.signature_algorithm_parameters
        hash_alg = cert.signature_hash_algorithm
    except (ValueError, UnsupportedAlgorithm):
        return False
    sig, tbs = cert.signature, cert.tbs_certificate_bytes
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if not isinstance(params, padding.PKCS1v15 | padding.PSS) or hash_alg is None:
                return False
            key.verify(sig, tbs, params, hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(params, ec.ECDSA):
                return False
            key.verify(sig, tbs, params)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(sig, tbs)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _issued_by(cert: x509.Certificate, entry: RegistryEntry) -> bool:
    if entry.certificate is not None and cert.issuer == entry.certificate.subject:
        try:
            cert.verify_directly_issued_by(entry.certificate)
            return True
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            return False
    # Name differs (AKI match) or spki-only entry: check the signature with the key itself.
    return entry.public_key is not None and _signature_verifies(cert, entry.public_key)


class InterceptionRegistry:
    """Known interception CAs, indexed for matching presented chains."""

    def __init__(self, entries: Iterable[RegistryEntry], version: str) -> None:
        self.entries: tuple[RegistryEntry, ...] = tuple(entries)
        self._version = version
        self._by_sha: dict[str, list[RegistryEntry]] = {}
        self._by_spki: dict[str, list[RegistryEntry]] = {}
        self._by_name: dict[tuple[tuple[str, str], ...], list[RegistryEntry]] = {}
        self._by_ski: dict[str, list[RegistryEntry]] = {}
        self._keys_only: list[RegistryEntry] = []
        for e in self.entries:
            if e.sha256:
                self._by_sha.setdefault(e.sha256, []).append(e)
            if e.spki_sha256:
                self._by_spki.setdefault(e.spki_sha256, []).append(e)
            if e.certificate is not None:
                # Several ISCA roots share one DN: keep all, try all.
                self._by_name.setdefault(_name_key(e.certificate.subject), []).append(e)
            if e.ski:
                self._by_ski.setdefault(e.ski.lower(), []).append(e)
            if e.certificate is None and e.public_key is not None:
                self._keys_only.append(e)

    @property
    def version(self) -> str:
        """Registry version (built-in ``VERSION``, plus ``+user`` when extras were loaded)."""
        return self._version

    def __len__(self) -> int:
        return len(self.entries)

    def labels(self) -> list[str]:
        return [e.label for e in self.entries]

    def match(self, chain: Sequence[x509.Certificate]) -> RegistryMatch | None:
        """Strongest registry evidence anywhere in ``chain`` (leaf first), or None."""
        weak: RegistryMatch | None = None
        for cert in chain:
            sha = cert_sha256(cert)
            try:
                spki = spki_sha256(cert)
            except (ValueError, UnsupportedAlgorithm):
                spki = ""
            for e in self._by_sha.get(sha, ()):
                return RegistryMatch(e.label, e.incident, sha, "verified_signature", "der_sha256")
            for e in self._by_spki.get(spki, ()):
                return RegistryMatch(e.label, e.incident, sha, "verified_signature", "spki_sha256")

            named = list(self._by_name.get(_name_key(cert.issuer), ()))
            aki = _aki(cert)
            tried = {id(e) for e in named}
            by_aki = [e for e in self._by_ski.get(aki or "", ()) if id(e) not in tried]
            tried.update(id(e) for e in by_aki)
            # Key-only entries have no name to pre-filter on, so try each (a handful of keys).
            keys = [e for e in self._keys_only if id(e) not in tried]
            for e in (*named, *by_aki, *keys):
                if _issued_by(cert, e):
                    return RegistryMatch(e.label, e.incident, sha, "verified_signature",
                                         "signature")
            if weak is None and (named or by_aki):
                e = (named or by_aki)[0]
                weak = RegistryMatch(e.label, e.incident, sha, "issuer_name_only",
                                     "issuer_dn" if named else "aki")
        return weak


def _public_key_spki(key: Any) -> str:
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _entry_from_json(obj: dict[str, Any], base: Path, where: str) -> RegistryEntry:
    try:
        label, incident, kind = str(obj["label"]), str(obj["incident"]), obj["kind"]
    except KeyError as exc:
        raise RegistryError(f"{where}: entry without {exc.args[0]!r}") from None
    if kind not in ("certificate", "spki-only"):
        raise RegistryError(f"{where}: entry {label!r}: kind must be certificate|spki-only")
    cert: x509.Certificate | None = None
    key: Any = None
    file = obj.get("file")
    sha, spki = obj.get("sha256"), obj.get("spki_sha256")
    if file:
        path = base / str(file)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise RegistryError(f"{where}: entry {label!r}: cannot read {path}: "
                                f"{exc.strerror}") from None
        if kind == "certificate":
            try:
                cert = load_certificates(raw, source=str(path), max_certs=1)[0]
            except CertificateInputError:
                # A future cryptography may reject a quirky real root (negative serial…);
                # the entry still matches by hash, just not by signature.
                cert = None
            if cert is not None:
                key = cert.public_key()
                if sha and cert_sha256(cert) != sha:
                    raise RegistryError(f"{where}: entry {label!r}: {file} sha256 differs")
                sha = sha or cert_sha256(cert)
                spki = spki or spki_sha256(cert)
        else:
            try:
                key = serialization.load_pem_public_key(raw)
            except (ValueError, UnsupportedAlgorithm) as exc:
                raise RegistryError(f"{where}: entry {label!r}: {file} is not a PEM public "
                                    f"key: {exc}") from None
            if spki and _public_key_spki(key) != spki:
                raise RegistryError(f"{where}: entry {label!r}: {file} spki_sha256 differs")
            spki = spki or _public_key_spki(key)
    if not (sha or spki):
        raise RegistryError(f"{where}: entry {label!r} has no file, sha256 or spki_sha256")
    return RegistryEntry(
        label=label,
        incident=incident,
        kind=kind,
        file=str(file) if file else None,
        subject=obj.get("subject") or (cert.subject.rfc4514_string() if cert else None),
        sha256=str(sha).lower() if sha else None,
        spki_sha256=str(spki).lower() if spki else None,
        ski=obj.get("ski") or (_ski(cert) if cert else None),
        first_seen=obj.get("first_seen"),
        last_seen=obj.get("last_seen"),
        dates=tuple((str(d[0]), str(d[1])) for d in obj.get("dates") or ()),
        citations=tuple(str(c) for c in obj.get("citations") or ()),
        notes=str(obj.get("notes") or ""),
        certificate=cert,
        public_key=key,
    )


def _load_json_registry(path: Path) -> tuple[str, list[RegistryEntry]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegistryError(f"cannot read registry {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise RegistryError(f"registry {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise RegistryError(f"registry {path}: expected an object with an 'entries' list")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        entries = [_entry_from_json(e, path.parent, str(path)) for e in data["entries"]]
    return str(data.get("version", "")), entries


def _user_pem_entries(path: Path) -> list[RegistryEntry]:
    try:
        certs = load_certificates(path.read_bytes(), source=str(path), max_certs=1000)
    except OSError as exc:
        raise RegistryError(f"cannot read registry {path}: {exc.strerror or exc}") from None
    except CertificateInputError as exc:
        raise RegistryError(str(exc)) from None
    out = []
    for cert in certs:
        sha = cert_sha256(cert)
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = str(cns[0].value) if cns else ""
        out.append(RegistryEntry(
            label=f"user:{cn or sha[:12]}", incident="user", kind="certificate",
            file=str(path), subject=cert.subject.rfc4514_string(), sha256=sha,
            spki_sha256=spki_sha256(cert), ski=_ski(cert), citations=(str(path),),
            notes="user-supplied", certificate=cert, public_key=cert.public_key(),
        ))
    return out


@functools.lru_cache(maxsize=4)
def _builtin(base: Path) -> tuple[str, tuple[RegistryEntry, ...]]:
    path = base / "interception_cas" / "registry.json"
    json_version, entries = _load_json_registry(path)
    try:
        version = (base / "VERSION").read_text(encoding="utf-8").strip()
    except OSError:
        version = json_version
    return version or json_version, tuple(entries)


def load_registry(extra: Sequence[Path] = ()) -> InterceptionRegistry:
    """Built-in registry plus user files (registry JSON format, or PEM certificates).

    PEM certificates get label ``user:<CN or sha256[:12]>`` and incident ``user``.
    """
    version, builtin = _builtin(anchors_dir().resolve())
    entries = list(builtin)
    for p in extra:
        path = Path(p)
        head = b""
        try:
            with path.open("rb") as fh:
                head = fh.read(4096)
        except OSError as exc:
            raise RegistryError(f"cannot read registry {path}: {exc.strerror or exc}") from None
        if head.lstrip().startswith(b"{"):
            entries.extend(_load_json_registry(path)[1])
        else:
            entries.extend(_user_pem_entries(path))
    if extra:
        version += "+user"
    return InterceptionRegistry(entries, version)


# --- 2019 Kazakhstan forgery pattern --------------------------------------------------------

#: Traits that together make the pattern (the caller decides what to do with them).
FORGERY_CORE_TRAITS: frozenset[str] = frozenset({
    "rsa_exponent_3",
    "no_subject_key_identifier",
    "no_authority_key_identifier",
    "no_extended_key_usage",
    "no_sct_list",
})


def forgery_pattern(chain: Sequence[x509.Certificate]) -> list[str]:
    """Traits of the 2019 Kazakhstan forged leaf found on ``chain[0]``.

    Possible traits: ``rsa_exponent_3``, ``no_subject_key_identifier``,
    ``no_authority_key_identifier``, ``no_extended_key_usage``, ``no_sct_list``,
    ``only_extension_is_san``; ``extensions_unparseable`` if the extensions can't be read.
    """
    if not chain:
        return []
    leaf = chain[0]
    traits: list[str] = []
    try:
        key = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm):
        key = None
    if isinstance(key, rsa.RSAPublicKey) and key.public_numbers().e == 3:
        traits.append("rsa_exponent_3")
    try:
        oids = {ext.oid for ext in leaf.extensions}
    except ValueError:
        traits.append("extensions_unparseable")
        return traits
    if ExtensionOID.SUBJECT_KEY_IDENTIFIER not in oids:
        traits.append("no_subject_key_identifier")
    if ExtensionOID.AUTHORITY_KEY_IDENTIFIER not in oids:
        traits.append("no_authority_key_identifier")
    if ExtensionOID.EXTENDED_KEY_USAGE not in oids:
        traits.append("no_extended_key_usage")
    if ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS not in oids:
        traits.append("no_sct_list")
    if oids == {ExtensionOID.SUBJECT_ALTERNATIVE_NAME}:
        traits.append("only_extension_is_san")
    return traits


def is_forgery_pattern(traits: Iterable[str]) -> bool:
    """True when all :data:`FORGERY_CORE_TRAITS` are present (e=3 and no SKI/AKI/EKU/SCT)."""
    return FORGERY_CORE_TRAITS.issubset(traits)


#: Alias of :func:`is_forgery_pattern`.
forgery_pattern_matches = is_forgery_pattern

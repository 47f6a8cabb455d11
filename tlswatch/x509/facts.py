"""What each presented certificate says about itself: the record's ``chain[]`` entries.

Peer certificates are hostile data (DESIGN §3.3): :func:`cert_facts` never raises for any
bytes. Whatever can't be parsed is reported in ``CertFacts.parse_error`` and the rest is
filled as far as possible (``sha256`` and ``der_b64`` always). Strings taken from the
certificate are bounded and stripped of control characters:

- subject, issuer and each SAN are cut to :data:`MAX_STR` characters; at most
  :data:`MAX_SANS` SANs are kept; non-printable characters become ``\\xNN``/``\\uNNNN``
  escapes;
- ``sans`` are plain strings: DNS names as written (``example.com``, ``*.example.com``) and
  IP addresses in their canonical text form (``192.0.2.1``, ``2001:db8::1``); other SAN
  types (e-mail, URI, …) are not listed;
- ``extensions`` are short names (``subjectAltName``, ``ctPrecertificateSCTs`` …) or the
  dotted OID for unknown ones, in certificate order;
- ``serial`` is lowercase hex, ``-`` prefixed when (illegally) negative.

Anything odd but survivable (negative serial, a cut string, a deprecation warning from
``cryptography`` about a malformed certificate) is returned as a note by
:func:`cert_facts_and_notes`; ``CertFacts`` itself has no notes field.
"""

from __future__ import annotations

import base64
import hashlib
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID

from tlswatch.model import CertFacts, KeyInfo, rfc3339

__all__ = [
    "MAX_SANS",
    "MAX_STR",
    "cert_facts",
    "cert_facts_and_notes",
    "chain_facts",
    "clean_str",
]

MAX_STR = 1024
MAX_SANS = 512
_MAX_ERROR = 200

_SCT_OID = ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS
_EXT_NAMES: dict[x509.ObjectIdentifier, str] = {
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME: "subjectAltName",
    ExtensionOID.ISSUER_ALTERNATIVE_NAME: "issuerAltName",
    ExtensionOID.BASIC_CONSTRAINTS: "basicConstraints",
    ExtensionOID.KEY_USAGE: "keyUsage",
    ExtensionOID.EXTENDED_KEY_USAGE: "extendedKeyUsage",
    ExtensionOID.SUBJECT_KEY_IDENTIFIER: "subjectKeyIdentifier",
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER: "authorityKeyIdentifier",
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS: "authorityInfoAccess",
    ExtensionOID.SUBJECT_INFORMATION_ACCESS: "subjectInfoAccess",
    ExtensionOID.CRL_DISTRIBUTION_POINTS: "cRLDistributionPoints",
    ExtensionOID.FRESHEST_CRL: "freshestCRL",
    ExtensionOID.CERTIFICATE_POLICIES: "certificatePolicies",
    ExtensionOID.POLICY_CONSTRAINTS: "policyConstraints",
    ExtensionOID.POLICY_MAPPINGS: "policyMappings",
    ExtensionOID.INHIBIT_ANY_POLICY: "inhibitAnyPolicy",
    ExtensionOID.NAME_CONSTRAINTS: "nameConstraints",
    ExtensionOID.TLS_FEATURE: "TLSFeature",
    ExtensionOID.OCSP_NO_CHECK: "OCSPNoCheck",
    ExtensionOID.PRECERT_POISON: "ctPoison",
    _SCT_OID: "ctPrecertificateSCTs",
}

T = TypeVar("T")


def clean_str(value: str, limit: int = MAX_STR) -> tuple[str, bool]:
    """``value`` with non-printable characters escaped, cut to ``limit``; and whether it was cut."""
    if not value.isprintable():
        value = "".join(
            ch
            if ch.isprintable()
            else (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
            for ch in value[: limit * 2]  # never escape more than could be kept
        )
    if len(value) > limit:
        return value[:limit], True
    return value, False


def _err(exc: BaseException) -> str:
    text, _ = clean_str(f"{type(exc).__name__}: {exc}", _MAX_ERROR)
    return text


def _key_info(key: object) -> KeyInfo:
    if isinstance(key, rsa.RSAPublicKey):
        return KeyInfo("rsa", key.key_size, key.public_numbers().e)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return KeyInfo("ec", key.key_size, None, key.curve.name)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return KeyInfo("ed25519", 256)
    if isinstance(key, ed448.Ed448PublicKey):
        return KeyInfo("ed448", 456)
    if isinstance(key, dsa.DSAPublicKey):
        return KeyInfo("dsa", key.key_size)
    return KeyInfo("unknown")


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return True  # signature can't be checked (odd algorithm/params): names decide
    return True


class _Collector:
    """Runs field extractors, turning any exception into a parse error instead of a crash."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.notes: list[str] = []

    def get(self, what: str, fn: Callable[[], T], default: T) -> T:
        try:
            return fn()
        except Exception as exc:  # hostile input: any parser failure is data
            self.errors.append(f"{what}: {_err(exc)}")
            return default

    def text(self, what: str, value: str) -> str:
        out, cut = clean_str(value)
        if cut:
            self.notes.append(f"{what}_truncated")
        return out


def _serial_hex(n: int) -> str:
    return f"-{-n:x}" if n < 0 else f"{n:x}"


def cert_facts_and_notes(
    der: bytes, cert: x509.Certificate | None = None
) -> tuple[CertFacts, tuple[str, ...]]:
    """Facts about one DER certificate plus notes about survivable oddities (never raises)."""
    der = bytes(der)
    sha = hashlib.sha256(der).hexdigest()
    b64 = base64.b64encode(der).decode("ascii")
    col = _Collector()
    with warnings.catch_warnings(record=True) as caught:
        # cryptography warns (CryptographyDeprecationWarning) about e.g. negative serials;
        # for peer data that is a finding, not a reason to crash or spam stderr.
        warnings.simplefilter("always")
        if cert is None:
            try:
                cert = x509.load_der_x509_certificate(der)
            except Exception as exc:  # ValueError for bad DER; anything else is still data
                return CertFacts(sha256=sha, der_b64=b64, parse_error=_err(exc)), ()
        facts = _facts(cert, sha, b64, col)
    for w in caught:
        note, _ = clean_str(f"warning: {w.message}", _MAX_ERROR)
        if note not in col.notes:
            col.notes.append(note)
    return facts, tuple(col.notes)


def _facts(cert: x509.Certificate, sha: str, b64: str, col: _Collector) -> CertFacts:
    c = cert
    subject = col.get("subject", lambda: col.text("subject", c.subject.rfc4514_string()), None)
    issuer = col.get("issuer", lambda: col.text("issuer", c.issuer.rfc4514_string()), None)
    serial_int = col.get("serial", lambda: c.serial_number, None)
    if serial_int is not None and serial_int <= 0:
        col.notes.append("serial_not_positive")
    nb = col.get("not_before", lambda: rfc3339(c.not_valid_before_utc), None)
    na = col.get("not_after", lambda: rfc3339(c.not_valid_after_utc), None)
    pub = col.get("key", c.public_key, None)
    key = _key_info(pub) if pub is not None else KeyInfo("unknown")
    spki = None
    if pub is not None:
        spki = col.get(
            "spki",
            lambda: hashlib.sha256(
                pub.public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            ).hexdigest(),
            None,
        )
    exts: list[x509.Extension[x509.ExtensionType]] = col.get(
        "extensions", lambda: list(c.extensions), []
    )
    names: list[str] = []
    sans: list[str] = []
    ski = aki = None
    is_ca: bool | None = None
    for ext in exts:
        names.append(_EXT_NAMES.get(ext.oid, ext.oid.dotted_string))
        v = ext.value
        if isinstance(v, x509.SubjectAlternativeName):
            raw = [str(n.value) for n in v if isinstance(n, x509.DNSName | x509.IPAddress)]
            if len(raw) > MAX_SANS:
                col.notes.append("sans_truncated")
            sans.extend(col.text("san", s) for s in raw[:MAX_SANS])
        elif isinstance(v, x509.SubjectKeyIdentifier):
            ski = v.digest.hex()
        elif isinstance(v, x509.AuthorityKeyIdentifier) and v.key_identifier is not None:
            aki = v.key_identifier.hex()
        elif isinstance(v, x509.BasicConstraints):
            is_ca = v.ca
    return CertFacts(
        sha256=sha,
        der_b64=b64,
        spki_sha256=spki,
        subject=subject,
        issuer=issuer,
        serial=None if serial_int is None else _serial_hex(serial_int),
        not_before=nb,
        not_after=na,
        key=key,
        sans=tuple(sans),
        sct=any(e.oid == _SCT_OID for e in exts),
        extensions=tuple(names),
        self_signed=col.get("self_signed", lambda: _self_signed(c), False),
        ski=ski,
        aki=aki,
        is_ca=is_ca,
        parse_error="; ".join(col.errors) or None,
    )


def cert_facts(der: bytes, cert: x509.Certificate | None = None) -> CertFacts:
    """Facts about one certificate (``cert`` saves re-parsing ``der``); never raises."""
    return cert_facts_and_notes(der, cert)[0]


def chain_facts(ders: Sequence[bytes]) -> tuple[CertFacts, ...]:
    """Facts for a presented chain, in the order presented (leaf first)."""
    return tuple(cert_facts(d) for d in ders)

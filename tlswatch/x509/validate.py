"""Path validation of a presented chain against one trust store at one time.

:func:`validate_chain` first makes one strict Web-PKI verification
(``cryptography.x509.verification``: the store's anchors, time ``at``, name ``host``). If
that fails, the cause is *diagnosed by re-verifying under relaxed conditions*, never by
reading the library's error text (DESIGN §3):

1. anchors: the store; else the chain's own self-signed certificates (→ ``untrusted_root``,
   or ``self_signed`` when the leaf anchors itself); else the chain's other certificates,
   then the leaf itself (→ ``incomplete_chain``: the top's issuer is nowhere to be found);
   these attempts relax everything below at the same time;
2. time: a moment inside the validity of every certificate on the name-linked path; the
   path then found is compared with ``at`` (→ ``expired`` / ``not_yet_valid``);
3. name: the leaf's own first SAN instead of ``host`` (→ ``hostname_mismatch``);
4. extensions: permissive CA/EE policies (only basicConstraints resp. subjectAltName
   required, which the library insists on) (→ ``policy_violation``).

One primary ``error`` per validation, by precedence

    untrusted_root | self_signed  >  incomplete_chain  >  expired | not_yet_valid
    >  hostname_mismatch  >  policy_violation  >  invalid

``invalid`` is everything else, e.g. a bad signature: no path under any relaxation, or a
path that only ends at a presented certificate whose issuer *is* present (by name, in the
chain or the store) but does not verify its signature (then ``anchor_subject`` names that
issuer).
``hostname_ok`` is set whenever some path could be built (None when ``host`` is None or no
path exists). ``anchor_*`` name the path's anchor (the untrusted root for
``untrusted_root``/``self_signed``); for ``incomplete_chain`` ``anchor_subject`` is the
issuer that is missing and ``anchor_sha256`` is None. ``path_len`` counts the path
including its anchor.
"""

from __future__ import annotations

import hashlib
import ipaddress
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    Subject,
    VerificationError,
)

from tlswatch.model import Validation, rfc3339
from tlswatch.x509.stores import TrustStore

__all__ = [
    "ERRORS",
    "validate_all",
    "validate_chain",
]

#: The error vocabulary, highest precedence first (untrusted_root and self_signed are peers,
#: as are expired and not_yet_valid).
ERRORS: tuple[str, ...] = (
    "untrusted_root",
    "self_signed",
    "incomplete_chain",
    "expired",
    "not_yet_valid",
    "hostname_mismatch",
    "policy_violation",
    "invalid",
)

# cryptography refuses policies without these (CA: basicConstraints; server EE: SAN).
_LAX_CA = ExtensionPolicy.permit_all().require_present(
    x509.BasicConstraints, Criticality.AGNOSTIC, None
)
_LAX_EE = ExtensionPolicy.permit_all().require_present(
    x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
)
_MAX_SUBJECT = 1024


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(_der(cert)).hexdigest()


def _name_str(name: x509.Name) -> str | None:
    try:
        return name.rfc4514_string()[:_MAX_SUBJECT]
    except ValueError:
        return None


def _subject(host: str) -> Subject | None:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return x509.DNSName(host)
    except ValueError:
        return None


def _leaf_subject(leaf: x509.Certificate) -> Subject | None:
    """A name the leaf itself is valid for (its first DNS or IP SAN)."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    for dns in san.get_values_for_type(x509.DNSName):
        # A wildcard is a pattern, not a name: pick a concrete name it covers.
        name = "tlswatch-wildcard" + dns[1:] if dns.startswith("*.") else dns
        subj = _subject(name)
        if subj is not None:
            return subj
    for ip in san.get_values_for_type(x509.IPAddress):
        return x509.IPAddress(ip)
    return None


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # bad or uncheckable signature: not usable as an anchor anyway
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Attempt:
    store: Store
    at: datetime
    subject: Subject
    lax: bool


def _verify(
    a: _Attempt, leaf: x509.Certificate, inters: list[x509.Certificate]
) -> list[x509.Certificate] | None:
    builder = PolicyBuilder().store(a.store).time(a.at)
    if a.lax:
        builder = builder.extension_policies(ca_policy=_LAX_CA, ee_policy=_LAX_EE)
    try:
        return builder.build_server_verifier(a.subject).verify(leaf, inters)
    except (VerificationError, ValueError):
        return None


def _window(cert: x509.Certificate) -> tuple[datetime, datetime]:
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def _relaxed_time(
    leaf: x509.Certificate, pool: Sequence[x509.Certificate], at: datetime
) -> datetime:
    """``at`` moved into the validity of every cert on the name-linked path from the leaf.

    ``pool`` holds the presented intermediates and the store's anchors. If the windows
    don't overlap, the leaf's window alone decides.
    """
    by_subject: dict[x509.Name, x509.Certificate] = {}
    with warnings.catch_warnings():
        # Some store roots carry over-long attributes; cryptography warns, the name still works.
        warnings.simplefilter("ignore", UserWarning)
        for c in pool:
            by_subject.setdefault(c.subject, c)
    lo, hi = _window(leaf)
    cur, seen = leaf, {leaf.subject}
    while cur.issuer not in seen and cur.issuer in by_subject:
        cur = by_subject[cur.issuer]
        seen.add(cur.subject)
        nb, na = _window(cur)
        if max(lo, nb) > min(hi, na):
            break  # disjoint: keep what we have
        lo, hi = max(lo, nb), min(hi, na)
    return min(max(at, lo), hi)


def _result(
    store: TrustStore,
    at: datetime,
    *,
    error: str | None,
    path: list[x509.Certificate] | None = None,
    hostname_ok: bool | None = None,
    incomplete: bool = False,
) -> Validation:
    anchor_sha = anchor_subject = None
    if path:
        top = path[-1]
        if incomplete:
            anchor_subject = _name_str(top.issuer)
        else:
            anchor_sha, anchor_subject = _sha256(top), _name_str(top.subject)
    return Validation(
        store=store.name,
        store_version=store.version,
        trusted=error is None,
        at=rfc3339(at),
        error=error,
        anchor_sha256=anchor_sha,
        anchor_subject=anchor_subject,
        hostname_ok=hostname_ok,
        path_len=len(path) if path else None,
    )


def _split(
    chain: Sequence[x509.Certificate],
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    leaf = chain[0]
    seen = {_der(leaf)}
    inters: list[x509.Certificate] = []
    for c in chain[1:]:
        try:
            der = _der(c)
        except Exception:  # unusable certificate object: drop it, like a browser would
            continue
        if der not in seen:
            seen.add(der)
            inters.append(c)
    return leaf, inters


def _anchors(store: TrustStore) -> Store | None:
    if not store.certificates:
        return None  # cryptography refuses an empty Store; nothing is trusted then
    return store.verification_store()


def validate_chain(
    chain: Sequence[x509.Certificate],
    store: TrustStore,
    *,
    host: str | None,
    at: datetime,
) -> Validation:
    """Validate a presented chain (leaf first, any order after it) against ``store`` at ``at``.

    ``host`` None skips the name check (``hostname_ok`` is then None). Never raises for
    peer data; raises ValueError for a naive ``at``.
    """
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    if not chain:
        return _result(store, at, error="invalid")
    leaf, inters = _split(chain)
    anchors = _anchors(store)
    own = _leaf_subject(leaf)
    want = _subject(host) if host is not None else own
    if want is not None and anchors is not None:
        path = _verify(_Attempt(anchors, at, want, False), leaf, inters)
        if path is not None:  # the common case: one verification
            return _result(
                store, at, error=None, path=path, hostname_ok=True if host is not None else None
            )
    name = own or want
    if name is None:  # no SAN to check against: Web PKI requires one
        return _result(store, at, error="policy_violation")

    t = _relaxed_time(leaf, [*inters, *store.certificates], at)
    # 1. Find the anchors under which any path exists, relaxing everything else.
    self_signed = [c for c in inters if _self_signed(c)]
    levels: list[tuple[str | None, Store | None]] = [
        (None, anchors),
        ("untrusted_root", Store(self_signed) if self_signed else None),
        ("incomplete_chain", Store(inters) if inters else None),
        ("incomplete_chain", Store([leaf])),
    ]
    if _self_signed(leaf):
        levels[3] = ("self_signed", Store([leaf]))
    found: tuple[str | None, Store, list[x509.Certificate]] | None = None
    for err, st in levels:
        if st is None:
            continue
        path = _verify(_Attempt(st, t, name, True), leaf, inters)
        if path is not None:
            found = (err, st, path)
            break
    if found is None:
        return _result(store, at, error="invalid")
    anchor_err, st, path = found
    if anchor_err == "untrusted_root" and len(path) == 1:
        anchor_err = "self_signed"
    elif anchor_err == "incomplete_chain":
        # Only "incomplete" if the top's issuer is really absent; if a certificate of that
        # name was presented or is an anchor, it failed to verify the top's signature.
        top = path[-1]
        if any(c.subject == top.issuer for c in (*inters, *store.certificates) if c != top):
            anchor_err = "invalid"

    # 2. Name check on that path (also wanted when another error wins).
    hostname_ok: bool | None = None
    if host is not None:
        hostname_ok = want == name or (
            want is not None and _verify(_Attempt(st, t, want, True), leaf, inters) is not None
        )

    def done(error: str) -> Validation:
        return _result(
            store,
            at,
            error=error,
            path=path,
            hostname_ok=hostname_ok,
            incomplete=error in ("incomplete_chain", "invalid"),
        )

    if anchor_err is not None:
        return done(anchor_err)
    # 3. Time, judged on the path that exists.
    if any(at > c.not_valid_after_utc for c in path):
        return done("expired")
    if any(at < c.not_valid_before_utc for c in path):
        return done("not_yet_valid")
    if hostname_ok is False:
        return done("hostname_mismatch")
    # 4. Extensions: does the path fail only under the strict Web-PKI policies?
    if _verify(_Attempt(st, t, name, False), leaf, inters) is None:
        return done("policy_violation")
    return done("invalid")


def validate_all(
    chain: Sequence[x509.Certificate],
    stores: Sequence[TrustStore],
    *,
    host: str | None,
    at: datetime,
) -> tuple[Validation, ...]:
    """:func:`validate_chain` against each store, in order."""
    return tuple(validate_chain(chain, s, host=host, at=at) for s in stores)

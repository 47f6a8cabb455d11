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

import bisect
import hashlib
import ipaddress
import re
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

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
    "PreparedChain",
    "san_matches_host",
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


# -- many hosts and times, one chain ------------------------------------------------------
#
# A campaign sees the same chain (a CDN's, a wildcard's, an interceptor's) for thousands of
# names. ``validate_chain`` costs one strict path verification (~0.2 ms) per call, and only
# its last step depends on the name: cryptography's verifier checks the requested name
# against the leaf's SANs (policy ``ee::subject_alternative_name``) and nothing else looks at
# it (name constraints apply to the leaf's SANs, path building ignores the subject). So a
# strict verification for a name the leaf itself is valid for (``_leaf_subject``) holds for
# every name the leaf's SANs match, with the same path. ``PreparedChain`` keeps that
# verification per store and validity window and answers a name with a SAN match; whenever
# that is not certain it calls ``validate_chain``, so the answer is always the same.

# cryptography's ``types::DNSName::new``: 1-253 characters, labels of 1-63 ASCII letters,
# digits and hyphens, no hyphen first or last.
_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_MAX_STORE_EDGES = 64


def _dns_name_ok(name: str) -> bool:
    return 0 < len(name) <= 253 and all(_DNS_LABEL.match(label) for label in name.split("."))


def san_matches_host(sans: Sequence[str], host: str) -> bool:
    """True only if cryptography's verifier would accept ``host`` for a leaf with DNS ``sans``.

    A copy of its rules (RFC 6125 subset, ``types::DNSPattern``): ``host`` must be a valid
    DNS name (an IP literal is never matched here: ``validate_chain`` makes it an IP
    subject); a SAN matches exactly, or as ``*.<name>`` when ``host`` minus its first label
    equals ``<name>``; ASCII case-insensitive; malformed SANs match nothing. False means
    "not certain" as well as "no": the caller then asks the verifier.
    """
    return _SanPatterns(sans).match(host)


class _SanPatterns:
    """A leaf's valid DNS SANs, lower-cased: exact names and wildcard parents."""

    __slots__ = ("exact", "wild")

    def __init__(self, sans: Sequence[str]) -> None:
        self.exact = frozenset(s.lower() for s in sans
                               if not s.startswith("*.") and _dns_name_ok(s))
        self.wild = frozenset(s[2:].lower() for s in sans
                              if s.startswith("*.") and _dns_name_ok(s[2:]))

    def match(self, host: str) -> bool:
        host_l = host.lower()
        if host_l not in self.exact and host_l.partition(".")[2] not in self.wild:
            return False
        # A SAN matched the lower-cased text; the name itself must be valid (and ASCII, or
        # lower() could have folded e.g. a Kelvin sign into a "k").
        if not _dns_name_ok(host):
            return False
        # Only an all-digit-and-dot name can also be an IP literal (IPv6 needs ':').
        return host.strip("0123456789.") != "" or not _is_ip(host)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _edges(certs: Sequence[x509.Certificate]) -> list[datetime]:
    """Sorted instants where some certificate's validity changes (not_after is inclusive)."""
    out: set[datetime] = set()
    for c in certs:
        out.add(c.not_valid_before_utc)
        out.add(c.not_valid_after_utc + timedelta(microseconds=1))
    return sorted(out)


# Store anchors' validity also decides a path (an expired root is no anchor). Keyed by the
# store object's id with the store itself held, so an id is never reused while cached.
_store_edges_cache: OrderedDict[int, tuple[TrustStore, list[datetime]]] = OrderedDict()


def _store_edges(store: TrustStore) -> list[datetime]:
    hit = _store_edges_cache.get(id(store))
    if hit is not None and hit[0] is store:
        return hit[1]
    edges = _edges(store.certificates)
    _store_edges_cache[id(store)] = (store, edges)
    if len(_store_edges_cache) > _MAX_STORE_EDGES:
        _store_edges_cache.popitem(last=False)
    return edges


class PreparedChain:
    """One presented chain, read once, validated for many hosts and times.

    ``validate(store, host=, at=)`` returns exactly what ``validate_chain`` returns for the
    same arguments; it reuses the strict verification for the leaf's own name per store and
    validity window (presented certificates and the store's anchors) and matches ``host``
    against the leaf's DNS SANs with :func:`san_matches_host`. Anything else (a failing
    chain, an IP or unusual host, a name the SANs don't match) goes to ``validate_chain``.
    """

    __slots__ = ("_chain", "_edges", "_inters", "_leaf", "_own", "_sans", "_strict")

    def __init__(self, chain: Sequence[x509.Certificate]) -> None:
        self._chain = tuple(chain)
        self._leaf: x509.Certificate | None = None
        self._inters: list[x509.Certificate] = []
        self._own: Subject | None = None
        self._sans = _SanPatterns(())
        self._edges: list[datetime] = []
        # (id(store), window in the chain's edges, window in the store's) -> (the store, held
        # so its id stays unique; the strict result for the leaf's own name, ``at`` to be
        # replaced, or None if it failed)
        self._strict: dict[tuple[int, int, int], tuple[TrustStore, Validation | None]] = {}
        if not self._chain:
            return
        try:
            self._leaf, self._inters = _split(self._chain)
            self._own = _leaf_subject(self._leaf)
            san = self._leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            self._sans = _SanPatterns(san.value.get_values_for_type(x509.DNSName))
            self._edges = _edges(self._chain)
        except Exception:  # odd peer data: no shortcut, validate_chain decides every time
            self._own = None

    def validate(self, store: TrustStore, *, host: str | None, at: datetime) -> Validation:
        """Same as ``validate_chain(chain, store, host=host, at=at)``."""
        if at.tzinfo is None:
            raise ValueError("at must be timezone-aware")
        if self._own is None or self._leaf is None or (
                host is not None and not self._sans.match(host)):
            return validate_chain(self._chain, store, host=host, at=at)
        key = (id(store), bisect.bisect_right(self._edges, at),
               bisect.bisect_right(_store_edges(store), at))
        hit = self._strict.get(key)
        if hit is not None and hit[0] is store:
            strict = hit[1]
        else:
            anchors = _anchors(store)
            path = None if anchors is None else _verify(
                _Attempt(anchors, at, self._own, False), self._leaf, self._inters)
            strict = None if path is None else _result(store, at, error=None, path=path)
            self._strict[key] = (store, strict)
        if strict is None:
            return validate_chain(self._chain, store, host=host, at=at)
        return Validation(strict.store, strict.store_version, strict.trusted, rfc3339(at),
                          strict.error, strict.anchor_sha256, strict.anchor_subject,
                          True if host is not None else None, strict.path_len)

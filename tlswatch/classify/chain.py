"""Judge one presented chain for a name at a time: facts, validation, registry, outcome.

This is the answer to "is the chain a client was shown trustworthy, and if not, is it
interception, and whose?". It produces the observation-level ``cert/...`` outcome and
the interception evidence; :mod:`tlswatch.classify.rules` turns that (and a control)
into the verdict.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from tlswatch.classify.rules import ControlAgreement, ControlView, Decision, Seen, classify
from tlswatch.failures import CertOutcome, Stage, outcome
from tlswatch.model import CertFacts, Interception, Validation, rfc3339
from tlswatch.x509.facts import cert_facts
from tlswatch.x509.pem import ParsedCert, parse_der_chain
from tlswatch.x509.registry import (
    InterceptionRegistry,
    RegistryMatch,
    forgery_pattern,
    is_forgery_pattern,
)
from tlswatch.x509.stores import TrustStore, auto_store
from tlswatch.x509.validate import PreparedChain, validate_all

__all__ = [
    "ChainJudge",
    "ChainJudgement",
    "compare_with_control",
    "decide",
]

# When stores disagree on why a chain fails, the outcome names the most telling reason.
_PRECEDENCE = ("untrusted_root", "self_signed", "incomplete_chain", "expired", "not_yet_valid",
               "hostname_mismatch", "policy_violation", "invalid")


@dataclass(frozen=True, slots=True)
class ChainJudgement:
    """Everything the chain tells, before any control is considered."""

    chain: tuple[CertFacts, ...]
    validation: tuple[Validation, ...]
    interception: Interception
    outcome: str
    trusted: bool  # trusted in every store used
    anomalies: tuple[str, ...] = ()

    @property
    def leaf_sha256(self) -> str | None:
        return self.chain[0].sha256 if self.chain else None

    @property
    def evidence(self) -> str | None:
        return self.interception.evidence if self.interception.matched else None


def _validity_edges(certs: Sequence[x509.Certificate]) -> list[datetime]:
    """Sorted instants at which some certificate's validity changes.

    Between two edges every certificate's validity is constant, so a cached verdict is
    never reused across a ``not_before`` or ``not_after``. ``not_after`` is inclusive
    (RFC 5280), so its edge is the first instant after it.
    """
    edges: set[datetime] = set()
    for c in certs:
        edges.add(c.not_valid_before_utc)
        edges.add(c.not_valid_after_utc + timedelta(microseconds=1))
    return sorted(edges)


def _primary_error(validations: Sequence[Validation]) -> Validation:
    def rank(v: Validation) -> int:
        return _PRECEDENCE.index(v.error) if v.error in _PRECEDENCE else len(_PRECEDENCE)

    return min(validations, key=rank)


def _anchor_cn(subject: str | None) -> str:
    if not subject:
        return "unknown"
    for part in subject.split(","):
        key, _, value = part.partition("=")
        if key.strip().upper() == "CN":
            return value
    return subject


@dataclass(frozen=True, slots=True)
class _Chain:
    """What a presented chain says regardless of the host and the time: computed once."""

    certs: list[x509.Certificate]
    facts: tuple[CertFacts, ...]
    anomalies: tuple[str, ...]
    edges: list[datetime]
    prepared: PreparedChain
    match: RegistryMatch | None
    traits: tuple[str, ...]
    early: ChainJudgement | None  # no chain / unparseable leaf: the judgement, whatever else


class ChainJudge:
    """Judges chains against fixed stores (or ``auto`` per time) and a registry, with caches.

    Three levels, all bounded LRUs (``cache_size`` 0 turns every one off):

    * judgements, keyed by the chain's certificate hashes, the name, the stores and their
      versions, the registry version and the validity window the time falls in;
    * per chain (same hashes), what needs neither name nor time: parsed certificates,
      facts, registry match, forgery traits, and a :class:`PreparedChain` that keeps the
      strict path verification per store and window, so a new name for a known chain costs
      a SAN match instead of a path verification (the many SNIs of one CDN or wildcard);
    * per certificate (DER hash), the parsed certificate and its facts, shared by every
      chain that presents it (a CA's intermediate).
    """

    def __init__(self, stores: Sequence[TrustStore] | None, registry: InterceptionRegistry,
                 *, cache_size: int = 4096) -> None:
        self.stores = tuple(stores) if stores is not None else None
        self.registry = registry
        # key -> (validity edges of the chain, {window index: judgement})
        self._cache: OrderedDict[tuple[object, ...],
                                 tuple[list[datetime], dict[int, ChainJudgement]]] = OrderedDict()
        self._chains: OrderedDict[tuple[bytes, ...], _Chain] = OrderedDict()
        self._certs: OrderedDict[bytes, tuple[ParsedCert, CertFacts]] = OrderedDict()
        self._cache_size = cache_size
        self.hits = 0
        self.misses = 0

    def stores_for(self, at: datetime) -> tuple[TrustStore, ...]:
        return self.stores if self.stores is not None else (auto_store(at),)

    def judge(self, ders: Sequence[bytes], *, host: str | None, at: datetime) -> ChainJudgement:
        stores = self.stores_for(at)
        if not self._cache_size:
            parsed = parse_der_chain(ders)
            return self._judge(parsed, [p.certificate for p in parsed if p.certificate is not None],
                               stores, host=host, at=at)
        # Keyed by hashes of the DER as sent, so a hit costs no parsing at all.
        hashes = tuple(hashlib.sha256(d).digest() for d in ders)
        key = (hashes, host, tuple((s.name, s.version) for s in stores), self.registry.version)
        entry = self._cache.get(key)
        if entry is not None:
            edges, by_window = entry
            cached = by_window.get(bisect.bisect_right(edges, at))
            if cached is not None:
                self.hits += 1
                self._cache.move_to_end(key)
                when = rfc3339(at)
                return dataclasses.replace(cached, validation=tuple(
                    dataclasses.replace(v, at=when) for v in cached.validation))
        self.misses += 1
        ch = self._chain(hashes, ders)
        if ch.early is not None:
            result = ch.early
        else:
            validations = tuple(ch.prepared.validate(s, host=host, at=at) for s in stores)
            result = self._conclude(ch.facts, ch.anomalies, validations, ch.match, ch.traits)
        if entry is None:
            entry = (ch.edges, {})
            self._cache[key] = entry
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        entry[1][bisect.bisect_right(entry[0], at)] = result
        return result

    def _parsed(self, digest: bytes, der: bytes) -> tuple[ParsedCert, CertFacts]:
        hit = self._certs.get(digest)
        if hit is not None:
            self._certs.move_to_end(digest)
            return hit
        p = parse_der_chain([der])[0]
        item = (p, cert_facts(p.der, p.certificate))
        self._certs[digest] = item
        if len(self._certs) > 4 * self._cache_size:
            self._certs.popitem(last=False)
        return item

    def _chain(self, hashes: tuple[bytes, ...], ders: Sequence[bytes]) -> _Chain:
        hit = self._chains.get(hashes)
        if hit is not None:
            self._chains.move_to_end(hashes)
            return hit
        pairs = [self._parsed(h, d) for h, d in zip(hashes, ders, strict=True)]
        items = [p for p, _ in pairs]
        certs = [p.certificate for p in items if p.certificate is not None]
        facts = tuple(f for _, f in pairs)
        anomalies = _anomalies(items)
        early = _early(items, facts, anomalies)
        ch = _Chain(certs, facts, anomalies, _validity_edges(certs), PreparedChain(certs),
                    None if early else self.registry.match(certs),
                    () if early else tuple(forgery_pattern(certs)), early)
        self._chains[hashes] = ch
        if len(self._chains) > self._cache_size:
            self._chains.popitem(last=False)
        return ch

    def _judge(self, items: Sequence[ParsedCert], certs: list[x509.Certificate],
               stores: Sequence[TrustStore], *, host: str | None, at: datetime) -> ChainJudgement:
        facts = tuple(cert_facts(p.der, p.certificate) for p in items)
        anomalies = _anomalies(items)
        early = _early(items, facts, anomalies)
        if early is not None:
            return early
        validations = validate_all(certs, stores, host=host, at=at)
        return self._conclude(facts, anomalies, validations, self.registry.match(certs),
                              tuple(forgery_pattern(certs)))

    @staticmethod
    def _conclude(facts: tuple[CertFacts, ...], anomalies: tuple[str, ...],
                  validations: tuple[Validation, ...], match: RegistryMatch | None,
                  traits: tuple[str, ...]) -> ChainJudgement:
        trusted_all = all(v.trusted for v in validations)
        trusted_any = any(v.trusted for v in validations)
        pattern = is_forgery_pattern(traits)

        if match and (match.evidence == "verified_signature" or not trusted_any):
            interception = Interception(True, match.label, match.incident, match.matched_sha256,
                                        match.evidence, traits)
            out = outcome(Stage.CERT, CertOutcome.KNOWN_INTERCEPTION_CA, match.label)
        elif trusted_all:
            interception = Interception(False, pattern=traits)
            out = outcome(Stage.CERT, CertOutcome.VALID)
        elif trusted_any:
            interception = Interception(False, pattern=traits)
            out = outcome(Stage.CERT, CertOutcome.STORE_DISAGREEMENT)
        elif pattern:
            interception = Interception(True, evidence="forgery_pattern",
                                        matched_sha256=facts[0].sha256, pattern=traits)
            out = outcome(Stage.CERT, CertOutcome.FORGERY_PATTERN)
        else:
            interception = Interception(False, pattern=traits)
            worst = _primary_error(validations)
            try:
                err = CertOutcome(worst.error or "invalid")
            except ValueError:
                err = CertOutcome.INVALID
            detail = _anchor_cn(worst.anchor_subject) if err is CertOutcome.UNTRUSTED_ROOT \
                else None
            out = outcome(Stage.CERT, err, detail)
        return ChainJudgement(facts, validations, interception, out, trusted_all, anomalies)


def _anomalies(items: Sequence[ParsedCert]) -> tuple[str, ...]:
    return tuple(f"chain[{i}]: unparseable certificate ({p.error})"
                 for i, p in enumerate(items) if p.certificate is None)


def _early(items: Sequence[ParsedCert], facts: tuple[CertFacts, ...],
           anomalies: tuple[str, ...]) -> ChainJudgement | None:
    """The judgement of a chain that cannot be validated at all (none, or no usable leaf)."""
    no_match = Interception(matched=False)
    if not items:
        return ChainJudgement((), (), no_match, outcome(Stage.CERT, CertOutcome.NO_CHAIN),
                              False, anomalies)
    if items[0].certificate is None:
        return ChainJudgement(facts, (), no_match, outcome(Stage.CERT, CertOutcome.INVALID),
                              False, (*anomalies, "the leaf certificate cannot be parsed"))
    return None


def compare_with_control(seen: ChainJudgement | str, control: ChainJudgement | str,
                         kind: str) -> ControlView:
    """How a control relates to what was seen. Either side is a judgement or a failure outcome."""
    c_out = control.outcome if isinstance(control, ChainJudgement) else control
    if isinstance(control, ChainJudgement):
        if isinstance(seen, ChainJudgement) and seen.leaf_sha256 == control.leaf_sha256:
            return ControlView(kind, ControlAgreement.SAME, c_out)
        if control.trusted and not control.interception.matched:
            if isinstance(seen, ChainJudgement) and seen.trusted:
                c_out = outcome(Stage.CERT, CertOutcome.MISMATCH_VS_CONTROL)
            return ControlView(kind, ControlAgreement.VALID, c_out)
        if isinstance(seen, str):
            # We failed; the control got a chain (any chain): the path to the site works.
            return ControlView(kind, ControlAgreement.VALID, c_out)
        return ControlView(kind, ControlAgreement.FAILED, c_out)
    # The control failed.
    if isinstance(seen, str) and seen.split(":", 1)[0].split("/", 1)[0] != "cert":
        return ControlView(kind, ControlAgreement.SAME, c_out)
    return ControlView(kind, ControlAgreement.FAILED, c_out)


def decide(judgement: ChainJudgement, control: ControlView | None = None,
           *, captive_portal: bool = False) -> Decision:
    """The verdict for a chain observation (and its control)."""
    return classify(Seen(judgement.outcome, judgement.evidence, captive_portal=captive_portal,
                         chain_trusted=judgement.trusted), control)

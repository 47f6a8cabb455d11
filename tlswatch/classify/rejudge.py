"""Recompute the verdicts of stored records with today's rules, registry and trust stores.

A record keeps its raw evidence (DESIGN.md §3, practice 7), so its verdict can be rebuilt
without measuring again, through the same code that made it (:class:`ChainJudge`,
:func:`compare_with_control`, :func:`classify`):

* the chain as presented (``chain[].der_b64``), judged for ``target.sni`` (else
  ``target.domain``) at the record's ``time``;
* a failure at a network stage: the record's ``outcome`` when its stage is ``dns``, ``tcp``,
  ``tls`` or ``setup`` (what the probe saw, never a judgement), else ``tls.failure`` /
  ``tcp.failure`` under a blockpage;
* a blockpage: today's fingerprints matched against ``http.title``/``http.status``; a page
  body is not stored, so an earlier body match is kept while its fingerprint still exists;
* the control: its chain (``control.chain[].der_b64``) judged the same way, else its
  failure outcome; the same for ``control_sni`` (a run with two controls), and the two are
  weighed as the probe weighed them (:func:`classify_two_controls`);
* a captive-portal run (rule ``R00-captive-portal``) stays inconclusive: that was a fact
  about the network at the time, not a rule.

Only the judged parts change: ``chain`` facts, ``validation``, ``interception``,
``control.chain``/``control.outcome`` (and ``control_sni``'s), ``http.blockpage``, the
verdict fields, and chain anomalies are added; every other key, known or not, is kept as
it was. A record that cannot be re-judged (a chain without DER, an unreadable time) is
passed through unchanged and counted.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tlswatch.classify.blockpages import BlockpageMatch, load_fingerprints, match_blockpage
from tlswatch.classify.chain import ChainJudge, ChainJudgement, compare_with_control
from tlswatch.classify.rules import ControlView, Seen, classify, classify_two_controls
from tlswatch.failures import CertOutcome, HttpFailure, Stage, TlsFailure, outcome, outcome_class
from tlswatch.model import HttpInfo, to_dict

__all__ = [
    "VERDICT_FIELDS",
    "JudgeFor",
    "Rejudge",
    "RejudgeSummary",
    "Rejudged",
    "rejudge_record",
]

#: The fields a re-judgement may change in the verdict; "changed" means one of them did.
VERDICT_FIELDS = ("verdict", "outcome", "confidence", "rule_id", "rules_version", "reasons")
_CHANGE_FIELDS = ("verdict", "outcome", "confidence", "rule_id")
_RAW_FAILURE_STAGES = ("dns", "tcp", "tls", "setup")

#: Chooses the judge for a record's time (fixed stores, ``auto`` per time, or a mix).
JudgeFor = Callable[[datetime], ChainJudge]


class _CannotRejudge(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Rejudged:
    """One record after re-judging. ``skipped`` says why it was passed through unchanged."""

    record: dict[str, Any]
    old: tuple[Any, ...]  # the VERDICT_FIELDS before
    new: tuple[Any, ...]  # ... and after
    skipped: str | None = None
    stores: tuple[tuple[str, str], ...] = ()

    modified: bool = False  # the record differs in any way (a detail, a note, a store version)

    @property
    def changed(self) -> bool:
        idx = [VERDICT_FIELDS.index(f) for f in _CHANGE_FIELDS]
        return any(self.old[i] != self.new[i] for i in idx)


def _ders(chain: Any, where: str) -> tuple[bytes, ...]:
    if not isinstance(chain, list):
        return ()
    out = []
    for i, c in enumerate(chain):
        raw = c.get("der_b64") if isinstance(c, Mapping) else None
        if not isinstance(raw, str) or not raw:
            raise _CannotRejudge(f"{where}[{i}] has no der_b64")
        try:
            out.append(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError):
            raise _CannotRejudge(f"{where}[{i}].der_b64 is not base64") from None
    return tuple(out)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _get(obj: Any, *keys: str) -> Any:
    for k in keys:
        obj = obj.get(k) if isinstance(obj, Mapping) else None
    return obj


def _stage(out: str | None) -> str:
    return out.split("/", 1)[0] if out else ""


def _blockpage(rec: Mapping[str, Any]) -> BlockpageMatch | None:
    kinds = {fp.id: fp.kind for fp in load_fingerprints()}
    old_out = _str(rec.get("outcome")) or ""
    old_id = _str(_get(rec, "http", "blockpage"))
    if old_id is None and old_out.startswith(("http/blockpage:", "http/server_side:")):
        old_id = old_out.split(":", 1)[1]
    if old_id is not None and old_id in kinds:
        return BlockpageMatch(old_id, kinds[old_id])  # body evidence is not stored: keep it
    http = rec.get("http")
    if not isinstance(http, Mapping):
        return None
    status = http.get("status")
    return match_blockpage(HttpInfo(
        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
        title=_str(http.get("title"))))


def _raw_failure(rec: Mapping[str, Any], has_chain: bool) -> str | None:
    """What the observation saw when no chain is the finding (None: the chain is)."""
    old = _str(rec.get("outcome"))
    stage = _stage(old)
    if stage in _RAW_FAILURE_STAGES:
        return old
    if stage == "http":
        # A blockpage: a fetched page (after a handshake) is no failure; without a chain it
        # can only have been a non-TLS answer on the TLS port.
        return _str(_get(rec, "tls", "failure")) or _str(_get(rec, "tcp", "failure")) or (
            None if has_chain else outcome(Stage.TLS, TlsFailure.NOT_TLS))
    if not has_chain:
        # Nothing to re-judge: cert/no_chain, or a verdict a source reported without
        # keeping the certificates (OONI) stays what it was.
        return old or outcome(Stage.CERT, CertOutcome.NO_CHAIN)
    return None


def _host(target: Any) -> str | None:
    return _str(_get(target, "sni")) or _str(_get(target, "domain"))


def _name_checked(rec: Mapping[str, Any]) -> bool:
    """Was the chain judged for a name? A path built without one has ``hostname_ok`` None.

    (A capture without SNI, an OONI handshake with a test helper were judged without a
    name; validations that found no path at all cannot tell, so they count as checked.)
    """
    vals = rec.get("validation")
    with_path = [v for v in vals if isinstance(v, Mapping) and v.get("error") != "invalid"] \
        if isinstance(vals, list) else []
    return not with_path or any(v.get("hostname_ok") is not None for v in with_path)


def _parse_time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise _CannotRejudge("no time")
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise _CannotRejudge(f"time {text[:40]!r} is not RFC 3339") from None
    if t.tzinfo is None:
        raise _CannotRejudge("time has no zone")
    return t


def _fields(rec: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(copy.deepcopy(rec.get(f)) for f in VERDICT_FIELDS)


@dataclass(slots=True)
class _Control:
    """A stored control, parsed; judged by :meth:`judge`."""

    key: str  # "control" or "control_sni"
    raw: Mapping[str, Any]
    ders: tuple[bytes, ...]
    view: ControlView | None = None
    judged: ChainJudgement | None = None

    @classmethod
    def read(cls, rec: Mapping[str, Any], key: str) -> _Control | None:
        raw = rec.get(key)
        if not isinstance(raw, Mapping):
            return None
        return cls(key, raw, _ders(raw.get("chain"), f"{key}.chain"))

    def judge(self, side: ChainJudgement | str, judge: ChainJudge, host: str | None,
              at: datetime, default_kind: str) -> None:
        kind = _str(self.raw.get("kind")) or default_kind
        c_out = _str(self.raw.get("outcome"))
        c_failed = _stage(c_out) in _RAW_FAILURE_STAGES
        if self.ders and not c_failed:
            c_host = _host(self.raw.get("target")) or host
            j = judge.judge(self.ders, host=c_host, at=at)
            mismatch = outcome(Stage.CERT, CertOutcome.HOSTNAME_MISMATCH)
            if j.outcome == mismatch and _stage(c_out) == "cert" and \
                    outcome_class(c_out or "") not in (mismatch, "cert/invalid"):
                # A control's validations are not stored; a path that was judged before
                # and only fails the name now was judged without one (an OONI test helper).
                j = judge.judge(self.ders, host=None, at=at)
            self.judged = j
            self.view = compare_with_control(side, j, kind)
        elif c_out is not None:
            self.view = compare_with_control(side, c_out, kind)

    def updated(self) -> dict[str, Any]:
        """The stored control with its judged parts replaced."""
        assert self.judged is not None
        c = dict(self.raw)
        c["chain"] = to_dict(self.judged.chain)
        old_out = _str(self.raw.get("outcome")) or ""
        if _stage(old_out) == "cert" and outcome_class(old_out) != "cert/mismatch_vs_control":
            c["outcome"] = self.judged.outcome
        return c


def rejudge_record(rec: Mapping[str, Any], judge_for: JudgeFor) -> Rejudged:
    """Re-judge one record dict (a ``tlswatch/1`` measurement) with ``judge_for(time)``."""
    old = _fields(rec)
    try:
        at = _parse_time(rec.get("time"))
        ders = _ders(rec.get("chain"), "chain")
        control = _Control.read(rec, "control")
        control_sni = _Control.read(rec, "control_sni")
    except _CannotRejudge as e:
        return Rejudged(dict(rec), old, old, skipped=str(e))
    judge = judge_for(at)
    host = _host(rec.get("target")) if _name_checked(rec) else None

    failure = _raw_failure(rec, bool(ders))
    chain = judge.judge(ders, host=host, at=at) if ders else None
    done = chain is not None and (failure is None or failure.startswith("http/") or (
        # A capture shows a handshake that failed after a chain as that failure only
        # while the chain is trusted (tlswatch.classify.capture_record).
        rec.get("source") == "pcap" and _stage(failure) == "tls" and not chain.trusted))
    if chain is not None and done:
        out = chain.outcome  # the chain is the finding
    else:
        out = failure or outcome(Stage.CERT, CertOutcome.NO_CHAIN)
    bp = _blockpage(rec)
    if bp is not None:
        out = outcome(Stage.HTTP, HttpFailure.BLOCKPAGE if bp.kind == "blockpage"
                      else HttpFailure.SERVER_SIDE, bp.id)
    side: ChainJudgement | str = chain if chain is not None and done else out

    controls = [c for c in (control, control_sni) if c is not None]
    for c in controls:
        c.judge(side, judge, host, at, "path" if c is control else "sni")
    view = control.view if control is not None else None
    sni_view = control_sni.view if control_sni is not None else None

    server_side = bp is not None and bp.kind != "blockpage"
    facts = Seen(
        out, chain.evidence if chain is not None and done else None,
        blockpage=bp.id if bp is not None and not server_side else None,
        server_side=bp.id if bp is not None and server_side else None,
        captive_portal=rec.get("rule_id") == "R00-captive-portal",
        chain_trusted=bool(chain is not None and chain.trusted and done),
    )
    decision = classify_two_controls(facts, view, sni_view) if view and sni_view \
        else classify(facts, view)

    new = dict(rec)
    if chain is not None:
        new["chain"] = to_dict(chain.chain)
        new["validation"] = to_dict(chain.validation)
        new["interception"] = to_dict(chain.interception)
    for c in controls:
        if c.judged is not None:
            new[c.key] = c.updated()
    http = rec.get("http")
    if isinstance(http, Mapping) and ("blockpage" in http or bp is not None):
        h = dict(http)
        h["blockpage"] = bp.id if bp is not None else None
        new["http"] = h
    reasons = list(decision.reasons)
    old_reasons = rec.get("reasons")
    if isinstance(old_reasons, list) and old_reasons[: len(reasons)] == reasons:
        # Sources add notes after the rule's reasons (how a capture or OONI data was read):
        # kept while the rule says the same.
        reasons = old_reasons
    new.update(verdict=decision.verdict.value, outcome=decision.outcome,
               confidence=decision.confidence, rule_id=decision.rule_id,
               rules_version=decision.rules_version, reasons=reasons)
    raw_anomalies = rec.get("anomalies")
    old_anomalies: list[Any] = raw_anomalies if isinstance(raw_anomalies, list) else []
    judged = (chain, *(c.judged for c in controls))
    extra = [a for j in judged if j is not None for a in j.anomalies
             if a not in old_anomalies]
    if extra or "anomalies" in rec:
        new["anomalies"] = [*old_anomalies, *dict.fromkeys(extra)]
    used = tuple(dict.fromkeys(
        (v.store, v.store_version) for j in judged if j is not None
        for v in j.validation))
    return Rejudged(new, old, _fields(new), stores=used, modified=new != rec)


@dataclass(slots=True)
class RejudgeSummary:
    """What a re-judging run changed."""

    records: int = 0
    changed: int = 0  # verdict, outcome, confidence or rule_id differ
    details: int = 0  # verdict the same, other judged parts differ (validation, reasons ...)
    skipped: int = 0
    verdicts: Counter[tuple[str, str]] = field(default_factory=Counter)
    outcome_classes: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    skip_reasons: Counter[str] = field(default_factory=Counter)
    stores: dict[tuple[str, str], None] = field(default_factory=dict)
    max_examples: int = 10

    def add(self, r: Rejudged) -> None:
        self.records += 1
        self.stores.update(dict.fromkeys(r.stores))
        if r.skipped is not None:
            self.skipped += 1
            self.skip_reasons[r.skipped] += 1
            return
        if not r.changed:
            self.details += r.modified
            return
        self.changed += 1
        vi, oi = VERDICT_FIELDS.index("verdict"), VERDICT_FIELDS.index("outcome")
        old_v, new_v = str(r.old[vi]), str(r.new[vi])
        old_o, new_o = str(r.old[oi]), str(r.new[oi])
        if old_v != new_v:
            self.verdicts[(old_v, new_v)] += 1
        if outcome_class(old_o) != outcome_class(new_o):
            self.outcome_classes[(outcome_class(old_o), outcome_class(new_o))] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append((str(r.record.get("id")), old_v, new_v, old_o, new_o))


class Rejudge:
    """Re-judges records with one configuration; ``judge_for`` picks the stores by time."""

    def __init__(self, judge_for: JudgeFor, *, max_examples: int = 10) -> None:
        self.judge_for = judge_for
        self.summary = RejudgeSummary(max_examples=max_examples)

    def __call__(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        r = rejudge_record(rec, self.judge_for)
        self.summary.add(r)
        return r.record

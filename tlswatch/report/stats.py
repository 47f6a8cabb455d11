"""Bounded aggregates of a stream of ``tlswatch/1`` records: what every report is made of.

Inputs can be years of OONI data, so nothing here keeps records: each aggregate is bounded
by a cap on its distinct keys (beyond it, new keys fold into :data:`OTHER`), and findings
keep one example record per (domain, vantage, outcome) up to :data:`MAX_FINDINGS`.

Records are read as JSON objects, not rebuilt as dataclasses: a report must survive records
written by older or newer versions (and hostile ones), so every field is type-checked here
and a record that is not a record is counted, not fatal.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from tlswatch.failures import Verdict, outcome_class

__all__ = [
    "MAX_CELLS",
    "MAX_FINDINGS",
    "OTHER",
    "VERDICTS",
    "CaSeen",
    "Finding",
    "InputStats",
    "ReportStats",
]

OTHER = "(other)"
MAX_CELLS = 10_000  # distinct (domain, vantage) pairs
MAX_KEYS = 5_000  # distinct keys of the other counters
MAX_FINDINGS = 500
MAX_DOMAINS_PER_CA = 20
MAX_TEXT = 300  # peer strings kept per field (subjects, reasons)
MAX_TRACES = 500  # tlswatch trace records kept for the report (the rest are counted)
VERDICTS: tuple[str, ...] = tuple(v.value for v in Verdict)
_FINDING_VERDICTS = ("intercepted", "blocked", "anomaly", "down")


def _text(v: Any, limit: int = MAX_TEXT) -> str | None:
    if not isinstance(v, str):
        return None
    return v if len(v) <= limit else v[: limit - 1] + "…"


def _obj(d: dict[str, Any], key: str) -> dict[str, Any]:
    v = d.get(key)
    return v if isinstance(v, dict) else {}


def _objs(d: dict[str, Any], key: str) -> list[dict[str, Any]]:
    v = d.get(key)
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _texts(d: dict[str, Any], key: str, n: int = 20) -> tuple[str, ...]:
    v = d.get(key)
    if not isinstance(v, list):
        return ()
    return tuple(t for t in (_text(x) for x in v[:n]) if t is not None)


def _time(v: Any) -> datetime | None:
    if not isinstance(v, str):
        return None
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def cn_of(name: str | None) -> str | None:
    """The CN of an RFC 4514 name (``CN=Qaznet Trust Network,C=KZ``), else the whole name."""
    if not name:
        return None
    for part in name.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip().upper() == "CN":
            return value.strip()
    return name


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One trace, as the report shows it (strings cut, as every peer-derived text)."""

    sni: str
    ip: str
    kind: str
    hop: int | None
    router: str | None
    server_hop: int | None
    evidence: str | None
    time: datetime | None


@dataclass(slots=True)
class CaSeen:
    """One interception CA (registry label, or an untrusted issuer) across the input."""

    key: str
    label: str | None
    incident: str | None
    issuer: str | None
    count: int = 0
    first: datetime | None = None
    last: datetime | None = None
    evidence: Counter[str] = field(default_factory=Counter)
    domains: list[str] = field(default_factory=list)
    more_domains: int = 0


@dataclass(slots=True)
class Finding:
    """Records of one (domain, vantage, outcome) that are not ``ok``, with one as evidence."""

    domain: str
    vantage: str
    verdict: str
    outcome: str
    count: int
    first: datetime | None
    last: datetime | None
    example: dict[str, Any]


@dataclass(slots=True)
class InputStats:
    """Per input file: records read, run records, lines that were not records."""

    path: str
    records: int = 0
    runs: int = 0
    bad_lines: int = 0
    bad_examples: list[str] = field(default_factory=list)


def _evidence(rec: dict[str, Any]) -> dict[str, Any]:
    """What a finding shows: outcome, rule, reasons, chain, validation, controls (capped)."""
    chain = [{"subject": _text(c.get("subject")), "issuer": _text(c.get("issuer")),
              "sha256": _text(c.get("sha256"), 64), "not_before": _text(c.get("not_before"), 40),
              "not_after": _text(c.get("not_after"), 40),
              "self_signed": c.get("self_signed") is True}
             for c in _objs(rec, "chain")[:10]]
    validation = [{"store": _text(v.get("store"), 80),
                   "store_version": _text(v.get("store_version"), 80),
                   "trusted": v.get("trusted") is True, "error": _text(v.get("error"), 80),
                   "anchor": _text(v.get("anchor_subject"))}
                  for v in _objs(rec, "validation")[:12]]
    icp = _obj(rec, "interception")
    target = _obj(rec, "target")
    return {
        "id": _text(rec.get("id"), 64), "time": _text(rec.get("time"), 40),
        "source": _text(rec.get("source"), 20), "outcome": _text(rec.get("outcome")),
        "verdict": _text(rec.get("verdict"), 20), "rule_id": _text(rec.get("rule_id"), 80),
        "confidence": rec.get("confidence") if isinstance(rec.get("confidence"), int | float)
        else None,
        "reasons": _texts(rec, "reasons"), "anomalies": _texts(rec, "anomalies", 10),
        "target": {k: _text(target.get(k), 255) for k in ("domain", "sni", "ip")},
        "tls_failure": _text(_obj(rec, "tls").get("failure")),
        "interception": {"label": _text(icp.get("label"), 80),
                         "incident": _text(icp.get("incident"), 80),
                         "evidence": _text(icp.get("evidence"), 40),
                         "pattern": _texts(icp, "pattern")} if icp.get("matched") else None,
        "chain": chain, "validation": validation,
        # Two controls (docs/verdicts.md): the path control in `control`, the SNI one beside.
        "control": _control(rec, "control"), "control_sni": _control(rec, "control_sni"),
    }


def _control(rec: dict[str, Any], key: str) -> dict[str, Any] | None:
    """A control as a finding shows it (capped like the rest), or None when not measured."""
    ctl = _obj(rec, key)
    if not ctl:
        return None
    return {"kind": _text(ctl.get("kind"), 20), "outcome": _text(ctl.get("outcome")),
            "sni": _text(_obj(ctl, "target").get("sni"), 255),
            "chain": [_text(c.get("subject")) for c in _objs(ctl, "chain")[:5]]}


class ReportStats:
    """Feed records with :meth:`add`; read the aggregates afterwards."""

    def __init__(self) -> None:
        self.total = 0
        self.runs = 0
        self.verdicts: Counter[str] = Counter()
        self.cells: dict[tuple[str, str], Counter[str]] = {}
        self.domains: dict[str, Counter[str]] = {}
        self.cas: dict[str, CaSeen] = {}
        self.issuers: Counter[str] = Counter()
        self.blocking: dict[str, Counter[str]] = {}
        self.anomaly_outcomes: Counter[str] = Counter()
        self.anomaly_notes: Counter[str] = Counter()
        self.days: dict[date, list[int]] = {}  # day -> [records, intercepted]
        self.findings: dict[tuple[str, str, str], Finding] = {}
        self.findings_dropped = 0
        self.not_records = 0  # JSON objects that are neither records nor run records
        self.traces: list[TraceRow] = []  # tlswatch-trace/1 records (middlebox location)
        self.traces_total = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.inputs: list[InputStats] = []

    def _add_trace(self, rec: dict[str, Any]) -> None:
        """A ``tlswatch trace`` record: where a middlebox sits (not a measurement verdict)."""
        self.traces_total += 1
        if len(self.traces) >= MAX_TRACES:
            return
        target = _obj(rec, "target")
        evidence = rec.get("evidence")
        self.traces.append(TraceRow(
            sni=_text(target.get("sni"), 255) or "(none)", ip=_text(target.get("ip"), 64) or "-",
            kind=_text(rec.get("kind"), 20) or "-", hop=_int(rec.get("located_hop")),
            router=_text(rec.get("located_router"), 64),
            server_hop=_int(rec.get("server_hop")),
            evidence=_text(evidence[0]) if isinstance(evidence, list) and evidence else None,
            time=_time(rec.get("time"))))

    # -- bounded helpers -----------------------------------------------------------------

    @staticmethod
    def _bump(counter: Counter[str], key: str, cap: int = MAX_KEYS) -> None:
        counter[key if key in counter or len(counter) < cap else OTHER] += 1

    def add(self, rec: dict[str, Any]) -> bool:
        """Aggregate one JSON object; False when it is not a record (counted, not fatal)."""
        if rec.get("kind") == "run":
            self.runs += 1
            return True
        if rec.get("type") == "trace":
            self._add_trace(rec)
            return True
        verdict = rec.get("verdict")
        out = rec.get("outcome")
        if verdict not in VERDICTS or not isinstance(out, str):
            self.not_records += 1
            return False
        assert isinstance(verdict, str)
        self.total += 1
        self.verdicts[verdict] += 1
        target = _obj(rec, "target")
        vant = _obj(rec, "vantage")
        domain = (_text(target.get("domain"), 255) or _text(target.get("sni"), 255)
                  or _text(target.get("ip"), 64) or "(unknown)")
        vantage = _text(vant.get("name"), 120) or "(unknown)"
        t = _time(rec.get("time"))
        if t is not None:
            self.first = t if self.first is None or t < self.first else self.first
            self.last = t if self.last is None or t > self.last else self.last

        cell = (domain, vantage)
        if cell not in self.cells and len(self.cells) >= MAX_CELLS:
            cell = (OTHER, OTHER)
        self.cells.setdefault(cell, Counter())[verdict] += 1
        dkey = domain if domain in self.domains or len(self.domains) < MAX_CELLS else OTHER
        self.domains.setdefault(dkey, Counter())[verdict] += 1

        chain = _objs(rec, "chain")
        if chain:
            self._bump(self.issuers, cn_of(_text(chain[0].get("issuer"))) or "(no issuer)")
        if t is not None:
            day = self.days.setdefault(t.date(), [0, 0])
            day[0] += 1
            day[1] += verdict == "intercepted"
        if verdict == "intercepted":
            self._ca(rec, chain, domain, t)
        cls = outcome_class(out)
        if verdict == "blocked":
            bkey = domain if domain in self.blocking or len(self.blocking) < MAX_KEYS else OTHER
            self._bump(self.blocking.setdefault(bkey, Counter()), cls)
        if verdict == "anomaly":
            self._bump(self.anomaly_outcomes, cls)
        for note in _texts(rec, "anomalies", 10):
            self._bump(self.anomaly_notes, note[:160])
        if verdict in _FINDING_VERDICTS:
            self._finding(rec, domain, vantage, verdict, out, t)
        return True

    def _ca(self, rec: dict[str, Any], chain: list[dict[str, Any]], domain: str,
            t: datetime | None) -> None:
        icp = _obj(rec, "interception")
        label = _text(icp.get("label"), 80) if icp.get("matched") else None
        # Without a registry label, the interceptor is named by the chain's top issuer (the
        # root it anchors in, or claims to).
        issuer = cn_of(_text(chain[-1].get("issuer"))) if chain else None
        key = f"label:{label}" if label else f"issuer:{issuer or '(no chain)'}"
        ca = self.cas.get(key)
        if ca is None:
            if len(self.cas) >= MAX_KEYS:
                key = f"issuer:{OTHER}"
                ca = self.cas.get(key)
            if ca is None:
                ca = self.cas[key] = CaSeen(key, label, _text(icp.get("incident"), 80),
                                            issuer if not label else None)
        ca.count += 1
        if t is not None:
            ca.first = t if ca.first is None or t < ca.first else ca.first
            ca.last = t if ca.last is None or t > ca.last else ca.last
        ev = _text(icp.get("evidence"), 40) if icp.get("matched") else None
        ca.evidence[ev or "control differs"] += 1
        if domain not in ca.domains:
            if len(ca.domains) < MAX_DOMAINS_PER_CA:
                ca.domains.append(domain)
            else:
                ca.more_domains += 1

    def _finding(self, rec: dict[str, Any], domain: str, vantage: str, verdict: str, out: str,
                 t: datetime | None) -> None:
        key = (domain, vantage, out[:200])
        f = self.findings.get(key)
        if f is None:
            if len(self.findings) >= MAX_FINDINGS:
                self.findings_dropped += 1
                return
            f = self.findings[key] = Finding(domain, vantage, verdict, out[:200], 0, t, t,
                                             _evidence(rec))
        f.count += 1
        if t is not None:
            f.first = t if f.first is None or t < f.first else f.first
            f.last = t if f.last is None or t > f.last else f.last

    # -- views ---------------------------------------------------------------------------

    def sorted_findings(self) -> list[Finding]:
        order = {v: i for i, v in enumerate(_FINDING_VERDICTS)}
        return sorted(self.findings.values(),
                      key=lambda f: (order.get(f.verdict, 9), -f.count, f.domain, f.vantage))

    def sorted_cas(self) -> list[CaSeen]:
        return sorted(self.cas.values(), key=lambda c: (-c.count, c.key))

    def sorted_domains(self) -> list[tuple[str, Counter[str]]]:
        """Domains with interference first (intercepted, blocked, …), then by name."""
        def rank(item: tuple[str, Counter[str]]) -> tuple[int, int, str]:
            name, c = item
            bad = c["intercepted"] + c["blocked"]
            return (-bad, -(c["anomaly"] + c["down"]), name)
        return sorted(self.domains.items(), key=rank)

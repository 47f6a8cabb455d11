"""Prometheus metrics of repeated campaigns, with bounded label values.

Every label value comes from the operator (the target list and vantage names given on the
command line) or from a fixed vocabulary (verdicts, outcome classes, the loaded registry's
incidents). Nothing a peer sends (a certificate's names, an alert detail, a blockpage) can
become a label: a value outside the allowed set is counted under ``other``. The allowed
sets are capped too (``max_domains`` ...), so a huge target list cannot explode the series
count; the targets beyond the cap share the label ``other``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from tlswatch.failures import (
    CertOutcome,
    DnsFailure,
    HttpFailure,
    SetupFailure,
    Stage,
    TcpFailure,
    TlsFailure,
    Verdict,
    outcome_class,
)
from tlswatch.model import Record
from tlswatch.probe.campaign import Summary

__all__ = ["METRIC_NAMES", "OTHER", "OUTCOME_CLASSES", "VERDICTS", "Metrics"]

OTHER = "other"
NONE = "none"
VERDICTS: frozenset[str] = frozenset(v.value for v in Verdict)
_CLASSES: dict[Stage, type[StrEnum]] = {
    Stage.DNS: DnsFailure, Stage.TCP: TcpFailure, Stage.TLS: TlsFailure,
    Stage.CERT: CertOutcome, Stage.HTTP: HttpFailure, Stage.SETUP: SetupFailure,
}
#: Every ``stage/class`` a record may carry.
OUTCOME_CLASSES: frozenset[str] = frozenset(
    f"{stage.value}/{cls.value}" for stage, enum in _CLASSES.items() for cls in enum)

#: The names as they appear in the exposition (the dashboard may use only these).
METRIC_NAMES: tuple[str, ...] = (
    "tlswatch_measurements_total",
    "tlswatch_interceptions_total",
    "tlswatch_last_success_timestamp_seconds",
    "tlswatch_campaign_duration_seconds",
    "tlswatch_campaigns_total",
)


def _bounded(values: Iterable[str], cap: int) -> frozenset[str]:
    """The first ``cap`` distinct values (in the given order), ``other`` excluded."""
    kept: dict[str, None] = {}
    for v in values:
        if len(kept) >= cap:
            break
        if v != OTHER:
            kept.setdefault(v, None)
    return frozenset(kept)


class Metrics:
    """The watch's metrics, in a registry of their own (never the process-global one).

    ``domains``/``vantages``: the operator's target names and vantage names (``local`` for
    measurements without a vantage is always allowed); ``incidents``: the registry's incident
    names. Label values outside these sets, or beyond the caps, become ``other``.
    """

    def __init__(self, domains: Iterable[str], vantages: Iterable[str],
                 incidents: Iterable[str] = (), *, max_domains: int = 1000,
                 max_vantages: int = 100, max_incidents: int = 200,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.domains = _bounded(domains, max_domains)
        self.vantages = _bounded(["local", *vantages], max_vantages)
        self.incidents = _bounded(incidents, max_incidents)
        self._clock = clock
        r = self.registry
        self.measurements = Counter(
            "tlswatch_measurements", "Measurements (records written) by verdict and outcome "
            "class.", ["domain", "vantage", "verdict", "outcome_class"], registry=r)
        self.interceptions = Counter(
            "tlswatch_interceptions", "Measurements judged intercepted, by registry incident "
            "('none': no registry match).", ["domain", "vantage", "incident"], registry=r)
        self.last_success = Gauge(
            "tlswatch_last_success_timestamp_seconds", "Unix time of the last ok measurement.",
            ["domain", "vantage"], registry=r)
        self.campaign_duration = Gauge(
            "tlswatch_campaign_duration_seconds", "Wall time of the last finished campaign.",
            registry=r)
        self.campaigns = Counter(
            "tlswatch_campaigns", "Campaigns finished.", registry=r)

    # -- label values ------------------------------------------------------------------

    def domain(self, value: str) -> str:
        return value if value in self.domains else OTHER

    def vantage(self, value: str) -> str:
        return value if value in self.vantages else OTHER

    def incident(self, value: str | None) -> str:
        if not value:
            return NONE
        return value if value in self.incidents else OTHER

    @staticmethod
    def verdict(value: str) -> str:
        return value if value in VERDICTS else OTHER

    @staticmethod
    def outcome(value: str) -> str:
        cls = outcome_class(value)
        return cls if cls in OUTCOME_CLASSES else OTHER

    # -- updates -------------------------------------------------------------------------

    def observe(self, rec: Record) -> None:
        """Count one measurement record (run records are not measurements)."""
        domain, vantage = self.domain(rec.target.domain or ""), self.vantage(rec.vantage.name)
        verdict = self.verdict(rec.verdict)
        self.measurements.labels(domain, vantage, verdict, self.outcome(rec.outcome)).inc()
        if verdict == Verdict.INTERCEPTED.value:
            incident = rec.interception.incident if rec.interception else None
            self.interceptions.labels(domain, vantage, self.incident(incident)).inc()
        elif verdict == Verdict.OK.value:
            self.last_success.labels(domain, vantage).set(self._clock())

    def campaign_done(self, summary: Summary) -> None:
        """One campaign finished (also after it was cut short)."""
        self.campaign_duration.set(summary.elapsed_s)
        self.campaigns.inc()

    def exposition(self) -> bytes:
        """The text format a scrape returns."""
        return generate_latest(self.registry)

"""Turn an OONI measurement into judged ``tlswatch/1`` records (one per TLS handshake).

The shape follows :mod:`tlswatch.classify.probe_record`: the chain is judged by
:class:`~tlswatch.classify.chain.ChainJudge` at the time of the handshake
(``measurement_start_time`` + ``t``), the verdict comes from the rules table, and a control
(the control SNI of ``sni_blocking``/``tlsmiddlebox``) is compared with
:func:`~tlswatch.classify.chain.compare_with_control`. Nothing here decides a verdict.

Every record carries an extra ``ooni`` object (the record format may be extended) that points
back to the measurement: ``report_id``, ``input``, ``test_name``, ``measurement_start_time``,
the handshake's place in ``test_keys`` and OONI's own failure string.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from tlswatch.classify.chain import ChainJudge, ChainJudgement, compare_with_control
from tlswatch.classify.rules import ControlView, Seen, classify
from tlswatch.failures import CertOutcome, Stage, outcome
from tlswatch.ids import record_id
from tlswatch.model import (
    Control,
    DnsInfo,
    Interception,
    Record,
    Target,
    TcpInfo,
    TlsInfo,
    Vantage,
    rfc3339,
    to_dict,
)
from tlswatch.ooni.failures import CERT_FAILURES, OoniStage, map_failure
from tlswatch.ooni.measurement import Measurement, OoniFailure, OoniHandshake

__all__ = ["OoniConverter", "OoniRecord", "vantage_of"]

_MAX_RAW_FAILURE = 200  # OONI's unknown_failure strings carry arbitrary error text


@dataclass(frozen=True, slots=True)
class OoniRecord:
    """A judged record and the ``ooni`` provenance object written beside its fields."""

    record: Record
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = to_dict(self.record)
        out["ooni"] = self.meta
        return out


@dataclass(frozen=True, slots=True)
class _Side:
    """One handshake as the engine sees it: outcome, judged chain, completed or not."""

    outcome: str
    chain: ChainJudgement | None
    done: bool
    notes: tuple[str, ...] = ()

    @property
    def compare(self) -> ChainJudgement | str:
        return self.chain if self.chain is not None and self.done else self.outcome


def vantage_of(m: Measurement) -> Vantage:
    """``IT AS30722``: the probe's country and network, the vantage of an OONI measurement."""
    return Vantage(name=f"{m.info.probe_cc} {m.info.probe_asn}", kind="ooni")


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    cut = "".join(c if c.isprintable() else "?" for c in text[:_MAX_RAW_FAILURE])
    return cut + ("…" if len(text) > _MAX_RAW_FAILURE else "")


def _is_ip(host: str | None) -> bool:
    try:
        ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return True


class OoniConverter:
    """Judges the handshakes of OONI measurements; ``stores_used`` collects the stores."""

    def __init__(self, judge: ChainJudge, run_id: str) -> None:
        self.judge = judge
        self.run_id = run_id
        self.stores_used: dict[str, str] = {}

    def _side(self, h: OoniHandshake, host: str | None) -> _Side:
        chain = None
        if h.certs:
            chain = self.judge.judge(h.certs, host=host if h.name_check else None, at=h.at)
            for v in chain.validation:
                self.stores_used.setdefault(v.store, v.store_version)
        failure = h.failure
        if failure is None or failure in CERT_FAILURES:
            if chain is not None:
                # OONI's verification failure is the reason it stopped; the chain it kept is
                # the evidence, judged by our rules and stores at the time of the handshake.
                return _Side(chain.outcome, chain, True)
            if failure is None:
                return _Side(outcome(Stage.CERT, CertOutcome.NO_CHAIN), None, True)
            if failure == "ssl_invalid_hostname" and not h.name_check:
                return _Side(outcome(Stage.CERT, CertOutcome.NO_CHAIN), None, True, (
                    "ssl_invalid_hostname against a test helper is expected (it does not "
                    "hold the target's certificate); OONI kept no certificates to judge",))
            return _Side(CERT_FAILURES[failure], None, True, (
                f"OONI reported {failure} but kept no certificates: the outcome is OONI's",))
        return _Side(map_failure(failure, OoniStage.TLS), chain, False)

    def convert(self, m: Measurement) -> list[OoniRecord]:
        out = [self._handshake_record(m, h) for h in m.handshakes]
        out += [self._failure_record(m, f) for f in m.failures]
        return out

    def _meta(self, m: Measurement, path: str, raw: str | None, **extra: Any) -> dict[str, Any]:
        i = m.info
        meta: dict[str, Any] = {
            "test_name": i.test_name, "report_id": i.report_id, "input": i.input,
            "measurement_start_time": i.start_text, "probe_cc": i.probe_cc,
            "probe_asn": i.probe_asn, "path": path, "failure": _clean(raw)}
        if i.measurement_uid:
            meta["measurement_uid"] = i.measurement_uid
        meta.update({k: v for k, v in extra.items() if v is not None})
        return meta

    def _id(self, m: Measurement, target: Target, vantage: Vantage, path: str) -> str:
        i = m.info
        return record_id(source="ooni", target=target, vantage=vantage,
                         extra=f"{i.report_id}|{i.input}|{i.start_text}|{path}")

    def _dns(self, m: Measurement) -> DnsInfo | None:
        if not (m.resolver or m.answers or m.dns_failure):
            return None
        failure = map_failure(m.dns_failure, OoniStage.DNS) if m.dns_failure else None
        return DnsInfo(resolver=m.resolver, answers=m.answers, failure=failure)

    def _handshake_record(self, m: Measurement, h: OoniHandshake) -> OoniRecord:
        host = h.server_name or m.sni
        seen = self._side(h, host)
        view: ControlView | None = None
        ctl: Control | None = None
        c = h.control
        if c is not None:
            c_side = self._side(c, c.server_name)
            view = compare_with_control(seen.compare, c_side.compare, "sni")
            ctl = Control(kind="sni", outcome=view.outcome,
                          tls=TlsInfo(version=c.tls_version, cipher=c.cipher, alpn=c.alpn,
                                      failure=None if c_side.done else c_side.outcome,
                                      handshake_ms=c.handshake_ms),
                          chain=c_side.chain.chain if c_side.chain else (),
                          target=Target(domain=None, sni=c.server_name, ip=c.ip,
                                        port=c.port or m.port))
        chain = seen.chain
        decision = classify(Seen(
            seen.outcome, chain.evidence if chain is not None and seen.done else None,
            chain_trusted=bool(chain and chain.trusted and seen.done)), view)
        domain = None if _is_ip(m.domain) else m.domain
        target = Target(domain=domain, sni=host, ip=h.ip or (m.domain if _is_ip(m.domain)
                                                             else None),
                        port=h.port or m.port)
        vantage = vantage_of(m)
        notes = (*m.anomalies, *h.anomalies, *(chain.anomalies if chain else ()))
        # How the observation was read is part of "why", not an anomaly of the data.
        why = seen.notes + (("name not checked: the server was a test helper, not the "
                             "target's server",) if not h.name_check else ())
        rec = Record(
            id=self._id(m, target, vantage, h.path), run_id=self.run_id, source="ooni",
            time=rfc3339(h.at), target=target, vantage=vantage, dns=self._dns(m),
            tls=TlsInfo(version=h.tls_version, cipher=h.cipher, alpn=h.alpn,
                        failure=None if seen.done else seen.outcome,
                        handshake_ms=h.handshake_ms),
            chain=chain.chain if chain else (),
            validation=chain.validation if chain else (),
            interception=chain.interception if chain else Interception(matched=False),
            control=ctl, verdict=decision.verdict.value, outcome=decision.outcome,
            confidence=decision.confidence, rule_id=decision.rule_id,
            rules_version=decision.rules_version, reasons=(*decision.reasons, *why),
            anomalies=notes)
        return OoniRecord(rec, self._meta(m, h.path, h.failure, ttl=h.ttl,
                                          control_failure=_clean(c.failure) if c else None))

    def _failure_record(self, m: Measurement, f: OoniFailure) -> OoniRecord:
        out = map_failure(f.failure, f.stage)
        decision = classify(Seen(out), None)
        domain = None if _is_ip(m.domain) else m.domain
        target = Target(domain=domain, sni=m.sni,
                        ip=f.ip or (m.domain if _is_ip(m.domain) else None),
                        port=f.port or m.port)
        vantage = vantage_of(m)
        dns = self._dns(m)
        if f.stage is OoniStage.DNS:
            dns = DnsInfo(resolver=m.resolver, answers=m.answers, failure=out)
        rec = Record(
            id=self._id(m, target, vantage, f.path), run_id=self.run_id, source="ooni",
            time=rfc3339(f.at), target=target, vantage=vantage, dns=dns,
            tcp=TcpInfo(failure=out) if f.stage is OoniStage.TCP else None,
            tls=TlsInfo(failure=out) if f.stage is OoniStage.TLS else None,
            interception=Interception(matched=False), verdict=decision.verdict.value,
            outcome=decision.outcome, confidence=decision.confidence, rule_id=decision.rule_id,
            rules_version=decision.rules_version, reasons=decision.reasons,
            anomalies=m.anomalies)
        return OoniRecord(rec, self._meta(m, f.path, f.failure))

"""Assemble a ``tlswatch/1`` record from a chain judgement and its decision."""

from __future__ import annotations

from datetime import datetime

from tlswatch.classify.chain import ChainJudgement
from tlswatch.classify.rules import ControlView, Decision
from tlswatch.model import Attempts, Control, Flow, Record, Target, TlsInfo, Vantage, rfc3339

__all__ = ["chain_record"]


def chain_record(
    *,
    record_id: str,
    run_id: str,
    source: str,
    at: datetime,
    target: Target,
    judgement: ChainJudgement,
    decision: Decision,
    vantage: Vantage | None = None,
    flow: Flow | None = None,
    tls: TlsInfo | None = None,
    control: ControlView | None = None,
    control_judgement: ChainJudgement | None = None,
    attempts: Attempts | None = None,
) -> Record:
    ctl = None
    if control is not None:
        ctl = Control(kind=control.kind, outcome=control.outcome,
                      chain=control_judgement.chain if control_judgement else ())
    return Record(
        id=record_id, run_id=run_id, source=source, time=rfc3339(at), target=target,
        vantage=vantage or Vantage(), flow=flow, tls=tls,
        chain=judgement.chain, validation=judgement.validation,
        interception=judgement.interception, control=ctl, attempts=attempts,
        verdict=decision.verdict.value, outcome=decision.outcome,
        confidence=decision.confidence, rule_id=decision.rule_id,
        rules_version=decision.rules_version, reasons=decision.reasons,
        anomalies=judgement.anomalies,
    )

"""Turn a probe's observation (and its control's) into a judged ``tlswatch/1`` record.

The probe only observes; this is where what it saw meets the chain engine and the verdict
table. A failed stage is the outcome as the probe named it; a completed handshake is
judged by its chain at the time the measurement started.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlswatch.classify.blockpages import BlockpageMatch, match_blockpage
from tlswatch.classify.chain import ChainJudge, ChainJudgement, compare_with_control
from tlswatch.classify.rules import (
    ControlView,
    Decision,
    Seen,
    classify,
    classify_two_controls,
)
from tlswatch.failures import CertOutcome, HttpFailure, Stage, outcome
from tlswatch.model import Attempts, Control, HttpInfo, Interception, Record, Vantage, rfc3339
from tlswatch.probe.observation import ProbeObservation

__all__ = ["JudgedObservation", "judge_observation", "probe_record"]


@dataclass(frozen=True, slots=True)
class JudgedObservation:
    """An observation with what the engine made of it (before any control)."""

    obs: ProbeObservation
    outcome: str
    chain: ChainJudgement | None
    blockpage: BlockpageMatch | None

    @property
    def handshake_done(self) -> bool:
        """The TLS handshake completed (a later HTTP failure does not undo that)."""
        failure = self.obs.failure
        return self.chain is not None and (failure is None or failure.startswith("http/"))

    @property
    def side(self) -> ChainJudgement | str:
        """What :func:`compare_with_control` compares: the chain, or the failure."""
        return self.chain if self.chain is not None and self.handshake_done else self.outcome


def judge_observation(obs: ProbeObservation, judge: ChainJudge) -> JudgedObservation:
    chain = None
    if obs.chain_der:
        host = obs.target.sni or obs.target.domain
        chain = judge.judge(obs.chain_der, host=host, at=obs.started)
    body_evidence = obs.non_tls_prefix or b""
    bp = match_blockpage(obs.http, body_evidence)
    if chain is not None and (obs.failure is None or obs.failure.startswith("http/")):
        # The chain is the finding; an HTTP failure after the handshake is only a note
        # (an interceptor relaying slowly must still come out intercepted).
        out = chain.outcome
    elif obs.failure is not None:
        out = obs.failure
    else:
        out = outcome(Stage.CERT, CertOutcome.NO_CHAIN)
    if bp is not None:
        cls = HttpFailure.BLOCKPAGE if bp.kind == "blockpage" else HttpFailure.SERVER_SIDE
        out = outcome(Stage.HTTP, cls, bp.id)
    return JudgedObservation(obs, out, chain, bp)


def _control(j: JudgedObservation, kind: str) -> Control:
    return Control(kind=kind, outcome=j.outcome, tls=j.obs.tls,
                   chain=j.chain.chain if j.chain else (), target=j.obs.target)


def probe_record(
    *,
    record_id: str,
    run_id: str,
    seen: JudgedObservation,
    control: JudgedObservation | None = None,
    control_kind: str = "path",
    vantage: Vantage | None = None,
    attempts: Attempts | None = None,
    captive_portal: bool = False,
    sni_control: JudgedObservation | None = None,
) -> tuple[Record, Decision]:
    """Judge ``seen`` against its control(s) and build the record.

    ``control`` (of kind ``control_kind``) goes to the record's ``control``. ``sni_control``
    is only for a run with two controls: ``control`` is then the path (or resolver) control
    and the SNI control goes to ``control_sni``; both are weighed
    (:func:`~tlswatch.classify.rules.classify_two_controls`).
    """
    if sni_control is not None and (control is None or control_kind == "sni"):
        raise ValueError("sni_control needs a path or resolver control beside it")
    view: ControlView | None = None
    if control is not None:
        view = compare_with_control(seen.side, control.side, control_kind)
    evidence = seen.chain.evidence if seen.chain is not None and seen.handshake_done else None
    server_side = seen.blockpage is not None and seen.blockpage.kind != "blockpage"
    facts = Seen(
        seen.outcome, evidence,
        blockpage=seen.blockpage.id if seen.blockpage and not server_side else None,
        server_side=seen.blockpage.id if server_side and seen.blockpage else None,
        captive_portal=captive_portal,
        chain_trusted=bool(seen.chain and seen.chain.trusted and seen.handshake_done),
    )
    if sni_control is not None and view is not None:
        decision = classify_two_controls(
            facts, view, compare_with_control(seen.side, sni_control.side, "sni"))
    else:
        decision = classify(facts, view)
    o = seen.obs
    ctl = _control(control, control_kind) if control is not None else None
    ctl_sni = _control(sni_control, "sni") if sni_control is not None else None
    http = o.http
    if http is not None and seen.blockpage is not None:
        http = HttpInfo(http.status, http.title, http.body_sha256, http.body_len, seen.blockpage.id)
    rec = Record(
        id=record_id, run_id=run_id, source="probe", time=rfc3339(o.started), target=o.target,
        vantage=vantage or Vantage(), flow=o.flow, dns=o.dns, tcp=o.tcp, tls=o.tls, http=http,
        chain=seen.chain.chain if seen.chain else (),
        validation=seen.chain.validation if seen.chain else (),
        interception=seen.chain.interception if seen.chain else Interception(matched=False),
        control=ctl, control_sni=ctl_sni, attempts=attempts,
        verdict=decision.verdict.value, outcome=decision.outcome,
        confidence=decision.confidence, rule_id=decision.rule_id,
        rules_version=decision.rules_version, reasons=decision.reasons,
        anomalies=(o.anomalies + (seen.chain.anomalies if seen.chain else ())
                   + ((f"after the handshake: {o.failure}",)
                      if o.failure and o.failure.startswith("http/") else ())),
    )
    return rec, decision

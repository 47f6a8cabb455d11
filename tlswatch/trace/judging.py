"""Per-hop summaries of a trace, judged by the probe's engine (chain judge + verdict table).

A chain is judged for the SNI it was asked for, at the time of the trace, against the
chosen stores. A target answer's verdict compares it with the control SNI's answer at the
full path (the server's own answer), exactly as a probe with an SNI control does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from tlswatch.classify.chain import ChainJudge, ChainJudgement, compare_with_control
from tlswatch.classify.rules import ControlView, Decision, Seen, classify
from tlswatch.trace.hops import SERVER_HELLO, HopResult, TraceRun, is_terminal
from tlswatch.trace.record import LeafSummary, ProbeSummary, TraceHop

__all__ = ["JudgedTrace", "judge_run", "response_outcome"]

_MAX_TEXT: Final = 200
_MAX_SANS: Final = 8
_CONNECT_OUTCOMES: Final = {"refused": "tcp/refused", "timeout": "tcp/timeout",
                            "icmp": "tcp/unreachable"}


@dataclass(frozen=True, slots=True)
class JudgedTrace:
    hops: tuple[TraceHop, ...]
    decision: Decision  # the target's answer at the full path vs the control's


def response_outcome(response: str, failure: str | None) -> str | None:
    """The tlswatch/1 outcome of an answer from the far side; None for a router's ICMP."""
    if response.startswith("icmp_"):
        return None
    if response.startswith("connect_failed:"):
        how = response.split(":", 1)[1]
        return _CONNECT_OUTCOMES.get(how, "tcp/unreachable")
    if failure is not None:
        return failure
    return {"rst": "tls/reset", "eof": "tls/eof", "not_tls": "tls/not_tls",
            "timeout": "tls/timeout"}.get(response, "tls/failed")


def _cut(text: str | None) -> str | None:
    return None if text is None else text[:_MAX_TEXT]


@dataclass(frozen=True, slots=True)
class _Side:
    summary: ProbeSummary
    judgement: ChainJudgement | None

    @property
    def compared(self) -> ChainJudgement | str:
        if self.judgement is not None and self.summary.response == SERVER_HELLO:
            return self.judgement
        return self.summary.outcome or "tls/timeout"


def _summary(hop: HopResult, sni: str | None, judge: ChainJudge, at: datetime) -> _Side:
    a = hop.best
    judgement = judge.judge(a.chain_der, host=sni, at=at) if a.chain_der else None
    leaf = None
    if judgement is not None and judgement.chain:
        f = judgement.chain[0]
        leaf = LeafSummary(subject=_cut(f.subject), issuer=_cut(f.issuer),
                           sans=tuple(s[:_MAX_TEXT] for s in f.sans[:_MAX_SANS]),
                           not_before=f.not_before, not_after=f.not_after)
    out = judgement.outcome if judgement is not None and a.response == SERVER_HELLO \
        else response_outcome(a.response, a.failure)
    return _Side(ProbeSummary(
        response=a.response, router=a.router, counts=hop.counts, elapsed_ms=a.elapsed_ms,
        failure=a.failure, tls_version=a.tls_version, history=a.history,
        syn_ack_ttl=a.syn_ack_ttl, server_ttl=a.server_ttl, server_ip_id=a.server_ip_id,
        rst_ttl=a.rst_ttl, rst_ip_id=a.rst_ip_id, fin_ttl=a.fin_ttl, quoted_ttl=a.quoted_ttl,
        quoted_offset=a.quoted_offset,
        chain_sha256=tuple(c.sha256 for c in judgement.chain) if judgement else (),
        leaf=leaf, outcome=out,
        interception=judgement.evidence if judgement is not None else None), judgement)


def _decide(side: _Side, control: _Side | None) -> Decision:
    view: ControlView | None = None
    if control is not None:
        view = compare_with_control(side.compared, control.compared, "sni")
    j = side.judgement if side.summary.response == SERVER_HELLO else None
    seen = Seen(side.summary.outcome or "tls/timeout", j.evidence if j else None,
                chain_trusted=bool(j and j.trusted))
    return classify(seen, view)


def _syn_summary(hop: HopResult) -> ProbeSummary:
    a = hop.best
    return ProbeSummary(response=a.response, router=a.router, counts=hop.counts,
                        elapsed_ms=a.elapsed_ms, syn_ack_ttl=a.syn_ack_ttl, rst_ttl=a.rst_ttl,
                        rst_ip_id=a.rst_ip_id, quoted_ttl=a.quoted_ttl)


def judge_run(run: TraceRun, *, sni: str, control_sni: str | None, judge: ChainJudge,
              at: datetime) -> JudgedTrace:
    """Summaries per TTL, with target verdicts against the control's full-path answer."""
    control = {h.ttl: _summary(h, control_sni, judge, at) for h in run.control}
    target = {h.ttl: _summary(h, sni, judge, at) for h in run.target}
    syn = {h.ttl: _syn_summary(h) for h in run.syn}
    # The control's reference answer: its first answer from the far side (the server's).
    ref = next((control[t] for t in sorted(control)
                if is_terminal(control[t].summary.response)
                and not control[t].summary.response.startswith("connect_failed")), None)
    if ref is None and control:
        ref = control[max(control)]  # it never got through: it cannot vouch (classify knows)
    decisions: dict[int, Decision] = {}
    for ttl, side in target.items():
        if is_terminal(side.summary.response):
            decisions[ttl] = _decide(side, ref)
            target[ttl] = _Side(_with_verdict(side.summary, decisions[ttl]), side.judgement)
    if target:
        last = max(target)
        final = decisions.get(last) or _decide(target[last], ref)
        # The full path's answer is judged even when it is silence (a drop).
        target[last] = _Side(_with_verdict(target[last].summary, final), target[last].judgement)
    else:
        final = classify(Seen("setup/system_failure"))
    hops = []
    for ttl in sorted(set(control) | set(target) | set(syn)):
        c = control.get(ttl)
        t = target.get(ttl)
        s = syn.get(ttl)
        router = next((p.router for p in (c.summary if c else None, t.summary if t else None, s)
                       if p is not None and p.router), None)
        hops.append(TraceHop(ttl=ttl, router=router, target=t.summary if t else None,
                             control=c.summary if c else None, syn=s))
    return JudgedTrace(tuple(hops), final)


def _with_verdict(s: ProbeSummary, d: Decision) -> ProbeSummary:
    return replace(s, verdict=d.verdict.value)

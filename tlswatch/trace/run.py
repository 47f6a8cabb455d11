"""One trace, start to record: raw sockets, the three traces, judging, locating."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from tlswatch.classify.chain import ChainJudge
from tlswatch.ids import record_id
from tlswatch.model import Target, rfc3339
from tlswatch.trace.hops import TraceConfig, run_traces
from tlswatch.trace.judging import judge_run
from tlswatch.trace.locate import locate
from tlswatch.trace.rawwatch import PathWatch
from tlswatch.trace.record import TraceOptions, TraceRecord, TraceTarget

__all__ = ["trace"]


def _now() -> datetime:
    return datetime.now(UTC)


async def trace(cfg: TraceConfig, judge: ChainJudge, *, domain: str | None = None,
                resolved: tuple[str, ...] = (), log: Callable[[str], None] = lambda _m: None,
                clock: Callable[[], datetime] = _now) -> TraceRecord:
    """Trace ``cfg`` and return its record. Raises
    :class:`~tlswatch.trace.rawwatch.RawSocketDenied` without root / CAP_NET_RAW."""
    started = clock()
    with PathWatch(cfg.ip, cfg.port) as watch:
        run = await run_traces(cfg, watch, log)
    judged = judge_run(run, sni=cfg.sni, control_sni=cfg.control_sni, judge=judge, at=started)
    loc = locate(judged.hops, sni=cfg.sni, control_sni=cfg.control_sni)
    d = judged.decision
    rid = record_id(source="trace", target=Target(domain=domain, sni=cfg.sni, ip=cfg.ip,
                                                  port=cfg.port),
                    extra=f"trace;control_sni={cfg.control_sni}")
    return TraceRecord(
        id=rid, time=rfc3339(started),
        target=TraceTarget(ip=cfg.ip, port=cfg.port, sni=cfg.sni, control_sni=cfg.control_sni,
                           domain=domain, resolved=resolved),
        options=TraceOptions(max_ttl=cfg.max_ttl, timeout=cfg.timeout, repeats=cfg.repeats,
                             syn=cfg.syn, pause=cfg.pause),
        hops=judged.hops, located_hop=loc.located_hop, located_router=loc.located_router,
        server_hop=loc.server_hop, tcp_hop=loc.tcp_hop, kind=loc.kind, evidence=loc.evidence,
        verdict=d.verdict.value, outcome=d.outcome, confidence=d.confidence,
        rule_id=d.rule_id, rules_version=d.rules_version, reasons=d.reasons,
        stores=tuple({"name": s.name, "version": s.version}
                     for s in judge.stores_for(started)))

"""The located hop over synthetic per-TTL answers, judged by the real chain engine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from trace_helpers import ders, hello, hops, icmp, rst, timeout

from tlswatch.classify.chain import ChainJudge
from tlswatch.testing import CertFactory, write_store_pem
from tlswatch.trace.hops import Attempt, HopResult, TraceRun, summarize
from tlswatch.trace.judging import judge_run
from tlswatch.trace.locate import locate
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import load_store

F = CertFactory(seed=0)
AT = F.now + timedelta(hours=1)
LEGIT = ders(F.legitimate("example.org").chain)
LEGIT_TARGET = ders(F.legitimate("facebook.com").chain)
FORGED = ders(F.forged_random_ca("facebook.com").chain)


@pytest.fixture(scope="module")
def judge(tmp_path_factory: pytest.TempPathFactory) -> ChainJudge:
    path = tmp_path_factory.mktemp("store") / "public.pem"
    write_store_pem(path, [F.public_root().cert])
    return ChainJudge([load_store(str(path))], load_registry())


def _locate(judge: ChainJudge, run: TraceRun, control: str | None = "example.org"):  # type: ignore[no-untyped-def]
    j = judge_run(run, sni="facebook.com", control_sni=control, judge=judge, at=AT)
    return j, locate(j.hops, sni="facebook.com", control_sni=control)


def test_forged_chain_from_a_proxy_is_located_at_its_hop(judge: ChainJudge) -> None:
    # A TCP-terminating interceptor at hop 3: both SNIs are answered there, only the
    # target's chain is forged.
    run = TraceRun(
        syn=hops(icmp(1), icmp(2), Attempt("syn_ack", syn_ack_ttl=62)),
        control=hops(icmp(1), icmp(2), hello(LEGIT, 62)),
        target=hops(icmp(1), icmp(2), hello(FORGED, 62)))
    j, loc = _locate(judge, run)
    assert (loc.located_hop, loc.kind, loc.server_hop, loc.tcp_hop) == (3, "interception", 3, 3)
    assert j.decision.verdict.value == "intercepted"
    t3 = j.hops[2].target
    assert t3 is not None and t3.verdict == "intercepted" and t3.outcome
    assert t3.outcome.startswith("cert/untrusted_root")
    assert [h.router for h in j.hops[:2]] == ["198.18.0.1", "198.18.0.5"]
    assert any("1=198.18.0.1, 2=198.18.0.5" in e for e in loc.evidence)
    assert any("transparent proxy" in e for e in loc.evidence)


def test_injected_rst_before_the_server_in_path(judge: ChainJudge) -> None:
    run = TraceRun(
        syn=(),
        control=hops(icmp(1), icmp(2), icmp(3), icmp(4), hello(LEGIT)),
        target=hops(icmp(1), icmp(2), rst(62), rst(62), rst(62)))
    j, loc = _locate(judge, run)
    assert (loc.located_hop, loc.kind, loc.server_hop) == (3, "injection", 5)
    assert loc.located_router == "198.18.0.9"  # the control's ICMP at that TTL names it
    assert j.decision.verdict.value == "blocked"
    text = "\n".join(loc.evidence)
    assert "IP TTL 62 differs from the TCP peer's SYN-ACK TTL 60" in text
    assert "in-path" in text and "2 hop(s) before" in text


def test_on_path_injector_lets_the_hello_go_on(judge: ChainJudge) -> None:
    run = TraceRun(
        syn=(),
        control=hops(icmp(1), icmp(2), icmp(3), icmp(4), hello(LEGIT)),
        target=hops(icmp(1), icmp(2), rst(62), rst(62, router="198.18.0.13", offset=0),
                    rst(62)))
    _, loc = _locate(judge, run)
    assert loc.located_hop == 3
    assert any("on-path" in e and "198.18.0.13" in e for e in loc.evidence)
    # ICMP only for a later segment of a two-segment hello: the SNI segment was dropped.
    run2 = TraceRun(
        syn=(), control=run.control,
        target=hops(icmp(1), icmp(2), rst(62), rst(62, router="198.18.0.13", offset=1448),
                    rst(62)))
    _, loc2 = _locate(judge, run2)
    assert any("drops the segment with the SNI" in e for e in loc2.evidence)
    assert not any("on-path" in e for e in loc2.evidence)


def test_drop_is_located_where_the_target_goes_silent(judge: ChainJudge) -> None:
    run = TraceRun(
        syn=(),
        control=hops(icmp(1), icmp(2), icmp(3), icmp(4), hello(LEGIT)),
        target=hops(icmp(1), icmp(2), timeout(), timeout(), timeout()))
    _, loc = _locate(judge, run)
    assert (loc.located_hop, loc.kind) == (3, "drop")


def test_untargeted_sni_is_none(judge: ChainJudge) -> None:
    run = TraceRun(
        syn=(),
        control=hops(icmp(1), icmp(2), hello(LEGIT)),
        target=hops(icmp(1), icmp(2), hello(LEGIT_TARGET)))
    j, loc = _locate(judge, run)
    assert (loc.located_hop, loc.kind) == (None, "none")
    assert j.decision.verdict.value == "ok"


def test_interference_only_midway_is_inconclusive(judge: ChainJudge) -> None:
    run = TraceRun(
        syn=(),
        control=hops(icmp(1), icmp(2), icmp(3), hello(LEGIT)),
        target=hops(icmp(1), rst(63), icmp(3), hello(LEGIT_TARGET)))
    _, loc = _locate(judge, run)
    assert (loc.located_hop, loc.kind) == (None, "inconclusive")


def test_same_answer_for_both_snis_is_not_sni_specific(judge: ChainJudge) -> None:
    run = TraceRun(syn=(), control=hops(icmp(1), rst(60)), target=hops(icmp(1), rst(60)))
    j, loc = _locate(judge, run)
    assert loc.located_hop is None
    assert j.decision.verdict.value == "down"


def test_without_control_only_interception_is_located(judge: ChainJudge) -> None:
    forged = TraceRun(syn=(), control=(), target=hops(icmp(1), hello(FORGED)))
    _, loc = _locate(judge, forged, control=None)
    # An untrusted chain without a control is an anomaly, not yet interception.
    assert loc.located_hop is None and loc.kind == "inconclusive"
    reset = TraceRun(syn=(), control=(), target=hops(icmp(1), rst(63)))
    _, loc2 = _locate(judge, reset, control=None)
    assert loc2.located_hop is None and loc2.kind == "inconclusive"


def test_repeats_most_common_answer_wins_ties_by_what_tells_more() -> None:
    a = [icmp(2), timeout(), icmp(2)]
    assert summarize(a).response == "icmp_time_exceeded"
    assert summarize([timeout(), rst(60)]).response == "rst"
    assert HopResult(2, tuple(a)).counts == {"icmp_time_exceeded": 2, "timeout": 1}


def test_pause_waits_between_probes_and_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from tlswatch.trace import hops as hops_mod
    from tlswatch.trace.hops import TraceConfig

    slept: list[float] = []
    probes: list[int] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def one(ttl: int) -> Attempt:
        probes.append(ttl)
        return icmp(ttl)

    monkeypatch.setattr(hops_mod.asyncio, "sleep", fake_sleep)
    cfg = TraceConfig(ip="127.0.0.1", port=443, sni="a.example", max_ttl=3, repeats=2,
                      pause=1.5)
    got = asyncio.run(hops_mod._trace(cfg, one, until=None, log=lambda _m: None, label="t"))
    assert [h.ttl for h in got] == [1, 2, 3] and probes == [1, 1, 2, 2, 3, 3]
    assert slept == [1.5] * 5  # between probes: none before the first
    slept.clear()
    asyncio.run(hops_mod._trace(TraceConfig(ip="127.0.0.1", port=443, sni="a.example",
                                            max_ttl=2), one, until=None,
                                log=lambda _m: None, label="t"))
    assert slept == []  # no pause by default

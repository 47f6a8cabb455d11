"""The tlswatch-trace/1 record: real records validate against the JSON Schema; bad ones do not."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from trace_helpers import LoopbackTls, ders, hello, hops, icmp, rst

from tlswatch.classify.chain import ChainJudge
from tlswatch.testing import CertFactory, write_store_pem
from tlswatch.trace.hops import TraceConfig, TraceRun
from tlswatch.trace.judging import judge_run
from tlswatch.trace.locate import locate
from tlswatch.trace.record import TraceOptions, TraceRecord, TraceTarget, record_line
from tlswatch.trace.run import trace
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import load_store

F = CertFactory(seed=3)
SCHEMA = json.loads((Path(__file__).parents[2] / "tlswatch" / "trace" /
                     "trace.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def _at() -> datetime:
    return F.now + timedelta(hours=1)


@pytest.fixture(scope="module")
def judge(tmp_path_factory: pytest.TempPathFactory) -> ChainJudge:
    path = tmp_path_factory.mktemp("store") / "public.pem"
    write_store_pem(path, [F.public_root().cert])
    return ChainJudge([load_store(str(path))], load_registry())


def _record(judge: ChainJudge, run: TraceRun) -> TraceRecord:
    j = judge_run(run, sni="facebook.com", control_sni="example.org", judge=judge, at=_at())
    loc = locate(j.hops, sni="facebook.com", control_sni="example.org")
    d = j.decision
    return TraceRecord(
        id="0" * 32, time="2026-01-01T00:00:00Z",
        target=TraceTarget(ip="198.18.5.2", port=443, sni="facebook.com",
                           control_sni="example.org"),
        options=TraceOptions(max_ttl=8, timeout=0.3, repeats=1, syn=False), hops=j.hops,
        located_hop=loc.located_hop, located_router=loc.located_router,
        server_hop=loc.server_hop, tcp_hop=loc.tcp_hop, kind=loc.kind, evidence=loc.evidence,
        verdict=d.verdict.value, outcome=d.outcome, confidence=d.confidence,
        rule_id=d.rule_id, rules_version=d.rules_version, reasons=d.reasons)


def test_judged_records_validate(judge: ChainJudge) -> None:
    forged = ders(F.forged_random_ca("facebook.com").chain)
    legit = ders(F.legitimate("example.org").chain)
    for run in (
        TraceRun(syn=(), control=hops(icmp(1), hello(legit)), target=hops(icmp(1), hello(forged))),
        TraceRun(syn=(), control=hops(icmp(1), icmp(2), hello(legit)),
                 target=hops(icmp(1), rst(63), rst(63))),
    ):
        plain = json.loads(record_line(_record(judge, run)))
        VALIDATOR.validate(plain)
        assert plain["type"] == "trace" and plain["schema"] == "tlswatch-trace/1"
        # Sparse per-probe facts: a router's ICMP carries no chain keys at all.
        assert "chain_sha256" not in plain["hops"][0]["target"]


def _mutations(good: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key, value in (("kind", "maybe"), ("located_hop", 0), ("schema", "tlswatch/1"),
                       ("verdict", "fine"), ("hops", [{"ttl": 1}])):
        bad = json.loads(json.dumps(good))
        bad[key] = value
        yield bad
    bad = json.loads(json.dumps(good))
    bad["hops"][0]["target"]["response"] = "hello\x1b[31m"
    yield bad


def test_schema_rejects_what_the_code_never_writes(judge: ChainJudge) -> None:
    legit = ders(F.legitimate("example.org").chain)
    run = TraceRun(syn=(), control=hops(icmp(1), hello(legit)), target=hops(icmp(1), rst(60)))
    good = json.loads(record_line(_record(judge, run)))
    VALIDATOR.validate(good)
    for bad in _mutations(good):
        assert not VALIDATOR.is_valid(bad), bad


def test_a_live_loopback_record_validates(tmp_path: Path, judge: ChainJudge) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("trace tests need root (raw sockets)")
        pytest.skip("needs root for raw sockets")
    srv = LoopbackTls(F, tmp_path, socket.AF_INET)
    try:
        cfg = TraceConfig(ip=srv.host, port=srv.port, sni="reset.test",
                          control_sni="example.org", max_ttl=3, timeout=0.3, repeats=2)
        rec = asyncio.run(trace(cfg, judge, clock=_at))
    finally:
        srv.close()
    plain = json.loads(record_line(rec))
    VALIDATOR.validate(plain)
    assert plain["hops"][0]["target"]["counts"] == {"rst": 2}
    assert judge.stores is not None
    assert [s["name"] for s in plain["stores"]] == [judge.stores[0].name]

"""Real TTL-limited probes over loopback (root needed for the raw sockets).

The "censor" is the test server itself: it peeks at the ClientHello and resets the
connection for one SNI. Over loopback every TTL reaches the server, so both SNIs are
answered at hop 1: the target with a RST, the control with a valid chain.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from trace_helpers import LoopbackTls

from tlswatch.classify.chain import ChainJudge
from tlswatch.testing import CertFactory, write_store_pem
from tlswatch.trace.hops import TraceConfig
from tlswatch.trace.rawwatch import PathWatch
from tlswatch.trace.run import trace
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import load_store

F = CertFactory(seed=3)


def _at() -> datetime:
    return F.now + timedelta(hours=1)  # the factory's certificates are valid around F.now


def _need_root() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("trace tests need root (raw sockets); CI runs them as root")
    pytest.skip("needs root for raw sockets")


@pytest.fixture(params=[socket.AF_INET, socket.AF_INET6], ids=["v4", "v6"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LoopbackTls]:
    _need_root()
    srv = LoopbackTls(F, tmp_path, request.param)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(scope="module")
def judge(tmp_path_factory: pytest.TempPathFactory) -> ChainJudge:
    path = tmp_path_factory.mktemp("store") / "public.pem"
    write_store_pem(path, [F.public_root().cert])
    return ChainJudge([load_store(str(path))], load_registry())


def test_reset_for_the_target_sni_is_located_with_its_ttl(server: LoopbackTls,
                                                         judge: ChainJudge) -> None:
    cfg = TraceConfig(ip=server.host, port=server.port, sni="reset.test",
                      control_sni="example.org", max_ttl=4, timeout=0.5)
    rec = asyncio.run(trace(cfg, judge, clock=_at))
    assert (rec.located_hop, rec.kind, rec.server_hop, rec.tcp_hop) == (1, "injection", 1, 1)
    assert rec.verdict == "blocked" and rec.outcome == "tls/reset"
    hop = rec.hops[0]
    assert hop.target is not None and hop.control is not None and hop.syn is not None
    assert hop.target.response == "rst" and hop.control.response == "server_hello"
    assert hop.control.outcome == "cert/valid" and hop.control.leaf is not None
    assert hop.syn.response == "syn_ack"
    # The RST really was captured by the raw socket: loopback keeps the sender's TTL.
    assert hop.target.rst_ttl == hop.target.syn_ack_ttl == 64
    if server.host == "127.0.0.1":
        assert hop.target.rst_ip_id is not None
    assert any("equals the TCP peer's SYN-ACK TTL" in e for e in rec.evidence)


def test_untargeted_sni_is_not_located(server: LoopbackTls, judge: ChainJudge) -> None:
    cfg = TraceConfig(ip=server.host, port=server.port, sni="www.example.org",
                      control_sni="example.org", max_ttl=4, timeout=0.5, syn=False)
    rec = asyncio.run(trace(cfg, judge, clock=_at))
    assert (rec.located_hop, rec.kind, rec.verdict) == (None, "none", "ok")
    assert rec.hops[0].target is not None and rec.hops[0].target.outcome == "cert/valid"
    assert len(rec.hops) == 1  # both answered at TTL 1: nothing more to probe


def test_closed_port_ends_the_traces_at_once(judge: ChainJudge) -> None:
    _need_root()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connects are refused
        cfg = TraceConfig(ip="127.0.0.1", port=port, sni="a.test", control_sni="b.test",
                          max_ttl=5, timeout=0.3)
        rec = asyncio.run(trace(cfg, judge, clock=_at))
    assert rec.hops[0].syn is not None and rec.hops[0].syn.response == "refused"
    t = rec.hops[0].target
    assert t is not None and t.response == "connect_failed:refused"
    assert len(rec.hops) == 1 and rec.located_hop is None


def test_watch_ignores_other_flows() -> None:
    _need_root()

    async def go() -> None:
        with PathWatch("127.0.0.1", 9) as w:
            w.begin(12345)
            ev = w.events(12345)
            assert ev.icmp == [] and ev.tcp == []

    asyncio.run(go())

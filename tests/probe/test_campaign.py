"""Campaigns: concurrency bound, retries and agreement, controls of each kind, resume skips,
per-IP rate with DNS, captive-portal pre-check. Real servers run on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import random
import ssl
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tlswatch.classify.chain import ChainJudge
from tlswatch.model import Record, RunRecord, Target, TcpInfo, TlsInfo
from tlswatch.probe import LAB_BOGONS, ProbeObservation, Timeouts
from tlswatch.probe.campaign import (
    CampaignOptions,
    ControlSpec,
    Summary,
    captive_portal_check,
    run_campaign,
)
from tlswatch.probe.inputs import Endpoint, TargetSpec, Task, VantageSpec, iter_tasks
from tlswatch.testing import FIXED_NOW, CertFactory, Issued, write_store_pem
from tlswatch.tls.hello import decode_client_hello
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import load_stores

from .servers import (
    HOST,
    Pki,
    dns_server,
    port_of,
    read_client_hello,
    reset,
    serve,
    server_context,
    tls_idle,
)

FAST = Timeouts(dns=0.5, connect=0.5, tls=1.0, http=1.0, overall=3.0)
REGISTRY = load_registry()


class ListSink:
    def __init__(self) -> None:
        self.records: list[Any] = []
        self.checkpoints = 0

    def write(self, record: Any) -> None:
        self.records.append(record)

    def checkpoint(self) -> None:
        self.checkpoints += 1


def judge_for(root: Issued, tmp: Path) -> ChainJudge:
    store = write_store_pem(tmp / "store.pem", [root.cert])
    return ChainJudge(load_stores([str(store)]), REGISTRY)


def tasks_for(names: list[str], vantages: Sequence[VantageSpec] = (), port: int = 443
              ) -> Iterator[Task]:
    return iter_tasks((TargetSpec(n, f"argument {i}") for i, n in enumerate(names, 1)),
                      vantages, port=port)


def run(tasks: Iterator[Task], judge: ChainJudge, **kw: Any) -> tuple[Summary, list[Record]]:
    sink = ListSink()
    extra = {k: kw.pop(k) for k in ("measure_fn", "done", "on_error", "sleep", "rng") if k in kw}
    options = CampaignOptions(timeouts=FAST, clock=lambda: FIXED_NOW, **kw)
    summary = asyncio.run(run_campaign(tasks, options, sink, judge=judge, run_id="r1", **extra))
    return summary, sink.records


# -- with a scripted measure(): scheduling, retries, resume -------------------------------


@pytest.fixture(scope="module")
def wild(tmp_path_factory: pytest.TempPathFactory) -> tuple[ChainJudge, tuple[bytes, ...]]:
    f = CertFactory(seed=3)
    root = f.root("CN=campaign test root")
    ca = f.intermediate("CN=campaign test ca", root)
    leaf = f.leaf(ca, ["*.test.example"])
    return judge_for(root, tmp_path_factory.mktemp("wild")), (leaf.der, ca.der)


def scripted(script: dict[str, list[str | None]], chain: tuple[bytes, ...],
             delay: float = 0.0) -> tuple[Callable[..., Any], dict[str, int]]:
    """A measure() whose n-th call for a domain fails as script[domain][n] says (None: ok)."""
    calls: dict[str, int] = defaultdict(int)
    state = {"in_flight": 0, "max": 0}

    async def fake(target: Target, *, ip: str | None, port: int, sni: str | None,
                   **_: Any) -> ProbeObservation:
        assert target.domain is not None
        n = calls[target.domain]
        calls[target.domain] += 1
        steps = script.get(target.domain, [None])
        failure = steps[min(n, len(steps) - 1)]
        state["in_flight"] += 1
        state["max"] = max(state["max"], state["in_flight"])
        try:
            await asyncio.sleep(delay)
        finally:
            state["in_flight"] -= 1
        t = Target(target.domain, sni, ip or "127.0.0.9", port)
        if failure is None:
            return ProbeObservation(target=t, started=FIXED_NOW, chain_der=chain,
                                    tls=TlsInfo(version="TLSv1.3"), tcp=TcpInfo(connect_ms=0.1))
        return ProbeObservation(target=t, started=FIXED_NOW, failure=failure)

    return fake, state


def test_concurrency_bound_is_honoured_and_every_task_runs_once(
        wild: tuple[ChainJudge, tuple[bytes, ...]]) -> None:
    judge, chain = wild
    names = [f"t{i}.test.example" for i in range(60)]
    fake, state = scripted({}, chain, delay=0.01)
    summary, recs = run(tasks_for(names), judge, measure_fn=fake, concurrency=7,
                        checkpoint_records=10)
    assert state["max"] == 7 and summary.max_in_flight == 7
    assert len(recs) == 60 and {r.target.domain for r in recs} == set(names)
    assert {r.id for r in recs} == {t.id for t in tasks_for(names)}
    assert all(r.verdict == "ok" and r.run_id == "r1" for r in recs)
    assert summary.verdicts == {"ok": 60} and summary.records == 60 and summary.measurements == 60


def test_retries_an_ok_attempt_wins_and_agreement_is_counted(
        wild: tuple[ChainJudge, tuple[bytes, ...]]) -> None:
    judge, chain = wild
    script: dict[str, list[str | None]] = {
        "flaky.test.example": ["tls/reset", "tls/reset", None],
        "mixed.test.example": ["tls/reset", "tls/timeout", "tls/reset"],
        "tie.test.example": ["tls/reset", "tcp/timeout"],
        "steady.test.example": [None],
    }
    fake, _ = scripted(script, chain)
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    summary, recs = run(tasks_for(list(script)), judge, measure_fn=fake, retries=2, backoff=0.1,
                        sleep=sleep, rng=random.Random(1), concurrency=1)
    by = {r.target.domain: r for r in recs}
    flaky, mixed, steady = by["flaky.test.example"], by["mixed.test.example"], \
        by["steady.test.example"]
    assert (flaky.verdict, flaky.outcome) == ("ok", "cert/valid")
    assert flaky.attempts is not None and (flaky.attempts.count, flaky.attempts.agreeing) == (3, 1)
    assert (mixed.verdict, mixed.outcome) == ("anomaly", "tls/reset")
    assert mixed.attempts is not None and (mixed.attempts.count, mixed.attempts.agreeing) == (3, 2)
    assert steady.attempts is not None
    assert (steady.attempts.count, steady.attempts.agreeing) == (1, 1)
    tie = by["tie.test.example"]  # 3 attempts: reset, timeout, timeout -> timeout (2 of 3)
    assert tie.outcome == "tcp/timeout"
    assert tie.attempts is not None and (tie.attempts.count, tie.attempts.agreeing) == (3, 2)
    # Exponential backoff with jitter: retry n waits in [0.5, 1] * 0.1 * 2**(n-1).
    assert len(slept) == 6 and summary.retried == 3
    firsts, seconds = slept[0::2], slept[1::2]
    assert all(0.05 <= s <= 0.1 for s in firsts) and all(0.1 <= s <= 0.2 for s in seconds)
    assert len(set(slept)) == 6  # jittered


def test_ties_go_to_the_most_recent_and_retries_can_be_off(
        wild: tuple[ChainJudge, tuple[bytes, ...]]) -> None:
    judge, chain = wild
    fake, _ = scripted({"a.test.example": ["tls/reset", "tcp/timeout"]}, chain)
    _, recs = run(tasks_for(["a.test.example"]), judge, measure_fn=fake, retries=1,
                  backoff=0.0)
    assert recs[0].outcome == "tcp/timeout"
    assert recs[0].attempts is not None and recs[0].attempts.agreeing == 1
    fake, _ = scripted({"a.test.example": ["tls/reset"]}, chain)
    summary, recs = run(tasks_for(["a.test.example"]), judge, measure_fn=fake, retries=0)
    assert recs[0].attempts is not None and recs[0].attempts.count == 1
    assert summary.measurements == 1


def test_done_tasks_are_skipped_and_internal_errors_write_nothing(
        wild: tuple[ChainJudge, tuple[bytes, ...]]) -> None:
    judge, chain = wild
    names = [f"n{i}.test.example" for i in range(6)]
    done = {t.id for t in tasks_for(names[:4])}
    fake, _ = scripted({}, chain)

    async def flaky_bug(target: Target, **kw: Any) -> ProbeObservation:
        if target.domain == "n5.test.example":
            raise RuntimeError("boom")
        result: ProbeObservation = await fake(target, **kw)
        return result

    errors: list[str] = []
    summary, recs = run(tasks_for(names), judge, measure_fn=flaky_bug, done=done,
                        on_error=errors.append)
    assert [r.target.domain for r in recs] == ["n4.test.example"]
    assert (summary.skipped, summary.errors, summary.records) == (4, 1, 1)
    assert errors == ["internal error on n5.test.example (argument 6): RuntimeError: boom"]


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        ControlSpec("sni")
    with pytest.raises(ValueError):
        CampaignOptions(concurrency=0)
    with pytest.raises(ValueError):
        CampaignOptions(retries=-1)


# -- real handshakes on 127.0.0.1: controls of each kind ---------------------------------


@pytest.fixture(scope="module")
def mitm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An untrusted chain for example.com (a middlebox's own root)."""
    d = tmp_path_factory.mktemp("mitm")
    f = CertFactory(seed=11)
    root = f.root("CN=middlebox root")
    leaf = f.leaf(root, ["example.com"])
    (d / "chain.pem").write_bytes(leaf.pem + root.pem)
    (d / "key.pem").write_bytes(leaf.key_pem)
    return d / "chain.pem", d / "key.pem"


async def reset_after_hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_client_hello(reader)
    reset(writer)


def with_servers(
    servers: list[tuple[Any, ssl.SSLContext | None]],
    build: Callable[[list[int]], tuple[Iterator[Task], dict[str, Any]]],
    judge: ChainJudge,
    zones: Sequence[dict[str, Any]] = (),
) -> tuple[Summary, list[Record]]:
    async def main() -> tuple[Summary, list[Record]]:
        started = [await serve(h, ctx) for h, ctx in servers]
        dns = [await dns_server(z) for z in zones]
        try:
            ports = [port_of(s) for s in started] + [t.get_extra_info("sockname")[1]
                                                     for _, t in dns]
            tasks, kw = build(ports)
            sink = ListSink()
            options = CampaignOptions(timeouts=FAST, clock=lambda: FIXED_NOW,
                                      bogons=LAB_BOGONS, **kw)
            summary = await run_campaign(tasks, options, sink, judge=judge, run_id="r")
            return summary, sink.records
        finally:
            for s in started:
                s.close()
            for _, t in dns:
                t.close()

    return asyncio.run(main())


def test_path_control_untrusted_here_trusted_there_is_intercepted(
        pki: Pki, mitm: tuple[Path, Path], tmp_path: Path) -> None:
    judge = judge_for(pki.root, tmp_path)
    good = server_context(pki.cert_file, pki.key_file)
    bad = server_context(*mitm)
    _, recs = with_servers(
        [(tls_idle, bad), (tls_idle, good)],
        lambda p: (tasks_for(["example.com"], [VantageSpec("here", HOST, p[0])]),
                   {"control": ControlSpec("path", endpoint=Endpoint(HOST, p[1]))}),
        judge)
    (rec,) = recs
    assert (rec.verdict, rec.rule_id) == ("intercepted", "R42-untrusted-control-valid")
    assert rec.outcome.startswith("cert/")
    assert rec.control is not None and rec.control.kind == "path"
    assert rec.control.outcome == "cert/valid"
    assert rec.vantage.name == "here" and rec.vantage.kind == "remote"


@pytest.mark.parametrize(("control_ok", "verdict"), [(True, "blocked"), (False, "down")])
def test_path_control_reset_here(pki: Pki, tmp_path: Path, control_ok: bool,
                                 verdict: str) -> None:
    judge = judge_for(pki.root, tmp_path)
    control_server = (tls_idle, server_context(pki.cert_file, pki.key_file)) if control_ok \
        else (reset_after_hello, None)
    _, recs = with_servers(
        [(reset_after_hello, None), control_server],
        lambda p: (tasks_for(["example.com"], [VantageSpec("here", HOST, p[0])]),
                   {"control": ControlSpec("path", endpoint=Endpoint(HOST, p[1])),
                    "retries": 1, "backoff": 0.0}),
        judge)
    (rec,) = recs
    assert (rec.verdict, rec.outcome) == (verdict, "tls/reset")
    assert rec.control is not None and rec.control.kind == "path"
    # The control is measured once; the main measurement is repeated.
    assert rec.attempts is not None and (rec.attempts.count, rec.attempts.agreeing) == (2, 2)


def test_sni_control_same_ip_other_name(pki: Pki, tmp_path: Path) -> None:
    judge = judge_for(pki.root, tmp_path)
    ctx = server_context(pki.cert_file, pki.key_file)

    def sni_filter(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE if name == "example.com" else None

    ctx.sni_callback = sni_filter  # an SNI filter that answers blocked names with an alert
    summary, recs = with_servers(
        [(tls_idle, ctx)],
        lambda p: (tasks_for(["example.com"], [VantageSpec("v", HOST, p[0])]),
                   {"control": ControlSpec("sni", sni="control.example")}),
        judge)
    (rec,) = recs
    # Python's ssl may close without sending the alert: either way a TLS-stage failure.
    assert rec.verdict == "blocked" and rec.outcome.startswith("tls/")
    assert rec.control is not None and rec.control.kind == "sni"
    assert rec.control.target is not None and rec.control.target.sni == "control.example"
    assert rec.control.target.ip == HOST
    assert summary.measurements == 2


def test_resolver_control_nxdomain_here_answer_there(pki: Pki, tmp_path: Path) -> None:
    judge = judge_for(pki.root, tmp_path)
    _, recs = with_servers(
        [(tls_idle, server_context(pki.cert_file, pki.key_file))],
        lambda p: (tasks_for(["example.com"], port=p[0]),
                   {"resolver": (HOST, p[1]),
                    "control": ControlSpec("resolver", resolver=(HOST, p[2]))}),
        judge,
        zones=[{"example.com": "NXDOMAIN"}, {"example.com": [HOST]}])
    (rec,) = recs
    assert (rec.verdict, rec.outcome) == ("blocked", "dns/nxdomain")
    assert rec.control is not None and rec.control.kind == "resolver"
    assert rec.control.outcome == "cert/valid"
    assert rec.target.ip is None and rec.dns is not None and rec.dns.rcode == "NXDOMAIN"


def test_sni_control_without_an_ip_is_not_measured_and_says_so(pki: Pki, tmp_path: Path) -> None:
    judge = judge_for(pki.root, tmp_path)
    summary, recs = with_servers(
        [],
        lambda p: (tasks_for(["example.com"]),
                   {"resolver": (HOST, p[0]), "control": ControlSpec("sni", sni="c.example")}),
        judge,
        zones=[{"example.com": "NXDOMAIN"}])
    (rec,) = recs
    assert (rec.verdict, rec.outcome, rec.control) == ("anomaly", "dns/nxdomain", None)
    assert "control_not_measured: the sni control needs the target's IP" in rec.anomalies
    assert summary.measurements == 1


# -- two controls: a path control and an SNI control in one run --------------------------


@dataclass(frozen=True)
class TwoNames:
    judge: ChainJudge
    real: tuple[Path, Path]  # the real server's chain and key: example.com, control.example
    forged: tuple[Path, Path]  # a middlebox's forged example.com

    def origin(self) -> ssl.SSLContext:
        return server_context(*self.real)

    def interceptor(self) -> ssl.SSLContext:
        """The real server behind an SNI-triggered interceptor: example.com gets the forgery."""
        ctx, forged = server_context(*self.real), server_context(*self.forged)

        def by_sni(obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            if name == "example.com":
                obj.context = forged

        ctx.sni_callback = by_sni
        return ctx


@pytest.fixture(scope="module")
def two_names(tmp_path_factory: pytest.TempPathFactory) -> TwoNames:
    d = tmp_path_factory.mktemp("two")
    f = CertFactory(seed=12)
    root = f.root("CN=two controls root")
    leaf = f.leaf(root, ["example.com", "control.example"])
    box = f.root("CN=middlebox root")
    forged = f.leaf(box, ["example.com"])
    (d / "real.pem").write_bytes(leaf.pem + root.pem)
    (d / "real.key").write_bytes(leaf.key_pem)
    (d / "forged.pem").write_bytes(forged.pem + box.pem)
    (d / "forged.key").write_bytes(forged.key_pem)
    return TwoNames(judge_for(root, d), (d / "real.pem", d / "real.key"),
                    (d / "forged.pem", d / "forged.key"))


def sni_of(hello: bytes) -> str | None:
    return decode_client_hello(hello[9:]).server_name  # after record + handshake headers


def sni_filter(upstream: int, blocked: str = "example.com") -> Callable[..., Any]:
    """A transparent DPI box: a RST after a ClientHello for ``blocked``, else a TCP relay."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = await read_client_hello(reader)
        if sni_of(hello) == blocked:
            reset(writer)
            return
        up_r, up_w = await asyncio.open_connection(HOST, upstream)
        up_w.write(hello)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
            w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)

    return handler


def two_controls(p: list[int], target: int, path: int) -> tuple[Iterator[Task], dict[str, Any]]:
    return (tasks_for(["example.com"], [VantageSpec("here", HOST, p[target])]),
            {"control": ControlSpec("path", endpoint=Endpoint(HOST, p[path])),
             "sni_control": ControlSpec("sni", sni="control.example")})


def test_two_controls_interception_seen_by_both(two_names: TwoNames) -> None:
    t = two_names
    summary, recs = with_servers([(tls_idle, t.interceptor()), (tls_idle, t.origin())],
                                 lambda p: two_controls(p, 0, 1), t.judge)
    (rec,) = recs
    assert (rec.verdict, rec.rule_id, rec.confidence) == (
        "intercepted", "R42-untrusted-control-valid", 0.85)
    assert rec.outcome.startswith("cert/untrusted_root")
    assert rec.control is not None and rec.control_sni is not None
    assert (rec.control.kind, rec.control.outcome) == ("path", "cert/valid")
    assert (rec.control_sni.kind, rec.control_sni.outcome) == ("sni", "cert/valid")
    assert rec.control_sni.target is not None
    assert (rec.control_sni.target.sni, rec.control_sni.target.ip) == ("control.example", HOST)
    assert rec.control_sni.chain[0].sha256 == rec.control.chain[0].sha256 != rec.chain[0].sha256
    assert "path control: valid (cert/valid)" in rec.reasons
    assert "sni control: valid (cert/valid)" in rec.reasons
    assert summary.measurements == 3


def test_two_controls_reset_here_both_controls_work_is_blocked(two_names: TwoNames) -> None:
    t = two_names

    async def main() -> list[Record]:
        origin = await serve(tls_idle, t.origin())
        box = await serve(sni_filter(port_of(origin)))
        try:
            tasks, kw = two_controls([port_of(box), port_of(origin)], 0, 1)
            sink = ListSink()
            options = CampaignOptions(timeouts=FAST, clock=lambda: FIXED_NOW, retries=1,
                                      backoff=0.0, **kw)
            await run_campaign(tasks, options, sink, judge=t.judge, run_id="r")
            return sink.records
        finally:
            box.close()
            origin.close()

    (rec,) = asyncio.run(main())
    assert (rec.verdict, rec.outcome, rec.rule_id, rec.confidence) == (
        "blocked", "tls/reset", "R72-failure-control-succeeded", 0.9)
    assert rec.control is not None and rec.control.outcome == "cert/valid"
    # The SNI control went through the same box with a name it lets pass.
    assert rec.control_sni is not None and rec.control_sni.outcome == "cert/valid"
    assert not any("disagree" in r for r in rec.reasons)
    assert rec.attempts is not None and (rec.attempts.count, rec.attempts.agreeing) == (2, 2)


def test_two_controls_that_disagree_lower_the_confidence(two_names: TwoNames) -> None:
    # The box resets every name: the SNI control fails like the target, the path works.
    t = two_names
    _, recs = with_servers([(reset_after_hello, None), (tls_idle, t.origin())],
                           lambda p: two_controls(p, 0, 1), t.judge)
    (rec,) = recs
    assert (rec.verdict, rec.outcome, rec.rule_id, rec.confidence) == (
        "blocked", "tls/reset", "R72-failure-control-succeeded", 0.6)
    assert rec.control_sni is not None and rec.control_sni.outcome == "tls/reset"
    assert any("the controls disagree" in r and "(if it is right: down)" in r
               for r in rec.reasons)


def test_two_controls_without_a_target_ip_measure_the_path_control_only(
        two_names: TwoNames) -> None:
    t = two_names
    summary, recs = with_servers(
        [(tls_idle, t.origin())],
        lambda p: (tasks_for(["example.com"], port=p[0]),
                   {"resolver": (HOST, p[1]),
                    "control": ControlSpec("resolver", resolver=(HOST, p[2])),
                    "sni_control": ControlSpec("sni", sni="control.example")}),
        t.judge, zones=[{"example.com": "NXDOMAIN"}, {"example.com": [HOST]}])
    (rec,) = recs
    assert (rec.verdict, rec.outcome) == ("blocked", "dns/nxdomain")
    assert rec.control is not None and rec.control.kind == "resolver"
    assert rec.control_sni is None
    assert "control_not_measured: the sni control needs the target's IP" in rec.anomalies
    assert summary.measurements == 2


def test_an_sni_control_goes_beside_a_path_control_only() -> None:
    sni = ControlSpec("sni", sni="c.example")
    path = ControlSpec("path", endpoint=Endpoint(HOST, 443))
    for control, second in ((None, sni), (sni, sni), (path, path)):
        with pytest.raises(ValueError, match="sni_control"):
            CampaignOptions(control=control, sni_control=second)
    assert CampaignOptions(control=path, sni_control=sni).controls == (path, sni)
    assert CampaignOptions(control=sni).controls == (sni,)


def test_per_ip_rate_resolves_first_and_keeps_dns_in_the_record(pki: Pki, tmp_path: Path) -> None:
    judge = judge_for(pki.root, tmp_path)
    for per_ip in (None, 50.0):

        def build(p: list[int], rate: float | None = per_ip) -> tuple[Iterator[Task],
                                                                       dict[str, Any]]:
            return (tasks_for(["example.com", "missing.example"], port=p[0]),
                    {"resolver": (HOST, p[1]), "per_ip_rate": rate})

        _, recs = with_servers(
            [(tls_idle, server_context(pki.cert_file, pki.key_file))], build, judge,
            zones=[{"example.com": ["0.0.0.0", HOST], "missing.example": "NXDOMAIN"}])
        by = {r.target.domain: r for r in recs}
        ok, missing = by["example.com"], by["missing.example"]
        assert (ok.verdict, ok.outcome) == ("ok", "cert/valid"), per_ip
        assert ok.dns is not None and set(ok.dns.answers) == {"0.0.0.0", HOST}
        assert ok.target.ip == HOST and ok.flow is not None
        assert "dns_bogon:zero:0.0.0.0" in ok.anomalies
        assert ok.time == "2019-08-01T12:00:00Z"
        assert missing.outcome == "dns/nxdomain" and missing.target.ip is None


# -- captive-portal pre-check ---------------------------------------------------------------


def http_status(status: str) -> Callable[..., Any]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    return handler


@pytest.mark.parametrize(("status", "ok"), [("204 No Content", True), ("302 Found", False)])
def test_captive_portal_check(status: str, ok: bool) -> None:
    async def main() -> tuple[bool, str]:
        srv = await serve(http_status(status))
        _, transport = await dns_server({"portal.example": [HOST]})
        try:
            res = await captive_portal_check(
                f"http://portal.example:{port_of(srv)}/generate_204",
                resolver=(HOST, transport.get_extra_info("sockname")[1]), timeout=2,
                bogons=LAB_BOGONS)
            return res.ok, res.detail
        finally:
            srv.close()
            transport.close()

    assert asyncio.run(main()) == (ok, f"HTTP {status.split()[0]}")
    with pytest.raises(ValueError):
        asyncio.run(captive_portal_check("https://x.example/", resolver=None))


def test_captive_portal_makes_every_verdict_inconclusive_without_retries(
        wild: tuple[ChainJudge, tuple[bytes, ...]]) -> None:
    judge, chain = wild
    fake, _ = scripted({"a.test.example": ["tls/reset"]}, chain)
    summary, recs = run(tasks_for(["a.test.example", "b.test.example"]), judge,
                        measure_fn=fake, retries=3, captive_portal=True)
    assert {r.verdict for r in recs} == {"inconclusive"}
    assert all(r.attempts is not None and r.attempts.count == 1 for r in recs)
    assert summary.measurements == 2
    assert not any(isinstance(r, RunRecord) for r in recs)


def test_two_controls_travel_to_dask_shards() -> None:
    # Shards get pickled CampaignOptions (tlswatch.distributed.probe): both controls go along.
    import pickle

    from tlswatch.distributed.probe import shard_options

    sni = ControlSpec("sni", sni="c.example")
    path = ControlSpec("path", endpoint=Endpoint(HOST, 8443))
    opts = CampaignOptions(control=path, sni_control=sni, concurrency=8)
    shard = pickle.loads(pickle.dumps(shard_options(opts, 2, resolves=False)))
    assert (shard.control, shard.sni_control, shard.concurrency) == (path, sni, 4)

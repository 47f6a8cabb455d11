"""``tlswatch watch`` end to end: a TLS origin and a reset box on 127.0.0.1, the metrics
endpoint scraped over HTTP on 127.0.0.1. Nothing else is ever contacted."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from click.testing import CliRunner
from probe.servers import (
    HOST,
    background_loop,
    port_of,
    reset_after_hello,
    serve,
    server_context,
    tls_idle,
)
from prometheus_client.parser import text_string_to_metric_families

from tlswatch.cli.main import cli
from tlswatch.testing import CertFactory, write_store_pem
from tlswatch.watch.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Servers:
    tls: int
    rst: int
    store: Path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    d = tmp_path_factory.mktemp("watch-cli")
    f = CertFactory(seed=33, now=datetime.now(UTC))
    root = f.root("CN=watch peer root")
    ca = f.intermediate("CN=watch peer ca", root)
    leaf = f.leaf(ca, ["example.com", "*.example.com"])
    (d / "chain.pem").write_bytes(leaf.pem + ca.pem)
    (d / "key.pem").write_bytes(leaf.key_pem)
    store = write_store_pem(d / "root.pem", [root.cert])
    async def start(box: dict[str, Any]) -> None:
        box["tls"] = await serve(tls_idle, server_context(d / "chain.pem", d / "key.pem"))
        box["rst"] = await serve(reset_after_hello)

    with background_loop(start) as box:
        yield Servers(port_of(box["tls"]), port_of(box["rst"]), store)


def _vantages(servers: Servers, tmp_path: Path) -> Path:
    v = tmp_path / "vantages.txt"
    v.write_text(f"origin {HOST}:{servers.tls}\nfilter {HOST}:{servers.rst}\n")
    return v


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    out["__text__"] = [({"text": text}, 0.0)]
    return out


def _records(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return ([r for r in lines if r.get("kind") == "run"],
            [r for r in lines if r.get("kind") != "run"])


def test_two_campaigns_metrics_match_the_records(servers: Servers, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    real_start = prometheus_client.start_http_server

    def start(port: int, addr: str, registry: Any) -> Any:
        assert addr == HOST
        server, thread = real_start(port, addr=addr, registry=registry)
        started.append(server)
        return server, thread

    scrapes: list[dict[str, list[tuple[dict[str, str], float]]]] = []
    real_done = Metrics.campaign_done

    def done(self: Metrics, summary: Any) -> None:
        real_done(self, summary)
        scrapes.append(_scrape(started[0].server_port))  # over HTTP, while it serves

    monkeypatch.setattr(prometheus_client, "start_http_server", start)
    monkeypatch.setattr(Metrics, "campaign_done", done)
    out = tmp_path / "out.jsonl"
    t0 = time.monotonic()
    r = CliRunner().invoke(cli, [
        "watch", "s1.example.com", "s2.example.com", "--vantages",
        str(_vantages(servers, tmp_path)), "--store", str(servers.store), "--retries", "0",
        "--control-connect", f"{HOST}:{servers.tls}", "--count", "2", "--every", "0.2s",
        "--metrics", f"{HOST}:0", "-o", str(out)],
        catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    assert time.monotonic() - t0 >= 0.2
    assert "tlswatch: metrics on http://127.0.0.1:" in r.stderr
    assert "stopped after 2 campaign(s)" in r.stderr and r.stdout == ""

    runs, recs = _records(out)
    assert len(runs) == 4 and [bool(x.get("ended")) for x in runs] == [False, True] * 2
    assert len({x["run_id"] for x in runs}) == 2 and len(recs) == 8
    by_verdict = Counter(x["verdict"] for x in recs)
    assert by_verdict == {"ok": 4, "blocked": 4}

    assert len(scrapes) == 2
    last = scrapes[-1]
    got: Counter[str] = Counter()
    for labels, value in last["tlswatch_measurements_total"]:
        got[labels["verdict"]] += int(value)
        assert labels["domain"] in {"s1.example.com", "s2.example.com"}
        assert labels["vantage"] in {"origin", "filter"}
    assert got == by_verdict
    first: Counter[str] = Counter()
    for labels, value in scrapes[0]["tlswatch_measurements_total"]:
        first[labels["verdict"]] += int(value)
    assert first == {"ok": 2, "blocked": 2}
    blocked = {(lab["vantage"], lab["outcome_class"]) for lab, v in
               last["tlswatch_measurements_total"] if lab["verdict"] == "blocked"}
    assert blocked == {("filter", "tls/reset")}
    assert last["tlswatch_campaigns_total"][0][1] == 2
    assert {(lab["domain"], lab["vantage"]) for lab, _ in
            last["tlswatch_last_success_timestamp_seconds"]} == {
        ("s1.example.com", "origin"), ("s2.example.com", "origin")}
    assert "watch peer" not in last["__text__"][0][0]["text"]  # no peer string exposed


def test_any_sink_extension_appends_each_campaign(servers: Servers, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    args = ["watch", "s1.example.com", "--connect", f"{HOST}:{servers.tls}", "--store",
            str(servers.store), "--count", "1", "--every", "1s", "--metrics", f"{HOST}:0",
            "-o", str(out)]
    for _ in range(2):
        r = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))  # one header: the second run appended below it
    assert [r["kind"] for r in rows] == ["run", "measurement", "run"] * 2
    assert [r["verdict"] for r in rows if r["kind"] == "measurement"] == ["ok", "ok"]


@pytest.mark.parametrize(("args", "message"), [
    (["--metrics", "0.0.0.0:9109"], "--metrics 0.0.0.0:9109: not a loopback address; add "
                                    "--metrics-public"),
    (["--metrics", "9109"], "--metrics '9109': expected HOST:PORT"),
    (["--every", "10x"], "--every '10x': expected a duration"),
    (["--every", "0s"], "--every '0s': a duration must be more than zero"),
    (["-o", "out.txt"], "out.txt: unknown output format"),
    (["--connect", "127.0.0.1", "--vantages", "v.txt"], "--connect and --vantages exclude"),
])
def test_usage_errors_are_one_line_exit_2(args: list[str], message: str) -> None:
    r = CliRunner().invoke(cli, ["watch", "s1.example.com", *args], catch_exceptions=False)
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("tlswatch: error: ") and message in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr


def test_sigterm_stops_cleanly_while_serving(servers: Servers, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    p = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "watch", "s1.example.com", "--connect",
         f"{HOST}:{servers.rst}", "--store", str(servers.store), "--retries", "0",
         "--every", "1h", "--metrics", f"{HOST}:0", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        first = p.stderr.readline()
        assert first.startswith("tlswatch: metrics on http://127.0.0.1:"), first
        port = int(first.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            runs, recs = _records(out) if out.exists() else ([], [])
            if any(x.get("ended") for x in runs):
                break
            time.sleep(0.05)
        metrics = _scrape(port)
        assert [(lab["verdict"], v) for lab, v in metrics["tlswatch_measurements_total"]] == [
            (recs[0]["verdict"], 1)]
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert "stopped after 1 campaign(s)" in err
    runs, recs = _records(out)
    assert [bool(x.get("ended")) for x in runs] == [False, True] and len(recs) == 1
    with pytest.raises(OSError):
        _scrape(port)  # the endpoint is gone

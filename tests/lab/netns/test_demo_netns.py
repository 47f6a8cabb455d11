"""``tlswatch lab demo --mode netns``: probe, trace and analyse through the namespace lab
find what the lab did, and where its middlebox is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tlswatch.cli.main import cli
from tlswatch.lab.demo_netns import run_netns_demo
from tlswatch.lab.netns import NetnsLab

from .fixture import require_netns


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_demo_locates_the_middlebox_and_tells_injected_resets(netns_lab: NetnsLab,
                                                              tmp_path: Path) -> None:
    result = run_netns_demo(tmp_path, netns_lab, log=lambda s: None)
    assert result.errors == []
    assert result.failures == [], [(r.subject, r.expected, r.seen) for r in result.failures]
    # Every lab domain was probed, one trace per kind of interference (and a clean one),
    # and the capture's reset judged again offline.
    assert {r.subject for r in result.probes} == {d for d in netns_lab.domains
                                                 if d != "example.org"}
    assert sorted(r.lab_did for r in result.traces) == ["alert", "intercept", "pass", "reset"]
    assert [r.subject for r in result.analysis] == ["reset.test"]
    # What the rows summarise is in the files a researcher keeps.
    probes = {r["target"]["domain"]: r for r in _lines(tmp_path / "results.jsonl")
              if r.get("kind") not in ("run", "input")}
    rst = probes["reset.test"]["tcp"]["rst"]  # filled live from the probe's own capture
    server_ttl = 64 - netns_lab.server_hop + 1
    assert rst["ttl"] == 64 - netns_lab.middlebox_hop + 1 != server_ttl
    assert f"ttl_differs_from_server({rst['ttl']}!={server_ttl})" in rst["injected_evidence"]
    traces = {t["target"]["sni"]: t for t in _lines(tmp_path / "traces.jsonl")}
    assert traces["reset.test"]["located_hop"] == netns_lab.middlebox_hop
    assert traces["reset.test"]["located_router"] == netns_lab.hops[
        netns_lab.middlebox_hop - 1].ip
    intercepted = next(t for t in traces.values() if t["kind"] == "interception")
    assert intercepted["located_hop"] == netns_lab.middlebox_hop
    assert traces["wikipedia.org"]["located_hop"] is None


def test_demo_netns_command_refuses_loopback_options(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["lab", "demo", "--mode", "netns", "--port", "8443", "-o",
                                 str(tmp_path)])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines()[-1].endswith("do not apply to --mode netns")


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_demo_netns_command_end_to_end(tmp_path: Path) -> None:
    require_netns()
    before = _namespaces()
    proc = subprocess.run([sys.executable, "-m", "tlswatch", "lab", "demo", "--mode", "netns",
                           "-o", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "demo: all" in proc.stdout and "results match what the lab did" in proc.stdout
    assert "injection at hop 3" in proc.stdout and "interception at hop 3" in proc.stdout
    assert _namespaces() == before  # its own lab is gone

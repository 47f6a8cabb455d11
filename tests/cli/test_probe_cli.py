"""``tlswatch probe`` as a user runs it: against servers on 127.0.0.1 only (a DNS server on
127.0.0.1 is always passed with --resolver, or --connect skips DNS)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from probe.servers import (
    HOST,
    background_loop,
    dns_server,
    port_of,
    reset_after_hello,
    serve,
    server_context,
    tls_idle,
)

from tlswatch.cli.main import cli
from tlswatch.cli.progress import Progress, verbose_line
from tlswatch.model import Attempts, Record, Target
from tlswatch.record_schema import load_schema
from tlswatch.testing import CertFactory, write_store_pem

ROOT = Path(__file__).resolve().parents[2]
# One compiled validator: jsonschema.validate() re-checks the schema on every call.
VALIDATOR = jsonschema.Draft202012Validator(load_schema())


@dataclass
class Servers:
    tls: int
    rst: int
    http302: int
    dns: int
    store: Path

    @property
    def resolver(self) -> str:
        return f"{HOST}:{self.dns}"


async def _portal(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 302 Found\r\nLocation: http://portal.example/\r\n"
                 b"Content-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """A TLS origin (a chain valid now), a reset box, a portal and DNS, in a background loop."""
    d = tmp_path_factory.mktemp("probe-cli")
    f = CertFactory(seed=21, now=datetime.now(UTC))
    root = f.root("CN=probe cli root")
    ca = f.intermediate("CN=probe cli ca", root)
    leaf = f.leaf(ca, ["example.com", "*.example.com"])
    (d / "chain.pem").write_bytes(leaf.pem + ca.pem)
    (d / "key.pem").write_bytes(leaf.key_pem)
    store = write_store_pem(d / "root.pem", [root.cert])
    zone: dict[str, Any] = {f"s{i}.example.com": [HOST] for i in range(20)}
    zone["nx.example.com"] = "NXDOMAIN"
    zone["xn--bcher-kva.example.com"] = [HOST]

    async def start(box: dict[str, Any]) -> None:
        box["tls"] = await serve(tls_idle, server_context(d / "chain.pem", d / "key.pem"))
        box["rst"] = await serve(reset_after_hello)
        box["http"] = await serve(_portal)
        _, box["dns"] = await dns_server(zone)

    with background_loop(start) as box:
        yield Servers(port_of(box["tls"]), port_of(box["rst"]), port_of(box["http"]),
                      box["dns"].get_extra_info("sockname")[1], store)


def invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["probe", *args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def lines_of(text: str) -> list[dict[str, Any]]:
    out = [json.loads(line) for line in text.splitlines() if line.strip()]
    for rec in out:
        VALIDATOR.validate(rec)
    return out


def test_dns_campaign_writes_schema_valid_records_between_run_records(
        servers: Servers, tmp_path: Path) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("# test list\ns1.example.com\nhttps://s2.example.com/x\nnx.example.com\n"
                       "bad..name\n10.0.0.1\nS1.example.com\nbücher.example.com\n")
    code, out, err = invoke(
        "s0.example.com", "-i", str(targets), "--resolver", servers.resolver,
        "--port", str(servers.tls), "--allow-loopback-answers", "--store", str(servers.store),
        "--retries", "1", "--backoff", "0", "--dns-timeout", "0.5", "--timeout", "3")
    assert code == 0, err
    recs = lines_of(out)
    first, last, body = recs[0], recs[-1], recs[1:-1]
    assert first["kind"] == "run" and "ended" not in first and first["resumed"] is False
    assert first["openssl"].startswith("OpenSSL") and first["tool"] == "tlswatch"
    assert [s["name"] for s in first["stores"]] == [str(servers.store)]
    assert first["rules_version"] and first["registry_version"]
    assert last["kind"] == "run" and last["run_id"] == first["run_id"] and last["ended"]
    by = {r["target"]["domain"]: r for r in body}
    assert set(by) == {"s0.example.com", "s1.example.com", "s2.example.com", "nx.example.com",
                       "xn--bcher-kva.example.com"}
    assert by["s1.example.com"]["verdict"] == "ok"
    assert by["xn--bcher-kva.example.com"]["target"]["sni"] == "xn--bcher-kva.example.com"
    assert by["nx.example.com"]["outcome"] == "dns/nxdomain"
    assert by["nx.example.com"]["attempts"] == {"count": 2, "agreeing": 2}
    assert all(r["run_id"] == first["run_id"] and r["vantage"]["kind"] == "local" for r in body)
    assert f"{targets}:5: empty label in 'bad..name'\n" in err
    assert f"{targets}:6: 10.0.0.1 is an IP address, not a domain (use --connect to choose " \
           "IPs)\n" in err
    assert f"{targets}:7: duplicate target s1.example.com, skipped\n" in err
    assert "bad input lines 3" in err and "verdict" in err and "dns/nxdomain" in err


def test_every_target_at_every_vantage(servers: Servers, tmp_path: Path) -> None:
    vantages = tmp_path / "vantages.txt"
    vantages.write_text(f"origin {HOST}:{servers.tls}\nfilter {HOST}:{servers.rst}\n"
                        "broken 300.1.1.1\n")
    out_file = tmp_path / "out.jsonl"
    keylog = tmp_path / "keys.log"
    code, out, err = invoke("s1.example.com", "s2.example.com", "--vantages", str(vantages),
                            "--store", str(servers.store), "--retries", "0", "-o",
                            str(out_file), "-v", "--control-connect", f"{HOST}:{servers.tls}",
                            "--keylog", str(keylog))
    assert code == 0, err
    assert out == ""
    assert keylog.read_text().count("CLIENT_TRAFFIC_SECRET_0") == 6  # 2 origin + 4 controls
    recs = lines_of(out_file.read_text())[1:-1]
    got = {(r["target"]["domain"], r["vantage"]["name"]): r["verdict"] for r in recs}
    assert got == {("s1.example.com", "origin"): "ok", ("s2.example.com", "origin"): "ok",
                   ("s1.example.com", "filter"): "blocked",
                   ("s2.example.com", "filter"): "blocked"}
    assert all(r["control"]["kind"] == "path" for r in recs)
    assert f"{vantages}:3: '300.1.1.1' is not an IP address (names are not accepted here)" in err
    verbose = [line for line in err.splitlines() if line.startswith(("ok ", "blocked "))]
    assert len(verbose) == 4 and any("tls/reset" in v and "via filter" in v for v in verbose)


def test_a_path_control_and_an_sni_control_in_one_run(servers: Servers) -> None:
    # The target path resets every handshake; the path control works. The SNI control goes
    # to the same resetting address, so the two controls disagree (docs/verdicts.md).
    code, out, err = invoke("s1.example.com", "--connect", f"{HOST}:{servers.rst}", "--store",
                            str(servers.store), "--retries", "0", "--control-sni",
                            "s2.example.com", "--control-connect", f"{HOST}:{servers.tls}")
    assert code == 0, err
    (rec,) = lines_of(out)[1:-1]
    assert (rec["verdict"], rec["outcome"], rec["confidence"]) == ("blocked", "tls/reset", 0.6)
    assert rec["control"]["kind"] == "path" and rec["control"]["outcome"] == "cert/valid"
    assert rec["control_sni"]["kind"] == "sni" and rec["control_sni"]["outcome"] == "tls/reset"
    assert rec["control_sni"]["target"]["sni"] == "s2.example.com"
    # One control alone: no control_sni key, and the record keeps the old shape.
    code, out, err = invoke("s1.example.com", "--connect", f"{HOST}:{servers.rst}", "--store",
                            str(servers.store), "--retries", "0", "--control-sni",
                            "s2.example.com")
    assert code == 0, err
    (rec,) = lines_of(out)[1:-1]
    assert "control_sni" not in rec and rec["control"]["kind"] == "sni"
    assert (rec["verdict"], rec["rule_id"]) == ("down", "R71-failure-control-same")


def test_captive_portal_precheck_makes_results_inconclusive(servers: Servers) -> None:
    code, out, err = invoke("s1.example.com", "--connect", f"{HOST}:{servers.tls}", "--store",
                            str(servers.store), "--captive-check",
                            f"http://{HOST}:{servers.http302}/generate_204")
    assert code == 0, err
    (rec,) = lines_of(out)[1:-1]
    assert rec["verdict"] == "inconclusive" and rec["rule_id"] == "R00-captive-portal"
    assert "captive-portal pre-check failed (HTTP 302)" in err


@pytest.mark.parametrize(("args", "message"), [
    (["-o", "out.txt"], "-o out.txt: unknown output format"),
    (["-o", "out.csv", "--resume"], "--resume works with .jsonl, .jsonl.gz and .sqlite"),
    (["--resume"], "--resume needs -o FILE (the output to continue)"),
    (["--connect", "127.0.0.1", "--vantages", "v.txt"], "--connect and --vantages exclude"),
    (["--connect", "localhost:443"], "--connect: 'localhost:443' is not an IP address"),
    (["--control-connect", "127.0.0.1", "--control-resolver", "127.0.0.1"],
     "give at most one path control: --control-connect or --control-resolver"),
    (["--control-sni", "a..example", "--control-connect", "127.0.0.1"],
     "--control-sni: empty label"),
    (["--tls-version", "1.4"], "--tls-version '1.4': expected V or MIN-MAX"),
    (["--store", "nope"], "unknown trust store 'nope'"),
    (["--resolver", "dns.example"], "--resolver 'dns.example': expected IP[:PORT]"),
    (["-i", "/nonexistent/list.txt"], "/nonexistent/list.txt: cannot read"),
    (["--no-sni", "--control-sni", "x.example"], "--control-sni needs SNI"),
])
def test_usage_errors_are_one_line_exit_2(args: list[str], message: str) -> None:
    code, out, err = invoke("s1.example.com", *args)
    assert code == 2 and out == ""
    assert err.startswith("tlswatch: error: ") and message in err and err.count("\n") == 1, err


def test_no_targets_no_usable_targets_and_existing_output(tmp_path: Path,
                                                          servers: Servers) -> None:
    code, _, err = invoke()
    assert code == 2 and "no targets" in err
    code, _, err = invoke("bad..name", "--connect", HOST)
    assert code == 2 and err.endswith("tlswatch: error: no usable target in the input\n")
    existing = tmp_path / "o.jsonl"
    existing.write_text("{}\n")
    code, _, err = invoke("s1.example.com", "--connect", HOST, "-o", str(existing))
    assert code == 2 and "exists and is not empty: add --resume" in err


def test_progress_line_and_verbose_lines_are_terminal_safe() -> None:
    stream = io.StringIO()
    p = Progress(stream, live=True, total=4, interval=0)
    rec = Record(id="i", run_id="r", source="probe", time="2026-01-01T00:00:00Z",
                 target=Target("a.example", "a.example", "127.0.0.1", 443), verdict="ok",
                 outcome="cert/valid", attempts=Attempts(1, 1))
    p.record(rec)
    p.record(dataclasses.replace(rec, verdict="anomaly",
                                 outcome="cert/untrusted_root:\x1b[31mEvil\u202e"))
    p.message("tlswatch: a message")
    p.close()
    text = stream.getvalue()
    assert "\r" in text and "2/4  ok 1  anomaly 1" in text and "ETA" in text
    assert "tlswatch: a message\n" in text
    assert text.endswith("\r\x1b[K")  # the status line is cleared at the end
    line = verbose_line(dataclasses.replace(rec, outcome="cert/untrusted_root:\x1b[31mE\u202e"))
    assert "\x1b" not in line and "\u202e" not in line and "\\x1b" in line
    assert line.startswith("ok           cert/untrusted_root:") and "127.0.0.1:443" in line
    quiet = io.StringIO()
    q = Progress(quiet, live=False)
    q.record(rec)
    q.close()
    assert quiet.getvalue() == ""


def test_sigterm_stops_cleanly_and_resume_finishes(servers: Servers, tmp_path: Path) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("".join(f"u{i}.example.com\n" for i in range(100)))
    out = tmp_path / "out.jsonl"
    common = ["-i", str(targets), "--connect", f"{HOST}:{servers.tls}", "--store",
              str(servers.store), "-o", str(out)]
    p = subprocess.Popen(_cli(*common, "--rate", "50"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while (not out.exists() or out.stat().st_size < 3000) and time.monotonic() < deadline:
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=10)
    assert p.returncode == 143, err
    assert "interrupted; run again with --resume to finish" in err
    ids, runs = _ids(out)
    assert 0 < len(ids) < 100 and len(runs) == 1 and "ended" not in runs[0]
    r = subprocess.run(_cli(*common, "--resume"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ids, runs = _ids(out)
    assert len(ids) == len(set(ids)) == 100
    assert [bool(x.get("ended")) for x in runs] == [False, False, True]


# -- resume after SIGKILL ---------------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "probe", *args]


def _ids(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    ids, runs = [], []
    for line in path.read_bytes().splitlines():
        rec = json.loads(line)  # every line complete: a torn tail was cut on resume
        VALIDATOR.validate(rec)
        if rec.get("kind") == "run":
            runs.append(rec)
        else:
            ids.append(rec["id"])
    return ids, runs


def test_sigkill_at_random_moments_then_resume_loses_and_duplicates_nothing(
        servers: Servers, tmp_path: Path) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("".join(f"t{i}.example.com\n" for i in range(300)))
    common = ["-i", str(targets), "--connect", f"{HOST}:{servers.tls}", "--store",
              str(servers.store), "--retries", "0", "--concurrency", "20"]
    full = tmp_path / "full.jsonl"
    subprocess.run(_cli(*common, "-o", str(full)), check=True, capture_output=True, timeout=60)
    want, _ = _ids(full)
    assert len(want) == len(set(want)) == 300

    part = tmp_path / "part.jsonl"
    rng = random.Random(int(os.environ.get("TLSWATCH_TEST_SEED", "4")))
    kills, progressed, before = 0, 0, 0
    for round_ in range(6):
        # --rate keeps every run (~5 s for 300) longer than the moment it is killed at.
        p = subprocess.Popen(_cli(*common, "--rate", "60", "-o", str(part), "--resume"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if round_ == 1:
            time.sleep(rng.uniform(0.0, 0.3))  # during start-up, before anything is written
        else:
            # Once this run writes, at a random moment while records stream in.
            deadline = time.monotonic() + 10
            while (not part.exists() or part.stat().st_size <= before + 1000) \
                    and time.monotonic() < deadline and p.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.4))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait(10)
        size = part.stat().st_size if part.exists() else 0
        progressed += size > before
        if round_ == 2:
            with open(part, "ab") as f:  # what a kill in the middle of a write leaves
                f.write(b'{"schema":"tlswatch/1","id":"torn-rec')
        before = part.stat().st_size if part.exists() else 0
    assert kills == 6 and progressed >= 5
    done = subprocess.run(_cli(*common, "-o", str(part), "--resume"), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got, runs = _ids(part)
    assert len(got) == len(set(got)), "duplicated records"
    assert set(got) == set(want), "lost records"
    assert runs[-1]["ended"] and runs[-1]["resumed"] is True
    assert sum(1 for r in runs if r.get("ended")) == 1  # only the last run finished
    assert all(r["resumed"] for r in runs[1:])


def test_pcap_records_the_probes_own_packets_with_rst_evidence(servers: Servers,
                                                               tmp_path: Path) -> None:
    from conftest import require_tool

    from tlswatch.capture import Rst, read_flows

    require_tool("tcpdump")
    pcap = tmp_path / "probe.pcap"
    code, out, err = invoke("s1.example.com", "--connect", f"{HOST}:{servers.rst}",
                            "--pcap", str(pcap), "--retries", "0", "--tls-timeout", "1")
    assert code == 0, err
    recs = [r for r in lines_of(out) if r.get("kind") != "run"]
    assert recs[0]["outcome"] == "tls/reset"
    rsts = [e for e in read_flows(pcap) if isinstance(e, Rst)
            and servers.rst in (e.key.server_port, e.key.client_port)]
    assert rsts and rsts[0].ttl is not None  # the evidence analyse needs: TTL (and IP ID)


def test_pcap_without_tcpdump_is_a_one_line_error(servers: Servers, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no tcpdump on this PATH
    code, _, err = invoke("s1.example.com", "--connect", f"{HOST}:{servers.tls}",
                          "--pcap", str(tmp_path / "x.pcap"))
    assert code == 2 and err.count("\n") == 1 and "tcpdump is not installed" in err


@pytest.mark.parametrize("ext", ["sqlite", "jsonl.gz", "csv"])
def test_output_format_follows_the_extension_and_sqlite_resumes(servers: Servers, tmp_path: Path,
                                                               ext: str) -> None:
    from tlswatch.sinks.readers import read_records

    out = tmp_path / f"r.{ext}"
    args = ["s1.example.com", "s2.example.com", "--connect", f"{HOST}:{servers.tls}",
            "--store", str(servers.store), "--retries", "0", "-o", str(out)]
    code, _, err = invoke(*args)
    assert code == 0, err
    rows = [r for r in read_records(out) if r.get("kind") not in ("run",)]
    assert len(rows) == 2 and {r["verdict"] for r in rows} == {"ok"}
    if ext != "csv":
        # A resumed run over the same targets adds run records only, no measurement twice.
        code, _, err = invoke(*args, "--resume")
        assert code == 0, err
        again = [r for r in read_records(out) if r.get("kind") is None]
        assert sorted(r["id"] for r in again) == sorted(r["id"] for r in rows)


def test_routable_network_answers_are_connected_to(servers: Servers) -> None:
    args = ("s1.example.com", "--resolver", servers.resolver, "--port", str(servers.tls),
            "--store", str(servers.store), "--retries", "0", "--dns-timeout", "0.5",
            "--timeout", "3")
    code, out, err = invoke(*args)  # loopback answers are bogons: recorded, not connected to
    assert code == 0, err
    (rec,) = lines_of(out)[1:-1]
    assert rec["outcome"] == "dns/bogon:loopback" and rec["tls"]["version"] is None
    code, out, err = invoke(*args, "--routable", "127.0.0.0/8")
    assert code == 0, err
    (rec,) = lines_of(out)[1:-1]
    assert rec["verdict"] == "ok" and rec["tls"]["version"] == "TLSv1.3"
    code, _, err = invoke(*args, "--routable", "not-a-net")
    assert code == 2 and "--routable 'not-a-net': expected a network" in err

"""``tlswatch probe --workers/--scheduler``: targets x vantages sharded across Dask workers
give the records of a one-process campaign (timings aside); a worker killed mid-batch loses
and duplicates nothing; --resume works the same. Servers on 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import require_module
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
from tlswatch.probe.campaign import CampaignOptions
from tlswatch.testing import CertFactory, write_store_pem

distributed = require_module("distributed", module_level=True)

NAMES = 40  # several batches of BATCH_SIZE per shard
BATCH_SIZE = 20
# Differ between any two runs: ids of the run, clock times, ephemeral ports, and the size of
# the server flight (an ECDSA signature is 70-72 bytes); and every *_ms timing.
VOLATILE = frozenset({"run_id", "time", "at", "started", "client_port", "bytes_read"})


def scrub(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items()
                if k not in VOLATILE and not k.endswith("_ms")}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    return obj


def records(path: Path) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        if obj.get("kind") is None:
            out[json.dumps(scrub(obj), sort_keys=True)] += 1
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("dprobe")
    f = CertFactory(seed=33, now=datetime.now(UTC))
    root = f.root("CN=dist probe root")
    leaf = f.leaf(root, ["example.com", "*.example.com"])
    (d / "chain.pem").write_bytes(leaf.pem)
    (d / "key.pem").write_bytes(leaf.key_pem)
    store = write_store_pem(d / "root.pem", [root.cert])
    zone: dict[str, Any] = {f"s{i}.example.com": [HOST] for i in range(NAMES)}
    zone["nx.example.com"] = "NXDOMAIN"
    targets = d / "targets.txt"
    targets.write_text("".join(f"s{i}.example.com\n" for i in range(NAMES)) + "nx.example.com\n")

    async def start(box: dict[str, Any]) -> None:
        box["tls"] = await serve(tls_idle, server_context(d / "chain.pem", d / "key.pem"))
        box["rst"] = await serve(reset_after_hello)
        _, box["dns"] = await dns_server(zone)

    with background_loop(start) as box:
        vantages = d / "vantages.txt"
        vantages.write_text(f"origin {HOST}:{port_of(box['tls'])}\n"
                            f"filter {HOST}:{port_of(box['rst'])}\n")
        yield {"store": str(store), "targets": str(targets), "vantages": str(vantages),
               "resolver": f"{HOST}:{box['dns'].get_extra_info('sockname')[1]}",
               "tls": port_of(box["tls"])}


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    import tlswatch.distributed.probe as dist

    monkeypatch.setattr(dist, "BATCH", BATCH_SIZE)


def probe(env: dict[str, Any], out: Path, *extra: str, vantages: bool = False) -> str:
    where = (["--vantages", env["vantages"]] if vantages else
             ["--resolver", env["resolver"], "--port", str(env["tls"]),
              "--allow-loopback-answers"])
    r = CliRunner().invoke(cli, ["probe", "-i", env["targets"], *where, "--store", env["store"],
                                 "--timeout", "3", "--dns-timeout", "1", "-o", str(out),
                                 "--concurrency", "20", *extra], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    return r.stderr


@pytest.fixture(scope="module")
def single(env: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, Counter[str]]:
    d = tmp_path_factory.mktemp("single")
    probe(env, d / "dns.jsonl")
    probe(env, d / "vantages.jsonl", vantages=True)
    return {"dns": records(d / "dns.jsonl"), "vantages": records(d / "vantages.jsonl")}


def test_scheduler_gives_the_records_of_one_process(
        env: dict[str, Any], cluster: Any, single: dict[str, Counter[str]],
        tmp_path: Path) -> None:
    assert sum(single["dns"].values()) == NAMES + 1
    assert sum(single["vantages"].values()) == 2 * (NAMES + 1)
    probe(env, tmp_path / "a.jsonl", "--scheduler", cluster.scheduler_address)
    assert records(tmp_path / "a.jsonl") == single["dns"]
    # IPs known up front and a per-IP rate: sharded by IP (one shard owns 127.0.0.1)
    probe(env, tmp_path / "b.jsonl", "--scheduler", cluster.scheduler_address,
          "--per-ip-rate", "2000", vantages=True)
    assert records(tmp_path / "b.jsonl") == single["vantages"]


def test_workers_starts_its_own_cluster(env: dict[str, Any], single: dict[str, Counter[str]],
                                        tmp_path: Path) -> None:
    probe(env, tmp_path / "a.jsonl", "--workers", "2", "--rate", "2000", vantages=True)
    assert records(tmp_path / "a.jsonl") == single["vantages"]


def test_resume_on_the_cluster(env: dict[str, Any], cluster: Any,
                               single: dict[str, Counter[str]], tmp_path: Path) -> None:
    out = tmp_path / "a.jsonl"
    probe(env, tmp_path / "full.jsonl")
    lines = (tmp_path / "full.jsonl").read_text().splitlines()
    out.write_text("\n".join(lines[: len(lines) // 2]) + "\n")  # killed half way
    probe(env, out, "--resume", "--scheduler", cluster.scheduler_address)
    got = records(out)
    assert got == single["dns"] and all(n == 1 for n in got.values())


def test_killed_worker_loses_and_duplicates_nothing(
        env: dict[str, Any], cluster: Any, single: dict[str, Counter[str]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tlswatch.distributed.probe as dist

    marker = tmp_path / "killed"

    def kill_once(shard: int, tasks: list[Any], *args: Any) -> Any:
        """Measure the batch, then die before returning it, the first time (shard 1)."""
        result = dist.probe_batch(shard, tasks, *args)
        if shard == 1 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    monkeypatch.setattr(dist, "TASK", kill_once)
    probe(env, tmp_path / "a.jsonl", "--scheduler", cluster.scheduler_address)
    assert marker.exists()
    got = records(tmp_path / "a.jsonl")
    assert got == single["dns"] and all(n == 1 for n in got.values())
    client = distributed.Client(cluster, set_as_default=False)
    try:
        client.wait_for_workers(2, timeout=30)
    finally:
        client.close()


def test_shard_options_split_the_limits() -> None:
    from tlswatch.distributed.probe import shard_options

    o = CampaignOptions(rate=100.0, per_ip_rate=10.0, concurrency=50)
    known = shard_options(o, 4, resolves=False)
    assert (known.rate, known.per_ip_rate, known.concurrency) == (25.0, 10.0, 12)
    resolving = shard_options(o, 4, resolves=True)
    assert (resolving.rate, resolving.per_ip_rate) == (25.0, 2.5)
    assert shard_options(CampaignOptions(concurrency=1), 4, resolves=True).concurrency == 1


def test_keylog_is_refused_on_a_cluster(env: dict[str, Any], tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["probe", "s1.example.com", "--connect", f"{HOST}:1",
                                 "--keylog", str(tmp_path / "k"), "--workers", "1"])
    assert r.exit_code == 2 and "--keylog cannot be used" in r.stderr


# -- --jobs: the same sharding in forked processes on this machine, no cluster --------------


def test_jobs_give_the_records_of_one_process(env: dict[str, Any],
                                              single: dict[str, Counter[str]],
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import tlswatch.cli.probe_jobs as jobs

    monkeypatch.setattr(jobs, "TASK_BATCH", 7)  # several hand-outs per worker
    probe(env, tmp_path / "a.jsonl", "--jobs", "2")
    got = records(tmp_path / "a.jsonl")
    assert got == single["dns"] and all(n == 1 for n in got.values())
    probe(env, tmp_path / "b.jsonl", "--jobs", "3", "--per-ip-rate", "2000", vantages=True)
    assert records(tmp_path / "b.jsonl") == single["vantages"]


def test_jobs_worker_that_dies_then_resume(env: dict[str, Any],
                                          single: dict[str, Counter[str]], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed mid-campaign: its unsent records are measured again on --resume,
    nothing is written twice; the run says so and exits 1."""
    import tlswatch.cli.probe_jobs as jobs

    monkeypatch.setattr(jobs, "TASK_BATCH", 5)
    real = jobs._PipeSink.write
    calls = {"n": 0}
    marker = tmp_path / "died"

    def write_then_die(self: Any, record: Any) -> None:
        real(self, record)
        calls["n"] += 1  # (per process: each worker has its copy)
        if calls["n"] == 3:
            try:  # the first worker to get here dies, the other goes on
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(jobs._PipeSink, "write", write_then_die)
    out = tmp_path / "a.jsonl"
    r = CliRunner().invoke(cli, ["probe", "-i", env["targets"], "--resolver", env["resolver"],
                                 "--port", str(env["tls"]), "--allow-loopback-answers",
                                 "--store", env["store"], "--timeout", "3", "--dns-timeout",
                                 "1", "-o", str(out), "--jobs", "2"], catch_exceptions=False)
    assert "a probe worker died" in r.stderr
    assert r.exit_code == 1, r.stderr
    assert 0 < sum(records(out).values()) < sum(single["dns"].values())
    monkeypatch.setattr(jobs._PipeSink, "write", real)
    probe(env, out, "--resume", "--jobs", "2")
    got = records(out)
    assert got == single["dns"] and all(n == 1 for n in got.values())


@pytest.mark.parametrize(("args", "message"), [
    (["--jobs", "2", "--workers", "2"], "--jobs is for this machine"),
    (["--jobs", "2", "--keylog", "k.log"], "--keylog cannot be used with --jobs"),
    (["--jobs", "nine"], "--jobs nine: a number of processes, or auto"),
])
def test_jobs_usage_errors(args: list[str], message: str) -> None:
    r = CliRunner().invoke(cli, ["probe", "s1.example.com", "--connect", f"{HOST}:1", *args])
    assert r.exit_code == 2 and message in r.stderr, r.stderr

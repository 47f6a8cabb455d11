"""``tlswatch analyse --workers/--scheduler``: files spread across Dask worker processes give
the same records as one process; a worker killed mid-task loses and duplicates nothing.

One LocalCluster (2 process workers, 127.0.0.1 only) serves the module; ``--workers 2`` starts
its own once."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import require_module

from tlswatch.cli.analyse import AnalyseOptions, analyse, analyse_file

distributed = require_module("distributed", module_level=True)

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
STORE = str(CAPTURES / "lab-public-root.pem")
VOLATILE = frozenset({"run_id"})  # differs between runs by design


def invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(analyse, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def run(out: Path, *extra: str) -> tuple[list[dict[str, Any]], str]:
    code, _, err = invoke(str(CAPTURES), "--store", STORE, "-o", str(out), *extra)
    assert code == 0, err
    return [json.loads(line) for line in out.read_text().splitlines()], err


def canon(lines: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str]]:
    """(records, input records) as multisets, without run ids."""
    recs: Counter[str] = Counter()
    inputs: Counter[str] = Counter()
    for obj in lines:
        kind = obj.get("kind")
        if kind == "run":
            continue
        plain = json.dumps({k: v for k, v in obj.items() if k not in VOLATILE}, sort_keys=True)
        (inputs if kind == "input" else recs)[plain] += 1
    return recs, inputs


def check_order(lines: list[dict[str, Any]]) -> None:
    """Each file's records come right before its input record (what --resume relies on)."""
    assert lines[0]["kind"] == "run" and lines[-1]["kind"] == "run"
    pending: list[dict[str, Any]] = []
    for obj in lines[1:-1]:
        if obj.get("kind") == "input":
            assert all(r["vantage"]["name"] == Path(obj["path"]).name for r in pending), obj
            assert len(pending) == obj["records"]
            pending = []
        else:
            pending.append(obj)
    assert not pending


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    lines, _ = run(tmp_path_factory.mktemp("single") / "out.jsonl")
    return lines


def test_workers_gives_the_records_of_one_process(
        tmp_path: Path, single: list[dict[str, Any]]) -> None:
    lines, err = run(tmp_path / "out.jsonl", "--workers", "2")
    assert canon(lines) == canon(single)
    assert sum(1 for r in canon(single)[0]) > 10 and "records" in err
    check_order(lines)


def test_scheduler_gives_the_records_of_one_process(
        tmp_path: Path, cluster: Any, single: list[dict[str, Any]]) -> None:
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    lines, _ = run(tmp_path / "out.jsonl", "--scheduler", cluster.scheduler_address)
    assert canon(lines) == canon(single)
    check_order(lines)
    # --resume on the cluster: every file is complete already, nothing is written twice.
    code, _, err = invoke(str(CAPTURES), "--store", STORE, "-o", str(tmp_path / "out.jsonl"),
                          "--resume", "--scheduler", cluster.scheduler_address)
    assert code == 0, err
    again = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert canon(again) == canon(single) and "already done" in err


def test_killed_worker_loses_and_duplicates_nothing(
        tmp_path: Path, cluster: Any, single: list[dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tlswatch.distributed.analyse as dist

    markers = tmp_path / "markers"
    markers.mkdir()
    victims = {"kz2019-intercepted-tls12.pcap", "blockpage-on-443.pcap"}

    def kill_once(path: str, options: AnalyseOptions, known: str | None) -> Any:
        """Kill this worker process the first time the task runs for a victim file (after
        the analysis: its result is lost with the worker); succeed on the retry."""
        result = analyse_file(path, options, known)
        marker = markers / Path(path).name
        if Path(path).name in victims and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    monkeypatch.setattr(dist, "TASK", kill_once)
    lines, err = run(tmp_path / "out.jsonl", "--scheduler", cluster.scheduler_address)
    assert {p.name for p in markers.iterdir()} == victims  # the workers really died
    assert canon(lines) == canon(single), err
    assert all(n == 1 for n in canon(lines)[0].values())
    check_order(lines)
    client = distributed.Client(cluster, set_as_default=False)
    try:  # the nannies brought the workers back for the next test
        client.wait_for_workers(2, timeout=30)
    finally:
        client.close()


def test_analyse_file_in_process_matches_the_cli(single: list[dict[str, Any]]) -> None:
    run_id = single[0]["run_id"]
    path = CAPTURES / "kz2019-intercepted-tls12.pcap"
    res = analyse_file(path, AnalyseOptions(run_id=run_id, stores=(STORE,)))
    assert res.error is None and res.input is not None
    want = [r for r in single if r.get("vantage", {}).get("name") == path.name]
    assert [r.as_dict() for r in res.records] == want and res.input.records == len(want) > 0


def test_bad_file_on_a_worker_is_reported(tmp_path: Path, cluster: Any) -> None:
    bad = tmp_path / "cut.pcap"
    bad.write_bytes((CAPTURES / "clean-tls12.pcap").read_bytes()[:10])  # a torn header
    code, _, err = invoke(str(bad), str(CAPTURES / "clean-tls12.pcap"), "--store", STORE,
                          "-o", str(tmp_path / "o.jsonl"), "--scheduler",
                          cluster.scheduler_address)
    assert code in (1, 2) and "cut.pcap" in err and "Traceback" not in err


def test_without_dask_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    code, out, err = invoke(str(CAPTURES), "--store", STORE, "--workers", "2")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "tlswatch: error: --workers/--scheduler need Dask: install tlswatch[distributed]"]


def test_workers_and_scheduler_are_exclusive() -> None:
    code, _, err = invoke(str(CAPTURES), "--workers", "2", "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2 and "mutually exclusive" in err
    code, _, err = invoke(str(CAPTURES), "--workers", "0")
    assert code == 2 and "at least 1" in err


def test_keylog_on_the_cluster_decrypts_like_one_process(tmp_path: Path, cluster: Any) -> None:
    capture = str(CAPTURES / "kz2019-intercepted-tls13.pcapng")
    keylog = str(CAPTURES / "kz2019-intercepted-tls13.keylog")
    outs = []
    for extra in ((), ("--scheduler", cluster.scheduler_address)):
        out = tmp_path / f"out{len(outs)}.jsonl"
        code, _, err = invoke(capture, "--store", STORE, "--keylog", keylog, "-o", str(out),
                              *extra)
        assert code == 0, err
        outs.append([json.loads(x) for x in out.read_text().splitlines()])
    assert canon(outs[0]) == canon(outs[1])
    recs = [r for r in outs[1] if r.get("kind") is None]
    assert [r["verdict"] for r in recs] == ["intercepted"]

"""``tlswatch analyse --jobs N``: several processes on one capture give the records one
process gives (in another order), the same input record, and fail and resume cleanly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tlswatch.cli import analyse_jobs
from tlswatch.cli.analyse import analyse

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
STORE = str(CAPTURES / "lab-public-root.pem")

pytestmark = pytest.mark.skipif(not analyse_jobs.can_share(), reason="needs fork")


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The benchmark's workload, ~5 MiB: TLS handshakes (clean and intercepted) with bulk
    data, injected RSTs and alerts, a blockpage, DNS tampering, plain HTTP."""
    path = tmp_path_factory.mktemp("jobs") / "workload.pcap"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "analyse_throughput.py"),
                    "--build", str(path), str(5 << 20), "5"], check=True, capture_output=True)
    assert path.stat().st_size >= analyse_jobs.MIN_SHARED_BYTES
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(analyse, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _comparable(path: Path) -> tuple[list[str], list[str]]:
    """The records, sorted, and the input records, without what differs between runs."""
    recs, inputs = [], []
    for rec in _lines(path):
        rec.pop("run_id", None)
        if rec.get("kind") == "input":
            inputs.append(json.dumps(rec, sort_keys=True))
        elif "kind" not in rec:
            recs.append(json.dumps(rec, sort_keys=True))
    return sorted(recs), sorted(inputs)


@pytest.mark.parametrize("jobs", ["2", "3"])
def test_jobs_give_the_records_of_one_process(workload: Path, tmp_path: Path, jobs: str) -> None:
    one, many = tmp_path / "one.jsonl", tmp_path / "many.jsonl"
    code, _, err1 = invoke(str(workload), "--store", STORE, "-o", str(one))
    assert code == 0, err1
    code, _, err2 = invoke(str(workload), "--store", STORE, "-o", str(many), "--jobs", jobs)
    assert code == 0, err2
    recs1, inputs1 = _comparable(one)
    recs2, inputs2 = _comparable(many)
    assert len(recs1) > 100
    assert {json.loads(r)["verdict"] for r in recs1} >= {"ok", "intercepted", "anomaly"}
    assert recs2 == recs1
    assert inputs2 == inputs1
    # the summary on stderr counts the same (only the timing line differs)
    assert [x for x in err1.splitlines() if " in " not in x] == \
        [x for x in err2.splitlines() if " in " not in x]


def test_every_sample_capture_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the size threshold files use one process; forced down to 0, every sample
    capture (TLS 1.3 with key logs in the file, QUIC, DNS tampering, STARTTLS-less
    blocking...) read by two processes gives the same records."""
    one, many = tmp_path / "one.jsonl", tmp_path / "many.jsonl"
    keylogs = [a for k in sorted(CAPTURES.glob("*.keylog")) if "wrong" not in k.name
               for a in ("--keylog", str(k))]
    assert invoke(str(CAPTURES), "--store", STORE, "-o", str(one), *keylogs)[0] == 0
    monkeypatch.setattr(analyse_jobs, "MIN_SHARED_BYTES", 0)
    calls: list[int] = []
    real = analyse_jobs.run_shared
    monkeypatch.setattr(analyse_jobs, "run_shared",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    code, _, err = invoke(str(CAPTURES), "--store", STORE, "-o", str(many), "--jobs", "2",
                          *keylogs)
    assert code == 0, err
    assert len(calls) == len(list(CAPTURES.glob("*.pcap*")))
    assert _comparable(many) == _comparable(one)


def _dies(index: int, *args: Any) -> None:
    if index == 1:
        os._exit(3)  # as a worker killed by the OOM killer would: no word to the parent
    analyse_jobs._worker.__wrapped__(index, *args)  # type: ignore[attr-defined]


def test_a_dead_worker_fails_its_file_and_resume_finishes_it(
        workload: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.jsonl"
    real = analyse_jobs._worker
    _dies.__wrapped__ = real  # type: ignore[attr-defined]
    monkeypatch.setattr(analyse_jobs, "_worker", _dies)
    code, _, err = invoke(str(workload), "--store", STORE, "-o", str(out), "--jobs", "2")
    assert code == 1
    assert "the worker for share 1 of 2 died" in err
    assert not [r for r in _lines(out) if r.get("kind") == "input"]  # not complete
    partial = len(_comparable(out)[0])
    monkeypatch.setattr(analyse_jobs, "_worker", real)
    code, _, err = invoke(str(workload), "--store", STORE, "-o", str(out), "--jobs", "2",
                          "--resume")
    assert code == 0, err
    whole = tmp_path / "whole.jsonl"
    assert invoke(str(workload), "--store", STORE, "-o", str(whole))[0] == 0
    recs, inputs = _comparable(out)
    assert recs == _comparable(whole)[0]  # nothing twice, nothing missing
    assert len(inputs) == 1
    assert f"{partial} already in the output" in err


def test_duplicate_file_is_skipped(workload: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.pcap"
    shutil.copy(workload, copy)
    out = tmp_path / "out.jsonl"
    code, _, err = invoke(str(workload), str(copy), "--store", STORE, "-o", str(out),
                          "--jobs", "2")
    assert code == 0, err
    assert "same content as" in err
    assert len([r for r in _lines(out) if r.get("kind") == "input"]) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--jobs", "0"], "--jobs 0: between 1 and 256"),
    (["--jobs", "many"], "--jobs many: a number of processes, or auto"),
    (["--jobs", "2", "--workers", "2"], "--jobs is for this machine"),
])
def test_bad_jobs(args: list[str], message: str) -> None:
    code, _, err = invoke(str(CAPTURES / "clean-tls12.pcap"), *args)
    assert code == 2
    assert message in err


def test_not_a_capture_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"\x00" * (analyse_jobs.MIN_SHARED_BYTES + 10))
    code, _, err = invoke(str(junk), "--jobs", "2")
    assert code == 2  # a named file that is not a capture: the user must act
    assert "not a pcap or pcapng file" in err
    assert "Traceback" not in err

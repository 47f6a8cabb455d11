"""Seconds-long smoke runs of the benchmarks, so they cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_verify_throughput_smoke() -> None:
    r = subprocess.run([sys.executable, str(BENCH / "verify_throughput.py"), "--smoke"],
                       capture_output=True, text=True, timeout=120, check=True)
    assert "full judgement, cache" in r.stdout and re.search(r"\bok [1-9]", r.stdout)
    assert (BENCH / "verify_throughput.out").read_text().startswith("workload:")


def test_probe_throughput_smoke() -> None:
    from conftest import require_tool

    require_tool("nginx")
    require_tool("openssl")
    r = subprocess.run([sys.executable, str(BENCH / "probe_throughput.py"), "--smoke"],
                       capture_output=True, text=True, timeout=180, check=True)
    assert re.search(r"s_time -new .*: [1-9]\d* handshakes", r.stdout), r.stdout
    assert re.search(r"verdicts ok 100\b", r.stdout) and "ratio rate" in r.stdout, r.stdout
    assert re.search(r"probe --jobs 2 .*: 100 records in .* verdicts ok 100\b", r.stdout), \
        r.stdout
    assert (BENCH / "probe_throughput.out").read_text().startswith("workload:")


def test_analyse_throughput_smoke() -> None:
    from conftest import require_tool

    require_tool("tshark")
    r = subprocess.run([sys.executable, str(BENCH / "analyse_throughput.py"), "--smoke"],
                       capture_output=True, text=True, timeout=180, check=True)
    assert re.search(r"tlswatch analyse \(judged, written\) .* MB/s .* peak RSS", r.stdout)
    assert re.search(r"\b50 TLS handshakes judged; records by verdict: anomaly 50, "
                     r"intercepted 10, ok 10\b", r.stdout), r.stdout
    assert "tshark -Y tls.handshake.type==11" in r.stdout and "peak RSS of tlswatch" in r.stdout
    assert r.stdout.count("--jobs 2 wrote the same records") == 2, r.stdout
    assert (BENCH / "analyse_throughput.out").read_text().startswith("workload:")


def test_distributed_analyse_smoke() -> None:
    from conftest import require_module

    require_module("distributed")
    r = subprocess.run([sys.executable, str(BENCH / "distributed_analyse.py"), "--smoke"],
                       capture_output=True, text=True, timeout=180, check=True)
    assert re.search(r"--scheduler, 2 process workers .* s analysis .* 840 records", r.stdout), \
        r.stdout
    assert "ratio 1 worker / 2 workers:" in r.stdout, r.stdout
    assert (BENCH / "distributed_analyse.out").read_text().startswith("workload:")

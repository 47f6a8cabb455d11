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

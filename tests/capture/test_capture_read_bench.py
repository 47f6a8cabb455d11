"""The capture-reading benchmark's seconds-long smoke run, so it cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_capture_read_smoke() -> None:
    r = subprocess.run([sys.executable, str(BENCH / "capture_read.py"), "--smoke"],
                       capture_output=True, text=True, timeout=300, check=True)
    assert re.search(r"tlswatch read_flows \(reader\+reassembly\).* pkt/s", r.stdout)
    assert re.search(r"\b10 certificates\b", r.stdout)
    assert "peak RSS of tlswatch read_flows" in r.stdout
    assert (BENCH / "capture_read.out").read_text().startswith("workload:")

"""ruff and mypy are part of the suite, so CI keeps the code clean and typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def test_ruff_is_clean() -> None:
    r = _run("ruff", "check", "tlswatch", "tests", "cli.py", "benchmarks", "tools", "examples")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_is_clean() -> None:
    r = _run("mypy", "tlswatch", "cli.py")
    assert r.returncode == 0, r.stdout + r.stderr

"""The command entry point's runtime settings (tlswatch.cli.main)."""

from __future__ import annotations

import subprocess
import sys


def test_analyse_and_probe_run_with_a_lazier_cycle_collector() -> None:
    code = ("import gc, sys; from tlswatch.cli import main as m; "
            "sys.argv = ['tlswatch', sys.argv[1], '--help']; "
            "m.cli.main = lambda **k: print(gc.get_threshold()) or sys.exit(0); m.main()")
    for command, expected in (("analyse", "(50000, 50, 100)"), ("probe", "(50000, 50, 100)"),
                              ("report", "(700, 10, 10)")):
        r = subprocess.run([sys.executable, "-c", code, command], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == expected, (command, r.stdout)

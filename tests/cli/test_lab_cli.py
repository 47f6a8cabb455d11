"""``tlswatch lab up`` as a user runs it: prints where everything is, stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from tlswatch.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


def _read_description(proc: subprocess.Popen[str]) -> dict[str, object]:
    assert proc.stdout is not None
    text = ""
    for line in proc.stdout:
        text += line
        if line.rstrip() == "}":
            break
    desc: dict[str, object] = json.loads(text)
    return desc


def test_lab_up_describes_and_stops_on_sigint(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "lab", "up", "--port", "0",
         "--now", "2019-08-01T12:00:00Z"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        desc = _read_description(proc)
        assert desc["running"] is True and desc["now"] == "2019-08-01T12:00:00Z"
        resolver = desc["resolver"]
        assert isinstance(resolver, dict) and resolver["ip"].startswith("127.")
        port = desc["port"]
        assert isinstance(port, int)
        assert Path(str(desc["store"])).exists()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    # Every port is released: the resolver address is free again.
    s = socket.socket()
    try:
        s.bind((resolver["ip"], port))
    finally:
        s.close()


def test_bad_lab_config_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "lab.toml"
    cfg.write_text('address_prefix = "10.0"\n')
    r = CliRunner().invoke(cli, ["lab", "up", "--config", str(cfg)])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and "address_prefix" in r.stderr and "lab.toml" in r.stderr

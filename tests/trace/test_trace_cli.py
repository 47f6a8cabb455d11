"""``tlswatch trace`` on the command line: usage errors, missing privileges, a real run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import require_tool
from trace_helpers import LoopbackTls

from tlswatch.cli.main import cli
from tlswatch.cli.trace import parse_target
from tlswatch.testing import CertFactory, write_store_pem


@pytest.mark.parametrize("args, message", [
    (["127.0.0.1:99999", "--sni", "a.test"], "port must be 1-65535"),
    (["[::1", "--sni", "a.test"], "missing ']'"),
    (["127.0.0.1", "--sni", "a..b"], "--sni 'a..b' is not a valid host name"),
    (["127.0.0.1", "--sni", "a.test", "--control-sni", "bad name"], "--control-sni"),
    (["127.0.0.1", "--sni", "a.test", "--store", "no-such-store"], "no-such-store"),
])
def test_usage_errors_are_one_line_exit_2(args: list[str], message: str) -> None:
    res = CliRunner().invoke(cli, ["trace", *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], res.output


def test_target_forms() -> None:
    assert parse_target("198.18.0.1") == ("198.18.0.1", None)
    assert parse_target("198.18.0.1:8443") == ("198.18.0.1", 8443)
    assert parse_target("[2001:db8::1]:443") == ("2001:db8::1", 443)
    assert parse_target("2001:db8::1") == ("2001:db8::1", None)
    assert parse_target("example.org:444") == ("example.org", 444)


def test_without_cap_net_raw_one_clear_line() -> None:
    setpriv = require_tool("setpriv")
    if os.geteuid() != 0:
        pytest.skip("needs root to drop the capability")  # non-root already lacks it
    # Dropping CAP_NET_RAW from the bounding set takes it away from the exec'd process.
    proc = subprocess.run([setpriv, "--bounding-set=-net_raw", sys.executable, "-m", "tlswatch",
                           "trace", "127.0.0.1", "--sni", "a.test", "--timeout", "0.1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs root or CAP_NET_RAW" in lines[0], proc.stderr


def test_a_loopback_run_writes_the_record_and_the_table(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("trace tests need root (raw sockets)")
        pytest.skip("needs root for raw sockets")
    f = CertFactory(seed=3)
    store = tmp_path / "store.pem"
    write_store_pem(store, [f.public_root().cert])
    srv = LoopbackTls(f, tmp_path, socket.AF_INET)
    out = tmp_path / "trace.jsonl"
    try:
        res = CliRunner().invoke(cli, [
            "trace", f"127.0.0.1:{srv.port}", "--sni", "reset.test", "--control-sni",
            "example.org", "--timeout", "0.3", "--max-ttl", "3", "--store", str(store),
            "-o", str(out), "-v"])
    finally:
        srv.close()
    assert res.exit_code == 0, res.output
    (line,) = out.read_text().splitlines()
    rec = json.loads(line)
    assert rec["target"]["port"] == srv.port and rec["located_hop"] == 1
    assert "control ttl 1: server_hello" in res.output  # -v logs each probe
    assert "injection: hop 1" in res.output
    assert "rst ttl=64" in res.output

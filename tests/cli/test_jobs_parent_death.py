"""Workers of --jobs die with the tlswatch process that forked them, even when it is killed
with SIGKILL (no orphan campaign goes on measuring)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
        return f.read().split(") ")[-1][0] != "Z"


def _wait_gone(pids: list[int], seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def test_die_with_parent(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    code = (
        "import os, sys, time\n"
        "from tlswatch.cli.jobs import die_with_parent\n"
        "me = os.getpid()\n"
        "if os.fork() == 0:\n"
        "    die_with_parent(me)\n"
        f"    open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while not pidfile.exists() or not pidfile.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child = int(pidfile.read_text())
        assert _alive(child)
        parent.kill()
        parent.wait()
        assert _wait_gone([child]) == []
    finally:
        parent.kill()


def test_die_with_parent_when_the_parent_is_already_gone() -> None:
    r = subprocess.run([sys.executable, "-c",
                        "from tlswatch.cli.jobs import die_with_parent; die_with_parent(1)"],
                       timeout=30)
    assert r.returncode == 1  # its parent is not pid 1: as if the parent had died already


def test_probe_jobs_workers_go_with_a_killed_parent(tmp_path: Path) -> None:
    """kill -9 of `tlswatch probe --jobs 2` mid-campaign: its workers are gone too."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)
    held: list[socket.socket] = []

    def accept() -> None:  # accept and never answer: every handshake waits
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    targets = tmp_path / "t.txt"
    targets.write_text("".join(f"s{i}.example.com\n" for i in range(200)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlswatch", "probe", "-i", str(targets), "--connect",
         f"127.0.0.1:{srv.getsockname()[1]}", "--timeout", "20", "--tls-timeout", "20",
         "-o", str(tmp_path / "out.jsonl"), "--jobs", "2", "--concurrency", "10"],
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        workers: list[int] = []
        while len(workers) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            workers = [int(x) for x in kids.read_text().split()] if kids.exists() else []
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _wait_gone(workers) == []
    finally:
        proc.kill()
        srv.close()
        for c in held:
            c.close()

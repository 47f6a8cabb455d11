"""Nothing of a lab survives it: normal exit, an exception, SIGTERM, SIGKILL, a failed start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tlswatch.lab.netns import NetnsConfig, NetnsError, NetnsLab
from tlswatch.lab.netns.topology import remove_lab, remove_stale_labs

from .fixture import require_netns

SMALL = NetnsConfig(hops_before_middlebox=0, hops_after_middlebox=0, targets=("facebook.com",),
                    untargeted=(), io_timeout=1.0, hold_seconds=1.0)


def leftovers(tag: str) -> list[str]:
    """Namespaces, /etc/netns entries and root-namespace links that carry ``tag``."""
    assert tag.startswith("tw")
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=True).stdout.split()
    etc = [p.name for p in Path("/etc/netns").glob(tag + "-*")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                           check=True).stdout
    return ([n for n in names if n.startswith(tag + "-")] + etc
            + [line for line in links.splitlines() if tag in line])


def wait_gone(tag: str, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := leftovers(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture(autouse=True)
def _netns() -> None:
    require_netns()


def test_normal_exit_removes_everything() -> None:
    with NetnsLab(SMALL) as lab:
        tag, workdir = lab.tag, lab.workdir
        assert len(leftovers(tag)) == len(lab.namespaces) + 1  # + /etc/netns/<client>
        assert lab.middlebox_hop == 1 and lab.server_hop == 2
        assert workdir is not None and workdir.is_dir()
    assert leftovers(tag) == []
    assert not workdir.exists()


def test_exception_inside_the_block_removes_everything() -> None:
    tag = ""
    with pytest.raises(ZeroDivisionError), NetnsLab(SMALL) as lab:
        tag = lab.tag
        assert leftovers(tag)
        1 / 0  # noqa: B018
    assert tag and leftovers(tag) == []


def _start_cli(tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    targets = tmp_path / "targets.txt"
    targets.write_text("facebook.com\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlswatch", "lab", "up", "--mode", "netns", "--hops-before", "1",
         "--hops-after", "0", "--targets", str(targets)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    text = ""
    for line in proc.stdout:  # the description is printed once everything runs
        text += line
        if line.rstrip() == "}":
            break
    if not text:
        proc.kill()
        pytest.fail(f"lab up printed nothing: {proc.communicate()[1]}")
    desc = json.loads(text)
    return proc, desc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_lab_up_netns_leaves_nothing_after_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    proc, desc = _start_cli(tmp_path)
    tag = str(desc["tag"])
    assert tag == f"tw{proc.pid}a"
    assert desc["mode"] == "netns" and desc["middlebox_hop"] == 2 and desc["server_hop"] == 3
    namespaces = desc["namespaces"]
    # Every namespace, and the client's /etc/netns entry.
    assert sorted(leftovers(tag)) == sorted([*namespaces.values(), namespaces["client"]])
    os.kill(proc.pid, sig)
    proc.wait(30)
    # SIGKILL: the lab process could not clean up; its reaper does.
    assert wait_gone(tag) == []
    assert not Path(str(desc["workdir"])).exists()
    if sig != signal.SIGKILL:
        assert proc.returncode == 0
        assert proc.stderr is not None and proc.stderr.read() == ""


def _fake_tool_dir(tmp_path: Path, omit: str) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("ip", "iptables", "ethtool", "sysctl"):
        real = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        if tool != omit and real:
            (bindir / tool).symlink_to(real)
    return bindir


def test_missing_tool_is_one_line_and_builds_nothing(tmp_path: Path) -> None:
    bindir = _fake_tool_dir(tmp_path, omit="ethtool")
    proc = subprocess.Popen([sys.executable, "-m", "tlswatch", "lab", "up", "--mode", "netns"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PATH": str(bindir)})
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert stdout == ""
    assert stderr.strip().splitlines() == [
        "tlswatch: error: ethtool missing: install ethtool (needed by the namespace lab)"]
    assert leftovers(f"tw{proc.pid}a") == []


def test_a_stale_labs_leftovers_are_removed_at_start() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid is now the owner pid of a "crashed" lab
    tag = f"tw{gone.pid}q"
    subprocess.run(["ip", "netns", "add", f"{tag}-client"], check=True)
    (Path("/etc/netns") / f"{tag}-client").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"tlswatch-{tag}-"))
    try:
        assert len(leftovers(tag)) == 2
        remove_stale_labs()  # what every NetnsLab.start() does first
        assert leftovers(tag) == []
        assert not workdir.exists()
    finally:
        remove_lab(tag)
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_kernel_feature_failing_mid_build_is_named_and_torn_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An iptables without the string match: the namespaces already exist when it fails.
    bindir = _fake_tool_dir(tmp_path, omit="iptables")
    real = subprocess.run(["which", "iptables"], capture_output=True, text=True).stdout.strip()
    fake = bindir / "iptables"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *' string '*) "
                    "echo \"iptables v1.8: Couldn't load match 'string'\" >&2; exit 2;; esac\n"
                    f'exec {real} "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    lab = NetnsLab(SMALL)
    with pytest.raises(NetnsError) as err:
        lab.start()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("iptables string match unavailable:")
    assert lab.tag and leftovers(lab.tag) == []

"""Clean teardown: ports free and no child left after stop, Ctrl-C, or a failed start."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tlswatch.lab import Lab, LabConfig, LabError, running_lab
from tlswatch.testing import FIXED_NOW

from .clients import resolve, tls_fetch


def _endpoints(desc: dict[str, Any]) -> list[tuple[str, int]]:
    port = desc["port"]
    ips = {v["origin"] for v in desc["domains"].values()}
    ips |= {v["middlebox"] for v in desc["domains"].values() if v["middlebox"]}
    ips |= {desc["blockpage"]["ip"], *desc["sslsplit"]["domains"].values()}
    return [(ip, port) for ip in sorted(ips)]


def _assert_free(desc: dict[str, Any]) -> None:
    for ip, port in _endpoints(desc):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, port))
    for key in ("resolver", "control_resolver"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((desc[key]["ip"], desc[key]["port"]))


def _gone(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_stop_frees_everything_and_start_again_works() -> None:
    cfg = LabConfig(address_prefix="127.78", port=0, now=FIXED_NOW, io_timeout=2.0)
    with running_lab(cfg) as lab:
        first = lab.describe()
        store = Path(first["store"]).read_bytes()
        origin = first["domains"]["example.org"]["origin"]
        assert tls_fetch(origin, first["port"], "example.org").body
    assert _gone(first["sslsplit"]["pid"])
    assert not os.path.exists(first["workdir"])
    _assert_free(first)
    again = LabConfig(address_prefix="127.78", port=first["port"], now=FIXED_NOW, io_timeout=2.0)
    with running_lab(again) as lab2:
        second = lab2.describe()
        assert second["port"] == first["port"]
        assert Path(second["store"]).read_bytes() == store  # deterministic PKI
        assert resolve(second["resolver"], "example.org")[0] == "NOERROR"
    _assert_free(second)


def test_failed_start_cleans_up() -> None:
    cfg = LabConfig(address_prefix="127.81", port=0, now=FIXED_NOW)
    with running_lab(cfg) as lab:
        taken = lab.describe()
        clash = LabConfig(address_prefix="127.81", port=taken["port"], now=FIXED_NOW)
        with pytest.raises(LabError), running_lab(clash):
            pass
        # the running lab was not disturbed
        mbox = taken["domains"]["example.org"]["middlebox"]
        assert tls_fetch(mbox, taken["port"], "example.org").body
    _assert_free(taken)


def test_run_lab_forever_prints_description_and_stops_on_sigint() -> None:
    code = (
        "from tlswatch.lab import LabConfig, run_lab_forever;"
        "run_lab_forever(LabConfig(address_prefix='127.79', port=0, io_timeout=2.0))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.rstrip() == "}":
                break
        desc = json.loads("".join(lines))
        assert desc["running"] is True
        assert resolve(desc["resolver"], "facebook.com")[1] == [
            desc["domains"]["facebook.com"]["middlebox"]
        ]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _gone(desc["sslsplit"]["pid"])
    _assert_free(desc)


def test_describe_before_start_is_serialisable() -> None:
    desc = Lab(LabConfig(address_prefix="127.80")).describe()
    json.dumps(desc)
    assert desc["running"] is False

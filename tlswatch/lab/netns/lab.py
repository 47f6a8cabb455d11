"""The :class:`NetnsLab` facade: start the namespaces, rules and services; describe; tear down.

Start order: host checks (no side effects) -> stale labs removed -> reaper started -> topology
-> iptables -> resolv.conf -> service nodes (in parallel). Any failure (or Ctrl-C) during the
start tears everything down again before the :class:`NetnsError` propagates.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tlswatch.lab.netns.addresses import (
    DIRECT_NET,
    INTERCEPT_NET,
    RESOLVER,
    service_ip,
)
from tlswatch.lab.netns.config import ALERTS, NetnsConfig, NetnsError
from tlswatch.lab.netns.features import Tools, check_host
from tlswatch.lab.netns.injector import INJECT_TTL
from tlswatch.lab.netns.middlebox import INTERCEPT_PORT, install_rules, iptables_rules
from tlswatch.lab.netns.topology import (
    Hop,
    Runner,
    Topology,
    new_tag,
    remove_lab,
    remove_stale_labs,
)

__all__ = ["SCHEMA", "NetnsLab", "run_netns_lab_forever"]

SCHEMA = "tlswatch-lab-netns/1"
_STOP_WAIT = 5.0


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path | None = None


class NetnsLab:
    """A lab in network namespaces; ``with NetnsLab(cfg) as lab:`` runs it for the block."""

    def __init__(self, config: NetnsConfig | None = None) -> None:
        self.config = config or NetnsConfig()
        cfg = self.config
        self._treatments = cfg.treatments()
        self._addresses: dict[str, str] = {}
        counters = {"intercept": 0, "direct": 0}
        for name, treatment in self._treatments.items():
            group = "direct" if treatment in ("reset", "alert") else "intercept"
            counters[group] += 1
            try:
                self._addresses[name] = service_ip(treatment, counters[group])
            except ValueError:
                raise NetnsError(f"NetnsConfig: too many {group} domains (> 254)") from None
        self.now = cfg.now or datetime.now(UTC).replace(hour=0, minute=0, second=0,
                                                        microsecond=0)
        self.tag = ""
        self.topology: Topology | None = None
        self.workdir: Path | None = None
        self._own_workdir = False
        self._tools: Tools | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._nodes: list[_Child] = []
        self._rules: list[str] = []
        self._resolv_conf: Path | None = None
        self.started = False

    # -- the API -------------------------------------------------------------------------

    def _topo(self) -> Topology:
        if self.topology is None:
            raise NetnsError("the namespace lab is not started")
        return self.topology

    @property
    def client_ns(self) -> str:
        return self._topo().ns("client")

    @property
    def namespaces(self) -> tuple[str, ...]:
        return self._topo().namespaces

    @property
    def hops(self) -> tuple[Hop, ...]:
        return self._topo().hops

    @property
    def middlebox_hop(self) -> int:
        return self.config.hops_before_middlebox + 1

    @property
    def server_hop(self) -> int:
        return self.config.hops_before_middlebox + self.config.hops_after_middlebox + 2

    @property
    def middlebox_ns(self) -> str:
        return self._topo().ns("mb")

    @property
    def server_ns(self) -> str:
        return self._topo().ns("server")

    @property
    def client_ip(self) -> str:
        return self._topo().client_ip

    @property
    def resolver(self) -> str:
        return RESOLVER

    @property
    def store_path(self) -> Path:
        if self.workdir is None:
            raise NetnsError("the namespace lab is not started")
        return self.workdir / "server" / "lab-public-root.pem"

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self._treatments)

    def address_of(self, domain: str) -> str:
        """The server-namespace address of ``domain``'s origin (``www.`` names too)."""
        return self._addresses[self._known(domain)]

    def treatment(self, domain: str) -> str:
        """"intercept" | "reset" | "alert" | "pass"."""
        return self._treatments[self._known(domain)]

    def _known(self, domain: str) -> str:
        name = domain.lower().rstrip(".")
        if name not in self._treatments and name.startswith("www."):
            name = name[4:]
        if name not in self._treatments:
            raise KeyError(f"{domain} is not a lab domain")
        return name

    def exec_argv(self, ns: str, argv: list[str]) -> list[str]:
        """``argv`` run inside namespace ``ns`` (and its /etc/netns resolv.conf)."""
        return ["ip", "netns", "exec", ns, *argv]

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> NetnsLab:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> dict[str, Any]:
        """Build and start everything; returns :meth:`describe`. Raises :class:`NetnsError`."""
        if self.started or self.topology is not None:
            raise NetnsError("the namespace lab is already started")
        cfg = self.config
        tools = self._tools = check_host()
        remove_stale_labs(tools.ip)
        self.tag = new_tag()
        topo = self.topology = Topology(self.tag, cfg.hops_before_middlebox,
                                        cfg.hops_after_middlebox)
        try:
            if cfg.workdir is None:
                self.workdir = Path(tempfile.mkdtemp(prefix=f"tlswatch-{self.tag}-"))
                self._own_workdir = True
            else:
                self.workdir = cfg.workdir
                self.workdir.mkdir(parents=True, exist_ok=True)
            self._start_reaper(tools)
            runner = Runner(tools)
            topo.build(runner, [RESOLVER, *self._addresses.values()])
            reset = tuple(d for d, t in self._treatments.items() if t == "reset")
            alert = tuple(d for d, t in self._treatments.items() if t == "alert")
            self._rules = install_rules(runner, topo.ns("mb"),
                                        iptables_rules(topo, reset, alert))
            self._resolv_conf = topo.write_resolv_conf("client", RESOLVER)
            self._start_nodes(reset, alert)
            self._check_reaper()
        except BaseException:
            self.stop()
            raise
        self.started = True
        return self.describe()

    def _start_reaper(self, tools: Tools) -> None:
        workdir = str(self.workdir) if self._own_workdir else ""
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "tlswatch.lab.netns.reaper", self.tag, workdir, tools.ip],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _check_reaper(self) -> None:
        reaper = self._reaper
        assert reaper is not None and reaper.stdout is not None
        line = _read_line(reaper.stdout, self.config.start_timeout)
        if line.strip() != b"ready":
            raise NetnsError("the lab's reaper did not start (teardown on a crash would fail)")

    def _spec_file(self, name: str, spec: dict[str, Any]) -> Path:
        assert self.workdir is not None
        path = self.workdir / f"{name}.json"
        path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
        return path

    def _start_nodes(self, reset: tuple[str, ...], alert: tuple[str, ...]) -> None:
        cfg, topo, workdir = self.config, self._topo(), self.workdir
        assert workdir is not None and self._tools is not None
        common = {"seed": cfg.seed, "now": self.now.isoformat(), "send_kz_root": cfg.send_kz_root,
                  "io_timeout": cfg.io_timeout, "hold_seconds": cfg.hold_seconds}
        specs = {
            "server": {**common, "role": "server", "workdir": str(workdir / "server"),
                       "origins": self._addresses, "resolver": RESOLVER},
            "mb": {**common, "role": "middlebox", "workdir": str(workdir / "mb"),
                   "targets": [d for d, t in self._treatments.items() if t == "intercept"],
                   "listen_port": INTERCEPT_PORT,
                   "iface": topo.facing_client(topo.middlebox_hop),
                   "reset": list(reset), "alert": list(alert),
                   "alert_description": ALERTS[cfg.alert]},
        }
        for node, spec in specs.items():
            log = workdir / f"{node}.log"
            with log.open("wb") as err:
                proc = subprocess.Popen(
                    [self._tools.ip, "netns", "exec", topo.ns(node), sys.executable, "-m",
                     "tlswatch.lab.netns.node", str(self._spec_file(node, spec))],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                    start_new_session=True,  # Ctrl-C reaches the lab, which stops the nodes
                )
            self._nodes.append(_Child(node, proc, log))
        deadline = time.monotonic() + cfg.start_timeout
        for child in self._nodes:
            assert child.proc.stdout is not None
            line = _read_line(child.proc.stdout, max(0.1, deadline - time.monotonic()))
            try:
                msg = json.loads(line) if line else {}
            except ValueError:
                msg = {}
            if not msg.get("ready"):
                why = msg.get("error") or _tail(child.log) or "no answer"
                raise NetnsError(f"lab {child.name} node in {topo.ns(child.name)} did not "
                                 f"start: {why}")

    def stop(self) -> None:
        """Stop the nodes, tear the namespaces down, remove the workdir. Idempotent."""
        for child in self._nodes:
            if child.proc.poll() is None:
                with contextlib.suppress(OSError):
                    child.proc.terminate()
        for child in self._nodes:
            try:
                child.proc.wait(_STOP_WAIT)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
            for stream in (child.proc.stdin, child.proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self._nodes.clear()
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            assert reaper.stdin is not None
            with contextlib.suppress(OSError):
                reaper.stdin.close()  # the reaper's cue
            try:
                reaper.wait(30)
            except subprocess.TimeoutExpired:
                reaper.kill()
                reaper.wait()
            if reaper.stdout is not None:
                reaper.stdout.close()
        # Whatever the reaper did (or if it never ran), nothing of this lab may remain.
        if self.tag:
            remove_lab(self.tag, self._tools.ip if self._tools else "ip")
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._own_workdir = False
        self.started = False

    # -- description ---------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Where everything is (JSON-serialisable); see docs/lab-netns.md for the keys."""
        topo = self._topo()
        cfg = self.config
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "mode": "netns",
            "running": self.started,
            "tag": self.tag,
            "seed": cfg.seed,
            "now": self.now.isoformat().replace("+00:00", "Z"),
            "namespaces": {node: topo.ns(node) for node in topo.nodes},
            "client": {"ns": self.client_ns, "ip": self.client_ip,
                       "resolv_conf": str(self._resolv_conf) if self._resolv_conf else None},
            "hops": [{"index": h.index, "name": h.name, "ns": h.ns, "ip": h.ip}
                     for h in self.hops],
            "middlebox_hop": self.middlebox_hop,
            "server_hop": self.server_hop,
            "resolver": {"ip": RESOLVER, "port": 53, "transports": ["udp", "tcp"],
                         "ns": self.server_ns},
            "port": 443,
            "workdir": str(self.workdir) if self.workdir else None,
            "store": str(self.store_path) if self.workdir else None,
            "domains": {d: {"treatment": t, "ip": self._addresses[d]}
                        for d, t in self._treatments.items()},
            "middlebox": {
                "ns": self.middlebox_ns,
                "interceptor": {"kind": "kz2019", "trigger": "sni in targets",
                                "redirected": INTERCEPT_NET, "port": INTERCEPT_PORT},
                "injector": {"reset": [d for d, t in self._treatments.items() if t == "reset"],
                             "alert": [d for d, t in self._treatments.items() if t == "alert"],
                             "alert_description": cfg.alert, "ip_ttl": INJECT_TTL,
                             "direct": DIRECT_NET},
                "iptables": list(self._rules),
            },
            "usage": {
                "probe": " ".join(self.exec_argv(self.client_ns, ["tlswatch", "probe", "SNI",
                                                                  "--connect", "IP"])),
                "capture": " ".join(self.exec_argv(self.client_ns, ["tcpdump", "-i", "any"])),
            },
        }
        root = self._public_root()
        if root is not None:
            der = root.public_bytes(serialization.Encoding.DER)
            out["public_root"] = {"subject": root.subject.rfc4514_string(),
                                  "sha256": hashlib.sha256(der).hexdigest()}
        return out

    def _public_root(self) -> x509.Certificate | None:
        with contextlib.suppress(OSError, ValueError):
            if self.workdir is not None:
                return x509.load_pem_x509_certificate(self.store_path.read_bytes())
        return None


def _read_line(stream: IO[bytes], timeout: float) -> bytes:
    """One line from a child's stdout pipe, or b"" after ``timeout`` seconds."""
    fd = stream.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b""
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf


def _tail(log: Path | None) -> str:
    if log is None:
        return ""
    with contextlib.suppress(OSError):
        lines = log.read_text(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else ""
    return ""


def run_netns_lab_forever(config: NetnsConfig | None = None, out: IO[str] | None = None) -> int:
    """``tlswatch lab up --mode netns``: start, print the description, run until SIGINT/SIGTERM.

    Teardown runs with both signals ignored (a second Ctrl-C cannot cut it short); a SIGKILL
    is covered by the reaper.
    """
    stream = out or sys.stdout

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    lab = NetnsLab(config)
    try:
        desc = lab.start()
        stream.write(json.dumps(desc, indent=2) + "\n")
        stream.flush()
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        lab.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0

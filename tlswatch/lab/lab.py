"""The lab: every service in one asyncio process, started and stopped as a unit.

``Lab(config)`` with ``await start()`` / ``await stop()`` and ``describe()``;
:func:`running_lab` runs one in a background thread for tests and scripts;
:func:`run_lab_forever` is ``tlswatch lab up`` (prints the description, waits for a signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from cryptography.hazmat.primitives import serialization

from tlswatch.lab.addresses import AddressPlan
from tlswatch.lab.blockers import blockpage_server_handler
from tlswatch.lab.config import HOSTILE_KINDS, LabConfig, LabConfigError, default_targets_path
from tlswatch.lab.dns_server import DnsServer, DnsView
from tlswatch.lab.hostile import HostileServers
from tlswatch.lab.interceptor import SNI_METHODS, Middlebox
from tlswatch.lab.origins import OriginServer
from tlswatch.lab.pki import LabPKI
from tlswatch.lab.serving import RawServer
from tlswatch.lab.sslsplit import SslsplitProcess, SslsplitStatus, find_sslsplit
from tlswatch.lab.wire import listen_tcp

__all__ = ["SCHEMA", "Lab", "LabError", "hostile_domain", "run_lab_forever", "running_lab"]

SCHEMA = "tlswatch-lab/1"
_PORT_ATTEMPTS = 8


class LabError(RuntimeError):
    """The lab could not start (e.g. an address is taken, or sslsplit is required but missing)."""


def hostile_domain(kind: str) -> str:
    return f"hostile-{kind}.test"


def _sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


class Lab:
    def __init__(self, config: LabConfig | None = None) -> None:
        self.config = config or LabConfig()
        cfg = self.config
        self.plan = AddressPlan(cfg.address_prefix)
        self.targets = cfg.targets()
        self.blocked = cfg.blocked()
        names: list[str] = []
        for group in (
            self.targets,
            cfg.untargeted,
            cfg.incountry,
            cfg.sslsplit_domains,
            cfg.private_ca_domains,
            self.blocked,
        ):
            names += [n for n in group if n not in names]
        if len(names) > 254:
            raise LabConfigError(f"LabConfig: too many lab domains ({len(names)} > 254)")
        self.index = {name: i for i, name in enumerate(names, 1)}
        self.now = cfg.now or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.port = -1
        self.dns_port = -1
        self.workdir: Path | None = None
        self._own_workdir = False
        self.pki: LabPKI | None = None
        self.middlebox: Middlebox | None = None
        self._origins: list[OriginServer] = []
        self._raw: list[RawServer] = []
        self._dns: list[DnsServer] = []
        self._sslsplit: SslsplitProcess | None = None
        self.sslsplit_status = SslsplitStatus("disabled" if cfg.sslsplit == "off" else "stopped")
        self.started = False

    # -- address helpers ---------------------------------------------------------------

    def origin_ip(self, name: str) -> str | None:
        name = name.lower().rstrip(".")
        i = self.index.get(name)
        if i is None and name.startswith("www."):
            i = self.index.get(name[4:])
        return None if i is None else self.plan.origin(i)

    def _hostile_ips(self) -> dict[str, str]:
        return {kind: self.plan.hostile(k) for k, kind in enumerate(HOSTILE_KINDS, 1)}

    def _sslsplit_ips(self) -> dict[str, str]:
        return {d: self.plan.sslsplit(j) for j, d in enumerate(self.config.sslsplit_domains, 1)}

    def censored_answer(self, name: str) -> tuple[str, str | None]:
        method = self.blocked.get(name)
        if method == "dns_nxdomain":
            return ("nxdomain", None)
        if method == "dns_zero":
            return ("a", "0.0.0.0")
        if method == "dns_blockpage":
            return ("a", self.plan.blockpage)
        if name in self._sslsplit_ips() and self.sslsplit_status.status == "running":
            return ("a", self._sslsplit_ips()[name])
        return ("a", self.plan.middlebox(self.index[name]))

    def _views(self) -> tuple[DnsView, DnsView]:
        censored: dict[str, tuple[str, str | None]] = {
            n: self.censored_answer(n) for n in self.index
        }
        control: dict[str, tuple[str, str | None]] = {
            n: ("a", self.plan.origin(i)) for n, i in self.index.items()
        }
        for kind, ip in self._hostile_ips().items():
            censored[hostile_domain(kind)] = control[hostile_domain(kind)] = ("a", ip)
        return DnsView("censored", censored), DnsView("control", control)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> dict[str, Any]:
        """Start every service; returns :meth:`describe`. Cleans up and raises on failure."""
        if self.started:
            raise LabError("lab already started")
        cfg = self.config
        if cfg.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="tlswatch-lab-"))
            self._own_workdir = True
        else:
            self.workdir = cfg.workdir
            self.workdir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        try:
            workdir = self.workdir
            # Key derivation is pure Python; keep the loop responsive.
            self.pki = await loop.run_in_executor(
                None, lambda: LabPKI(cfg.seed, self.now, workdir, cfg.send_kz_root)
            )
            contexts = await loop.run_in_executor(
                None, lambda: {d: self._origin_ctx(d) for d in self.index}
            )
            wanted = cfg.resolved_port()
            for attempt in range(_PORT_ATTEMPTS):
                self.port = wanted or _free_port(self.plan.resolver)
                self.dns_port = (
                    cfg.dns_port
                    if cfg.dns_port is not None
                    else (53 if wanted == 443 else self.port)
                )
                try:
                    await self._start_services(contexts)
                    break
                except OSError as exc:
                    await self._stop_services()
                    if wanted or exc.errno != errno.EADDRINUSE or attempt == _PORT_ATTEMPTS - 1:
                        raise LabError(f"cannot bind the lab's addresses: {exc}") from exc
            await self._start_sslsplit()
            # DNS last: its censored view depends on whether sslsplit runs.
            censored, control = self._views()
            self._dns = [
                DnsServer(censored, self.plan.resolver, self.dns_port),
                DnsServer(control, self.plan.control_resolver, self.dns_port),
            ]
            for server in self._dns:
                await server.start()
        except BaseException:
            await self.stop()
            raise
        self.started = True
        return self.describe()

    def _origin_ctx(self, domain: str) -> Any:
        assert self.pki is not None
        return self.pki.origin_context(domain, private=domain in self.config.private_ca_domains)[0]

    async def _start_services(self, contexts: dict[str, Any]) -> None:
        cfg, plan, pki = self.config, self.plan, self.pki
        assert pki is not None
        for domain, i in self.index.items():
            origin = OriginServer(
                domain, plan.origin(i), self.port, contexts[domain], cfg.io_timeout
            )
            self._origins.append(origin)
            await origin.start()
        self.middlebox = Middlebox(
            pki=pki,
            targets=frozenset(self.targets),
            origin_of=self.origin_ip,
            address_origin={plan.middlebox(i): plan.origin(i) for i in self.index.values()},
            sni_blockers={d: m for d, m in self.blocked.items() if m in SNI_METHODS},
            port=self.port,
            io_timeout=cfg.io_timeout,
            hold_seconds=cfg.hold_seconds,
        )
        mbox = RawServer("middlebox", self.middlebox.handle)
        self._raw.append(mbox)
        for domain, i in self.index.items():
            if self.blocked.get(domain) != "refused":  # refused: nothing listens -> RST
                mbox.add(listen_tcp(plan.middlebox(i), self.port))
        blockpage = RawServer("blockpage", blockpage_server_handler)
        self._raw.append(blockpage)
        blockpage.add(listen_tcp(plan.blockpage, self.port))
        ips = self._hostile_ips()
        hostile = HostileServers(
            pki,
            {ip: kind for kind, ip in ips.items()},
            {kind: hostile_domain(kind) for kind in ips},
            cfg.hold_seconds,
            cfg.slow_interval,
            cfg.io_timeout,
        )
        hraw = RawServer("hostile", hostile.handle)
        self._raw.append(hraw)
        for ip in ips.values():
            hraw.add(listen_tcp(ip, self.port))

    async def _start_sslsplit(self) -> None:
        cfg = self.config
        if cfg.sslsplit == "off" or not cfg.sslsplit_domains:
            self.sslsplit_status = SslsplitStatus("disabled")
            return
        binary = find_sslsplit()
        if binary is None:
            if cfg.sslsplit == "required":
                raise LabError("sslsplit is required but not installed (apt-get install sslsplit)")
            self.sslsplit_status = SslsplitStatus("missing", "sslsplit not found on PATH")
            return
        assert self.pki is not None and self.workdir is not None
        cert, key, _ = self.pki.sslsplit_ca()
        routes = {ip: self.origin_ip(d) or "" for d, ip in self._sslsplit_ips().items()}
        proc = SslsplitProcess(binary, cert, key, routes, self.port, self.workdir)
        try:
            await proc.start()
        except (RuntimeError, OSError) as exc:
            if cfg.sslsplit == "required":
                raise LabError(str(exc)) from exc
            self.sslsplit_status = SslsplitStatus("failed", str(exc)[:300])
            return
        self._sslsplit = proc
        pid = proc.proc.pid if proc.proc else None
        self.sslsplit_status = SslsplitStatus("running", "", pid, routes)

    async def _stop_services(self) -> None:
        for raw in self._raw:
            await raw.close()
        self._raw.clear()
        for origin in self._origins:
            await origin.close()
        self._origins.clear()

    async def stop(self) -> None:
        """Release every port, task, child process and (own) temp dir. Idempotent."""
        if self._sslsplit is not None:
            await self._sslsplit.stop()
            self._sslsplit = None
            if self.sslsplit_status.status == "running":
                self.sslsplit_status = SslsplitStatus("stopped")
        for dns in self._dns:
            await dns.close()
        self._dns.clear()
        await self._stop_services()
        if self.pki is not None:
            pki = self.pki
            await asyncio.get_running_loop().run_in_executor(None, pki.close)
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._own_workdir = False
        self.started = False

    # -- description ---------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Where everything is (JSON-serialisable); see the package docstring for the keys."""
        cfg, plan, pki = self.config, self.plan, self.pki
        port = self.port
        sslsplit_ips = self._sslsplit_ips()
        domains: dict[str, Any] = {}
        target_set = set(self.targets)
        for name, i in self.index.items():
            method = self.blocked.get(name)
            kind, ip = self.censored_answer(name)
            if method is not None:
                role, path = "blocked", "blocker:" + method
            elif name in sslsplit_ips:
                role = "sslsplit"
                path = "sslsplit" if self.sslsplit_status.status == "running" else "splice"
            elif name in target_set:
                role, path = "target", "kz2019"
            elif name in cfg.incountry:
                role, path = "incountry", "splice"
            elif name in cfg.private_ca_domains:
                role, path = "private_ca", "splice"
            else:
                role, path = "untargeted", "splice"
            domains[name] = {
                "role": role,
                "path": path,
                "origin": plan.origin(i),
                "middlebox": None if method == "refused" else plan.middlebox(i),
                "answer": ip if kind == "a" else kind,
                "control_answer": plan.origin(i),
                "blocker": method,
            }
        for kind_name, ip in self._hostile_ips().items():
            domains[hostile_domain(kind_name)] = {
                "role": "hostile",
                "path": "hostile:" + kind_name,
                "origin": ip,
                "middlebox": None,
                "answer": ip,
                "control_answer": ip,
                "blocker": None,
            }
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "running": self.started,
            "seed": cfg.seed,
            "now": self.now.isoformat().replace("+00:00", "Z"),
            "address_prefix": cfg.address_prefix,
            "port": port,
            "resolver": {"ip": plan.resolver, "port": self.dns_port, "transports": ["udp", "tcp"]},
            "control_resolver": {
                "ip": plan.control_resolver,
                "port": self.dns_port,
                "transports": ["udp", "tcp"],
            },
            "workdir": str(self.workdir) if self.workdir else None,
            "store": str(pki.store_path) if pki else None,
            "targets": {
                "file": str(cfg.targets_file or default_targets_path()),
                "domains": list(self.targets),
            },
            "incountry": {
                d: {"ip": plan.middlebox(self.index[d]), "origin": plan.origin(self.index[d])}
                for d in cfg.incountry
            },
            "domains": domains,
            "blockers": {m: list(ds) for m, ds in cfg.blockers.items()},
            "blockpage": {"ip": plan.blockpage, "port": port},
            "hostile": {
                k: {"domain": hostile_domain(k), "ip": ip, "port": port}
                for k, ip in self._hostile_ips().items()
            },
            "sslsplit": {
                "status": self.sslsplit_status.status,
                "detail": self.sslsplit_status.detail,
                "pid": self.sslsplit_status.pid,
                "domains": {d: ip for d, ip in sslsplit_ips.items()},
            },
        }
        if pki is not None:
            der = serialization.Encoding.DER
            out["public_root"] = {
                "subject": pki.public_root.cert.subject.rfc4514_string(),
                "sha256": _sha256(pki.public_root.cert.public_bytes(der)),
            }
            out["interceptor"] = {
                "kind": "kz2019",
                "trigger": "sni in targets",
                "chain": [c.subject.rfc4514_string() for c in pki.kz_chain()],
                "sends_root": cfg.send_kz_root,
                "root_sha256": _sha256(pki.kz_root.cert.public_bytes(der)),
                "intermediate_sha256": _sha256(pki.kz_ca.cert.public_bytes(der)),
            }
            if self.sslsplit_status.status in ("running", "stopped"):
                _, _, ca = pki.sslsplit_ca()
                out["sslsplit"]["ca_subject"] = ca.subject.rfc4514_string()
                out["sslsplit"]["ca_sha256"] = _sha256(ca.public_bytes(der))
        return out

    def counts(self) -> dict[str, int]:
        """What the middlebox did so far (intercepted, spliced, reset, ...)."""
        return dict(self.middlebox.counts) if self.middlebox else {}


def _free_port(ip: str) -> int:
    # Free for TCP and UDP on one lab address; the others are practically always free too,
    # and a clash is retried with another port.
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((ip, 0))
            port = int(t.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind((ip, port))
            except OSError:
                continue
        return port


@contextlib.contextmanager
def running_lab(config: LabConfig | None = None, start_timeout: float = 120.0) -> Iterator[Lab]:
    """Run a lab on a background event loop thread for the ``with`` block (tests, scripts)."""
    lab = Lab(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="tlswatch-lab", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(lab.start(), loop).result(start_timeout)
        yield lab
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(lab.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def run_lab_forever(config: LabConfig | None = None, out: TextIO | None = None) -> int:
    """``tlswatch lab up``: start, print the JSON description, run until SIGINT/SIGTERM."""
    stream = out or sys.stdout

    async def main() -> None:
        lab = Lab(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            desc = await lab.start()
            stream.write(json.dumps(desc, indent=2) + "\n")
            stream.flush()
            await stop.wait()
        finally:
            await lab.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0

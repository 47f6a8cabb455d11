"""The lab's services inside one namespace, as a child process.

Python 3.11 has no ``os.setns``, so each namespace that runs services gets its own process,
started as ``ip netns exec NS python -m tlswatch.lab.netns.node SPEC.json``:

- ``server``: one TLS origin per lab domain (own address, chain from the lab "public" CA)
  and the lab resolver (UDP+TCP 53) answering the origins' addresses;
- ``middlebox``: the interceptor behind the REDIRECT, and the injector's sniffer.

A node prints one JSON line on stdout (``{"ready": ...}`` or ``{"error": "..."}``) and runs
until SIGTERM/SIGINT or until its stdin closes (the lab process died).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from tlswatch.lab.dns_server import DnsServer, DnsView
from tlswatch.lab.interceptor import Middlebox
from tlswatch.lab.netns.addresses import is_netns_lab_address
from tlswatch.lab.netns.injector import Injector
from tlswatch.lab.netns.middlebox import original_destination
from tlswatch.lab.origins import OriginServer
from tlswatch.lab.pki import LabPKI
from tlswatch.lab.serving import RawServer
from tlswatch.lab.wire import listen_tcp

__all__ = ["main", "run_node"]

TLS_PORT = 443
DNS_PORT = 53


def _pki(spec: dict[str, Any]) -> LabPKI:
    return LabPKI(int(spec["seed"]), datetime.fromisoformat(spec["now"]), Path(spec["workdir"]),
                  bool(spec["send_kz_root"]))


async def _server(spec: dict[str, Any], stop: asyncio.Event) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pki = await loop.run_in_executor(None, _pki, spec)
    origins: list[OriginServer] = []
    dns: DnsServer | None = None
    try:
        for domain, ip in spec["origins"].items():
            ctx, _ = pki.origin_context(domain)
            origin = OriginServer(domain, ip, TLS_PORT, ctx, float(spec["io_timeout"]))
            origins.append(origin)
            await origin.start()
        view = DnsView("netns", {d: ("a", ip) for d, ip in spec["origins"].items()},
                       allowed=is_netns_lab_address)
        dns = DnsServer(view, spec["resolver"], DNS_PORT)
        await dns.start()
        _ready({"store": str(pki.store_path), "origins": len(origins)})
        await stop.wait()
    finally:
        if dns is not None:
            await dns.close()
        for origin in origins:
            await origin.close()
        pki.close()
    return {}


async def _middlebox(spec: dict[str, Any], stop: asyncio.Event) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pki = await loop.run_in_executor(None, _pki, spec)
    injector = Injector(spec["iface"], spec["reset"], spec["alert"],
                        int(spec["alert_description"]), int(spec["seed"]))
    mbox = Middlebox(
        pki=pki,
        targets=frozenset(spec["targets"]),
        origin_of=lambda _sni: None,
        address_origin={},
        sni_blockers={},
        port=TLS_PORT,
        io_timeout=float(spec["io_timeout"]),
        hold_seconds=float(spec["hold_seconds"]),
        upstream_of=original_destination,
    )
    raw = RawServer("netns-middlebox", mbox.handle)
    try:
        raw.add(listen_tcp("0.0.0.0", int(spec["listen_port"])))
        await loop.run_in_executor(None, injector.start)
        _ready({"listen_port": int(spec["listen_port"]), "iface": spec["iface"]})
        await stop.wait()
    finally:
        await raw.close()
        await loop.run_in_executor(None, injector.stop)
        await loop.run_in_executor(None, pki.close)
    return {"intercepted": dict(mbox.counts), "injected": dict(injector.counts)}


def _ready(info: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), **info}) + "\n")
    sys.stdout.flush()


async def run_node(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one node until told to stop; returns its counters."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def stdin_event() -> None:
        try:
            data = os.read(0, 4096)
        except OSError:
            data = b""
        if not data:  # the lab process is gone: stop rather than outlive it
            loop.remove_reader(0)
            stop.set()

    with contextlib.suppress(OSError, ValueError):
        loop.add_reader(0, stdin_event)
    role = spec["role"]
    if role == "server":
        return await _server(spec, stop)
    if role == "middlebox":
        return await _middlebox(spec, stop)
    raise ValueError(f"unknown node role {role!r}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m tlswatch.lab.netns.node SPEC.json\n")
        return 2
    try:
        spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        counts = asyncio.run(run_node(spec))
    except Exception as exc:
        line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        with contextlib.suppress(OSError):
            sys.stdout.write(json.dumps({"error": line}) + "\n")
            sys.stdout.flush()
        return 1
    sys.stderr.write(json.dumps({"counts": counts}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

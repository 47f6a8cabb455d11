"""``tlswatch lab demo``: start the lab, probe every lab domain through it with a control path,
and show that the verdicts come out right.

The probe and the verdict engine know nothing of the lab (DESIGN.md §2): the demo hands them
only what a researcher would have — a resolver, a control resolver, a store — and compares
their verdicts with what the lab did to each domain. Two measurement styles run: resolve and
connect (every domain), and an in-country host's address with a targeted SNI (the Censored
Planet method).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tlswatch.classify.chain import ChainJudge
from tlswatch.classify.rules import RULES_VERSION
from tlswatch.ids import new_run_id
from tlswatch.lab.lab import LabError
from tlswatch.model import Record
from tlswatch.probe.campaign import CampaignOptions, ControlSpec, run_campaign
from tlswatch.probe.dns import LAB_BOGONS
from tlswatch.probe.inputs import TargetSpec, VantageSpec, make_task
from tlswatch.probe.inputs import Task as ProbeTask
from tlswatch.probe.measure import Timeouts
from tlswatch.probe.packet_capture import CaptureUnavailable, PacketCapture
from tlswatch.probe.runrecord import closing_run_record, run_record
from tlswatch.probe.tls_client import KeyLog
from tlswatch.sinks.jsonl import JsonlWriter
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import load_store

__all__ = ["DemoRow", "expected_verdict", "run_demo"]

def expected_verdict(lab_path: str) -> str | None:
    """The verdict a correct detector gives for what the lab did on a domain's path.

    Keyed by the path, not the role: without sslsplit installed its domains are spliced,
    and a spliced domain is ``ok`` whoever serves it (a private CA seen the same on the
    control path included).
    """
    if lab_path in ("kz2019", "sslsplit"):
        return "intercepted"
    if lab_path == "splice":
        return "ok"
    if lab_path.startswith("blocker:"):
        return "blocked"
    return None


@dataclass(frozen=True, slots=True)
class DemoRow:
    domain: str
    style: str  # "resolve" or "via <in-country host>"
    lab_path: str  # what the lab did (kz2019, splice, blocker:reset ...)
    expected: str | None
    record: Record

    @property
    def ok(self) -> bool:
        return self.expected is None or self.record.verdict == self.expected


@dataclass(slots=True)
class DemoResult:
    rows: list[DemoRow] = field(default_factory=list)
    out_dir: Path | None = None
    capture: Path | None = None
    capture_note: str = ""
    elapsed_s: float = 0.0

    @property
    def failures(self) -> list[DemoRow]:
        return [r for r in self.rows if not r.ok]


def _tasks(desc: dict[str, Any],
           port: int) -> Iterator[tuple[ProbeTask, str, str, str | None, str | None]]:
    """(task, style, lab path, expected verdict, control SNI) for every domain, resolved,
    and for a targeted and an untargeted SNI sent to each in-country host's address.

    The in-country style is controlled by the host's own name to the same address (an SNI
    control, as Censored Planet does); the resolved style by the control resolver.
    """
    domains: dict[str, dict[str, Any]] = desc["domains"]
    for name, d in domains.items():
        if d["role"] == "hostile" or name.startswith("www."):
            continue
        task = make_task(TargetSpec(name, "lab"), None, port=port, send_sni=True)
        yield task, "resolve", d["path"], expected_verdict(d["path"]), None
    targeted = next(n for n, d in domains.items() if d["role"] == "target")
    untargeted = next(n for n, d in domains.items() if d["role"] == "untargeted")
    for host, info in desc["incountry"].items():
        vantage = VantageSpec(name=host, ip=info["ip"], port=port)
        for sni in (targeted, untargeted):
            task = make_task(TargetSpec(sni, "lab"), vantage, port=port, send_sni=True)
            role = domains[sni]["role"]
            path = "kz2019" if role == "target" else "splice"
            yield task, f"via {host}", path, expected_verdict(path), host


class _LabProcess:
    """``tlswatch lab up`` as a child process, as a researcher would run it.

    A separate process keeps the lab's forging and relaying off the probe's interpreter
    (and its GIL), so probe timings are what a real client would see.
    """

    def __init__(self, lab_args: Sequence[str], start_timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tlswatch", "lab", "up", *lab_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        text = ""
        deadline = time.monotonic() + start_timeout
        for line in self.proc.stdout:
            text += line
            if line.rstrip() == "}" or time.monotonic() > deadline:
                break
        try:
            self.desc: dict[str, Any] = json.loads(text)
        except ValueError:
            self.stop()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise LabError(f"the lab did not start: {err.strip() or 'no description'}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_demo(out_dir: Path, lab_args: Sequence[str] = (), *, tls_timeout: float = 3.0,
             concurrency: int = 16, command: tuple[str, ...] = (),
             log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> DemoResult:
    """Run the whole show; results, capture and key log go to ``out_dir``.

    ``lab_args`` are ``tlswatch lab up`` options (``--config``, ``--seed`` …).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    result = DemoResult(out_dir=out_dir)
    t0 = time.monotonic()
    lab = _LabProcess(lab_args)
    try:
        desc = lab.desc
        port = int(desc["port"])
        # The store that trusts the lab's "public" CA, so the capture can be analysed later.
        shutil.copyfile(desc["store"], out_dir / "lab-public-root.pem")
        log(f"lab up on {desc['address_prefix']}.0.0/16 port {port}; "
            f"sslsplit {desc['sslsplit']['status']}")
        cap: PacketCapture | None = None
        try:
            cap = PacketCapture(out_dir / "demo.pcap", f"net {desc['address_prefix']}.0.0/16",
                                interface="lo")
            result.capture = cap.path
        except CaptureUnavailable as e:
            result.capture_note = f"no capture: {e}"
        try:
            rows = _probe(desc, port, out_dir, tls_timeout, concurrency, command, log)
        finally:
            if cap is not None:
                cap.stop()
    finally:
        lab.stop()
    result.rows = rows
    result.elapsed_s = time.monotonic() - t0
    return result


def _probe(desc: dict[str, Any], port: int, out_dir: Path, tls_timeout: float,
           concurrency: int, command: tuple[str, ...],
           log: Callable[[str], None]) -> list[DemoRow]:
    resolver = (desc["resolver"]["ip"], int(desc["resolver"]["port"]))
    control = (desc["control_resolver"]["ip"], int(desc["control_resolver"]["port"]))
    store = load_store(str(desc["store"]))
    registry = load_registry()
    judge = ChainJudge([store], registry)
    planned = list(_tasks(desc, port))
    by_id = {t.id: (t, style, path, exp) for t, style, path, exp, _ in planned}
    groups: dict[str | None, list[ProbeTask]] = {}
    for t, *_, control_sni in planned:
        groups.setdefault(control_sni, []).append(t)
    started = datetime.now(UTC)
    run_id = new_run_id(started)
    opening = run_record(run_id=run_id, started=started, command=command or ("lab", "demo"),
                         rules_version=RULES_VERSION, registry_version=registry.version,
                         stores=[(store.name, store.version)])
    results: dict[str, Record] = {}
    timeouts = Timeouts(dns=2.0, connect=2.0, tls=tls_timeout, http=tls_timeout,
                        overall=3 * tls_timeout + 2)
    with JsonlWriter(out_dir / "results.jsonl", batch=1) as sink, \
            KeyLog(out_dir / "keylog.txt") as keylog:
        sink.write(opening)
        log(f"probing {len(planned)} measurements, each with a control ...")
        for control_sni, tasks in groups.items():
            spec = (ControlSpec(kind="resolver", resolver=control) if control_sni is None
                    else ControlSpec(kind="sni", sni=control_sni))
            options = CampaignOptions(
                resolver=resolver, control=spec, timeouts=timeouts, bogons=LAB_BOGONS,
                keylog=keylog, http=True, concurrency=concurrency)
            asyncio.run(run_campaign(
                tasks, options, sink, judge=judge, run_id=run_id,
                on_record=lambda rec: results.__setitem__(rec.id, rec)))
        sink.write(closing_run_record(opening, datetime.now(UTC)))
    rows = []
    for rid, (task, style, path, exp) in by_id.items():
        rec = results.get(rid)
        if rec is not None:
            rows.append(DemoRow(task.domain, style, path, exp, rec))
    rows.sort(key=lambda r: (r.style != "resolve", r.lab_path, r.domain))
    return rows

"""``tlswatch lab demo --mode netns``: the namespace lab, measured with the public commands.

Everything runs as a researcher would run it, inside the lab's client namespace
(``ip netns exec``): ``tlswatch probe`` over every lab domain (with ``--pcap``, so resets
carry their TTL/IP ID evidence), ``tlswatch trace`` for one domain of each kind of
interference, and ``tlswatch analyse`` over the probe's own capture. The commands know
nothing of the lab (DESIGN.md §2): they get a resolver, a store and a control SNI. The demo
compares what they report with what the lab did on each path, and where its middlebox is.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlswatch.lab.netns import NetnsLab
from tlswatch.lab.netns.addresses import LAB_NET
from tlswatch.sinks.jsonl import read_jsonl

__all__ = ["NetnsDemoResult", "expected_for", "run_netns_demo"]

#: A name the lab serves untouched: the SNI control of every probe and trace.
CONTROL_SNI = "example.org"
#: What a correct detector reports for each treatment: (verdict, outcome prefix).
EXPECTED: dict[str, tuple[str, str]] = {
    "intercept": ("intercepted", "cert/known_interception_ca"),
    "pass": ("ok", "cert/valid"),
    "reset": ("blocked", "tls/reset"),
    "alert": ("blocked", "tls/alert"),
}
#: What a trace reports for each treatment: its kind, located at the middlebox's hop.
TRACE_KIND = {"intercept": "interception", "reset": "injection", "alert": "injection"}


def expected_for(treatment: str) -> tuple[str, str]:
    return EXPECTED[treatment]


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the demo's tables: what was measured, what was expected, what was seen."""

    what: str
    subject: str
    lab_did: str
    expected: str
    seen: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.seen == self.expected


@dataclass(slots=True)
class NetnsDemoResult:
    probes: list[Row] = field(default_factory=list)
    traces: list[Row] = field(default_factory=list)
    analysis: list[Row] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def rows(self) -> list[Row]:
        return self.probes + self.traces + self.analysis

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]


def _run(lab: NetnsLab, args: list[str], log: Callable[[str], None],
         timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m tlswatch ARGS`` inside the client namespace."""
    argv = lab.exec_argv(lab.client_ns, [sys.executable, "-m", "tlswatch", *args])
    log("$ " + " ".join(["tlswatch", *args]))
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _records(path: Path) -> list[dict[str, Any]]:
    """The measurement (or trace) records of an output the demo's commands wrote."""
    if not path.exists():
        return []
    return [r for r in read_jsonl(path) if r.get("kind") not in ("run", "input")]


def _rst_detail(rec: dict[str, Any]) -> str:
    rst = (rec.get("tcp") or {}).get("rst")
    if not rst:
        return ""
    ev = ", ".join(rst.get("injected_evidence") or []) or "no injection evidence"
    return f"RST ttl {rst.get('ttl')} ip_id {rst.get('ip_id')}: {ev}"


def run_netns_demo(out_dir: Path, lab: NetnsLab, *, tls_timeout: float = 2.0,
                   trace_timeout: float = 0.4,
                   log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
                   ) -> NetnsDemoResult:
    """Probe, trace and analyse through a running namespace lab; outputs go to ``out_dir``
    (results.jsonl, demo.pcap, keylog.txt, traces.jsonl, analysed.jsonl, lab-public-root.pem).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    result = NetnsDemoResult()
    store = out_dir / "lab-public-root.pem"
    store.write_bytes(lab.store_path.read_bytes())
    domains = [d for d in lab.domains if d != CONTROL_SNI]
    (out_dir / "targets.txt").write_text("".join(d + "\n" for d in domains), encoding="utf-8")
    results, pcap = out_dir / "results.jsonl", out_dir / "demo.pcap"
    for stale in (results, pcap, out_dir / "traces.jsonl", out_dir / "analysed.jsonl"):
        stale.unlink(missing_ok=True)
    routable = str(LAB_NET)  # the lab's addresses stand for public ones: not bogons here

    # 1. Probe every domain through the middlebox, with an SNI control and a capture.
    proc = _run(lab, ["probe", "-i", str(out_dir / "targets.txt"), "--resolver", lab.resolver,
                      "--routable", routable, "--control-sni", CONTROL_SNI,
                      "--store", str(store), "--retries", "0", "--tls-timeout",
                      str(tls_timeout), "--pcap", str(pcap),
                      "--keylog", str(out_dir / "keylog.txt"), "-o", str(results)],
                log, timeout=120 + 4 * tls_timeout * len(domains))
    if proc.returncode != 0:
        result.errors.append(f"probe exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    by_domain = {r["target"]["domain"]: r for r in _records(results)}
    for d in domains:
        treatment = lab.treatment(d)
        verdict, prefix = EXPECTED[treatment]
        rec = by_domain.get(d)
        seen = "missing"
        detail = ""
        if rec is not None:
            ok = rec["verdict"] == verdict and str(rec["outcome"]).startswith(prefix)
            seen = verdict if ok else f"{rec['verdict']} {rec['outcome']}"
            detail = f"{rec['outcome']}  {_rst_detail(rec)}".rstrip()
        result.probes.append(Row("probe", d, treatment, verdict, seen, detail))

    # 2. Locate the middlebox: one trace per kind of interference, and one clean path.
    traces = out_dir / "traces.jsonl"
    for treatment in ("intercept", "reset", "alert", "pass"):
        name = next((x for x in domains if lab.treatment(x) == treatment), None)
        if name is None:
            continue
        proc = _run(lab, ["trace", lab.address_of(name), "--sni", name,
                          "--control-sni", CONTROL_SNI, "--store", str(store),
                          "--timeout", str(trace_timeout),
                          "--max-ttl", str(lab.server_hop + 2), "-o", str(traces)],
                    log, timeout=60 + 20 * trace_timeout * (lab.server_hop + 2))
        if proc.returncode != 0:
            result.errors.append(f"trace {name} exited {proc.returncode}: "
                                 f"{proc.stderr.strip()[-300:]}")
            continue
        rec = _records(traces)[-1]
        if treatment == "pass":
            expected = "none"
            seen = str(rec["kind"])
        else:
            expected = f"{TRACE_KIND[treatment]} at hop {lab.middlebox_hop}"
            seen = f"{rec['kind']} at hop {rec['located_hop']}"
        result.traces.append(Row("trace", name, treatment, expected, seen,
                                 "; ".join(rec.get("evidence", [])[:2])))

    # 3. The probe's own capture, judged again offline: the injected resets stand out.
    analysed = out_dir / "analysed.jsonl"
    proc = _run(lab, ["analyse", str(pcap), "--store", str(store), "--routable", routable,
                      "--keylog", str(out_dir / "keylog.txt"), "-o", str(analysed)],
                log, timeout=120)
    if proc.returncode != 0:
        result.errors.append(f"analyse exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    for rec in _records(analysed):
        sni = (rec.get("target") or {}).get("sni")
        if not isinstance(sni, str) or sni not in domains or lab.treatment(sni) != "reset":
            continue
        rst = (rec.get("tcp") or {}).get("rst") or {}
        ttl_ev = [e for e in rst.get("injected_evidence") or [] if e.startswith("ttl_")]
        result.analysis.append(Row("analyse", sni, "reset", "injected RST",
                                   "injected RST" if ttl_ev else "no TTL evidence",
                                   _rst_detail(rec)))
    result.elapsed_s = time.monotonic() - t0
    return result

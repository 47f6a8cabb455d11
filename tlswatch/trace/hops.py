"""One TTL-limited probe, and the three traces built from them (SYN, control SNI, target SNI).

A TLS probe connects with the system TTL, lowers the TTL to k, and lets the probe's own
pyOpenSSL client (:class:`~tlswatch.probe.tls_client.TlsSession`) send a real ClientHello.
What comes back within the timeout is one *response*: ``icmp_time_exceeded`` (the hello
died at hop k; the router is the ICMP source), ``icmp_unreachable:<code>``, ``server_hello``
(someone at hop <= k answered as a TLS server; the chain is kept), ``alert:<name>``, ``rst``,
``eof``, ``not_tls``, ``tls_failed``, ``timeout`` or ``connect_failed:<tcp outcome>``. The raw
sockets add the IP TTL / IP ID of the SYN-ACK, the first data segment, a RST or a FIN.

Probes run one at a time: routers rate-limit ICMP, and stateful censors may punish a flow.
The control trace runs before the target trace, so residual blocking that a target SNI may
trigger cannot spoil the control.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from tlswatch.probe.tls_client import TlsOptions, TlsSession
from tlswatch.trace.icmp import IcmpError
from tlswatch.trace.rawwatch import PathWatch, ProbeEvents
from tlswatch.trace.segments import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from tlswatch.trace.ttl_socket import abort, connect, get_ttl, set_ttl

__all__ = [
    "ICMP_TIME_EXCEEDED",
    "SERVER_HELLO",
    "SYN_ACK",
    "TIMEOUT",
    "Attempt",
    "HopResult",
    "TraceConfig",
    "TraceRun",
    "is_terminal",
    "probe_syn",
    "probe_tls",
    "run_traces",
    "summarize",
]

ICMP_TIME_EXCEEDED: Final = "icmp_time_exceeded"
ICMP_UNREACHABLE: Final = "icmp_unreachable"
SERVER_HELLO: Final = "server_hello"
SYN_ACK: Final = "syn_ack"
TIMEOUT: Final = "timeout"
RST: Final = "rst"
# When repeats disagree equally often, the more telling response represents the hop.
_PRIORITY: Final = ("server_hello", "alert", "rst", "not_tls", "eof", "syn_ack", "refused",
                    "icmp_unreachable", "icmp_time_exceeded", "tls_failed", "connect_failed",
                    "timeout")
#: Handshake bytes accepted from one probe (a chain fits; a flood does not).
MAX_PROBE_BYTES: Final = 512 * 1024


@dataclass(frozen=True, slots=True)
class Attempt:
    """One TTL-limited probe and what came back for it."""

    response: str
    router: str | None = None
    elapsed_ms: float = 0.0
    failure: str | None = None  # the probe's tcp/... or tls/... outcome, when it failed
    chain_der: tuple[bytes, ...] = field(default=(), repr=False)
    tls_version: str | None = None
    history: str | None = None
    syn_ack_ttl: int | None = None
    server_ttl: int | None = None
    server_ip_id: int | None = None
    rst_ttl: int | None = None
    rst_ip_id: int | None = None
    fin_ttl: int | None = None
    quoted_ttl: int | None = None  # TTL left in the packet the ICMP error quotes
    #: Where the quoted segment starts in our byte stream (0: the hello's first segment,
    #: the one with the SNI); None when unknown.
    quoted_offset: int | None = None
    events_dropped: int = 0


@dataclass(frozen=True, slots=True)
class HopResult:
    """The attempts at one TTL for one probe kind, and the one that represents them."""

    ttl: int
    attempts: tuple[Attempt, ...]

    @property
    def best(self) -> Attempt:
        return summarize(self.attempts)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(a.response for a in self.attempts))


def _rank(response: str) -> int:
    base = response.split(":", 1)[0]
    return _PRIORITY.index(base) if base in _PRIORITY else len(_PRIORITY)


def summarize(attempts: Sequence[Attempt]) -> Attempt:
    """The most common response (ties: the more telling one); its first attempt."""
    counts = Counter(a.response for a in attempts)
    top = min(counts, key=lambda r: (-counts[r], _rank(r)))
    return next(a for a in attempts if a.response == top)


def is_terminal(response: str) -> bool:
    """Something answered for the far end (not a router's time exceeded, not silence)."""
    return response not in (ICMP_TIME_EXCEEDED, TIMEOUT)


def _tcp_facts(ev: ProbeEvents) -> dict[str, int | None]:
    facts: dict[str, int | None] = {}
    for seg in ev.tcp:
        if seg.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK:
            facts.setdefault("syn_ack_ttl", seg.ttl)
            facts.setdefault("first_seq", seg.ack)  # our ISN + 1: the hello's first byte
        if seg.flags & TCP_RST:
            facts.setdefault("rst_ttl", seg.ttl)
            facts.setdefault("rst_ip_id", seg.ip_id)
        if seg.flags & TCP_FIN:
            facts.setdefault("fin_ttl", seg.ttl)
        if seg.payload_len and "server_ttl" not in facts:
            facts["server_ttl"] = seg.ttl
            facts["server_ip_id"] = seg.ip_id
    return facts


def _icmp_response(err: IcmpError) -> str:
    return ICMP_TIME_EXCEEDED if err.kind == "time_exceeded" else f"{ICMP_UNREACHABLE}:{err.code}"


def _first_icmp(ev: ProbeEvents, first_seq: int | None = None) -> IcmpError | None:
    # Prefer time exceeded, and the lowest quoted sequence number: the hello's first segment
    # (large hellos span two segments, and a box may drop only the one with the SNI).
    exceeded = [e for e in ev.icmp if e.kind == "time_exceeded"]
    pool = sorted(exceeded or ev.icmp, key=lambda e: _offset(e, first_seq) or 0)
    return pool[0] if pool else None


def _offset(icmp: IcmpError | None, first_seq: int | None) -> int | None:
    if icmp is None or icmp.quote.seq is None or first_seq is None:
        return None
    return (icmp.quote.seq - first_seq) % (1 << 32)


async def probe_syn(watch: PathWatch, ip: str, port: int, ttl: int, timeout: float) -> Attempt:
    """A connect whose SYN is limited to ``ttl`` hops: where does TCP terminate?"""
    c = await connect(ip, port, timeout, ttl=ttl, on_bound=watch.begin)
    if c.sock is not None:
        abort(c.sock)
    ev = watch.events(c.local_port)
    icmp = _first_icmp(ev)
    facts = _tcp_facts(ev)
    response = c.response
    if response in ("icmp", TIMEOUT) and icmp is not None:
        response = _icmp_response(icmp)
    elif response == "icmp":
        response = "error:EHOSTUNREACH"  # the kernel saw an ICMP error our socket missed
    return Attempt(response, icmp.router if icmp else None, c.elapsed_ms,
                   syn_ack_ttl=facts.get("syn_ack_ttl"), rst_ttl=facts.get("rst_ttl"),
                   rst_ip_id=facts.get("rst_ip_id"),
                   quoted_ttl=icmp.quote.ttl if icmp else None, events_dropped=ev.dropped)


async def probe_tls(watch: PathWatch, ip: str, port: int, sni: str, ttl: int,
                    timeout: float) -> Attempt:
    """Connect normally, then send a real ClientHello for ``sni`` limited to ``ttl`` hops."""
    c = await connect(ip, port, timeout, on_bound=watch.begin)
    if c.sock is None:
        watch.events(c.local_port)
        return Attempt(f"connect_failed:{c.response}", elapsed_ms=c.elapsed_ms)
    sock = c.sock
    original = get_ttl(sock)
    icmp_arrived = watch.icmp_for(c.local_port)
    set_ttl(sock, ttl)
    session = TlsSession(sock, TlsOptions(sni=sni, max_bytes=MAX_PROBE_BYTES))
    start = time.perf_counter_ns()
    task = asyncio.ensure_future(session.handshake(timeout))
    try:
        await asyncio.wait((task, icmp_arrived), timeout=timeout + 0.5,
                           return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and icmp_arrived.done():
            # The hello died at a router. Anything an on-path box before it injected
            # comes back within about the same time: wait that long, then stop.
            waited = (time.perf_counter_ns() - start) / 1e9
            grace = min(max(timeout - waited, 0.0), max(0.05, 2 * waited))
            await asyncio.wait({task}, timeout=grace)
        if task.done() and task.exception() is None:
            hs = task.result()
        elif task.done():
            # An OS error the client does not classify (e.g. from an ICMP error the kernel
            # made fatal): what the wire showed so far is the answer.
            hs = session.result_after_timeout((time.perf_counter_ns() - start) / 1e6)
        else:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            hs = session.result_after_timeout((time.perf_counter_ns() - start) / 1e6)
    finally:
        if not task.done():
            task.cancel()
        icmp_arrived.cancel()
        abort(sock, original)
    ev = watch.events(c.local_port)
    elapsed = round((time.perf_counter_ns() - start) / 1e6, 3)
    facts = _tcp_facts(ev)
    icmp = _first_icmp(ev, facts.get("first_seq"))
    wire = session.wire
    server_alert = next((a for from_client, a in wire.alerts if not from_client), None)
    failure = hs.failure
    if wire.server_hello is not None or (failure is None and hs.chain_der):
        response = SERVER_HELLO
    elif server_alert is not None:
        response = f"alert:{server_alert.name}"
    elif failure in ("tls/reset", "tcp/reset") or (failure == "tls/timeout"
                                                    and "rst_ttl" in facts):
        response = RST
    elif failure == "tls/not_tls":
        response = "not_tls"
    elif failure == "tls/eof":
        response = "eof"
    elif icmp is not None:
        response = _icmp_response(icmp)
    elif failure == "tls/timeout":
        response = TIMEOUT
    else:
        response = "tls_failed"
    return Attempt(
        response, icmp.router if icmp else None, elapsed, failure, hs.chain_der,
        hs.tls.version if response == SERVER_HELLO else None, hs.tls.history,
        syn_ack_ttl=facts.get("syn_ack_ttl"), server_ttl=facts.get("server_ttl"),
        server_ip_id=facts.get("server_ip_id"), rst_ttl=facts.get("rst_ttl"),
        rst_ip_id=facts.get("rst_ip_id"), fin_ttl=facts.get("fin_ttl"),
        quoted_ttl=icmp.quote.ttl if icmp else None,
        quoted_offset=_offset(icmp, facts.get("first_seq")), events_dropped=ev.dropped)


@dataclass(frozen=True, slots=True)
class TraceConfig:
    """What to trace and how hard to try."""

    ip: str
    port: int
    sni: str
    control_sni: str | None = None
    max_ttl: int = 30
    timeout: float = 2.0
    repeats: int = 1
    syn: bool = True
    #: Stop a trace after this many TTLs in a row with no answer at all (traceroute's "*").
    gap_limit: int = 5
    #: Seconds between two probes: a censor that keeps blocking a server for a while after a
    #: forbidden SNI (residual censorship) would otherwise answer later probes for an earlier one.
    pause: float = 0.0


@dataclass(frozen=True, slots=True)
class TraceRun:
    """The raw per-TTL results of the three traces (each stops on its own)."""

    syn: tuple[HopResult, ...]
    control: tuple[HopResult, ...]
    target: tuple[HopResult, ...]


async def _trace(cfg: TraceConfig, one: Callable[[int], Awaitable[Attempt]], *, until: int | None,
                 log: Callable[[str], None], label: str) -> tuple[HopResult, ...]:
    """TTL 1.. until a terminal answer at or beyond ``until`` (or the gap limit / max TTL)."""
    hops: list[HopResult] = []
    silent = 0
    for ttl in range(1, cfg.max_ttl + 1):
        attempts: list[Attempt] = []
        for _ in range(cfg.repeats):
            if cfg.pause and (hops or attempts):
                await asyncio.sleep(cfg.pause)
            attempts.append(await one(ttl))
        hop = HopResult(ttl, tuple(attempts))
        hops.append(hop)
        best = hop.best.response
        log(f"{label} ttl {ttl}: {best}" + (f" from {hop.best.router}" if hop.best.router
                                           else ""))
        silent = silent + 1 if best == TIMEOUT else 0
        reached = until is None or ttl >= until
        if best.startswith("connect_failed"):
            break
        if reached and is_terminal(best):
            break
        if until is not None and ttl >= until and best == TIMEOUT:
            break  # beyond the server's hop and still silent: a drop, more TTLs add nothing
        if silent >= cfg.gap_limit:
            break
    return tuple(hops)


def _first_terminal(hops: Sequence[HopResult]) -> int | None:
    return next((h.ttl for h in hops if is_terminal(h.best.response)
                 and not h.best.response.startswith("connect_failed")), None)


async def run_traces(cfg: TraceConfig, watch: PathWatch,
                     log: Callable[[str], None] = lambda _m: None) -> TraceRun:
    """The SYN trace (optional), the control trace, then the target trace."""
    syn: tuple[HopResult, ...] = ()
    if cfg.syn:
        syn = await _trace(cfg, lambda t: probe_syn(watch, cfg.ip, cfg.port, t, cfg.timeout),
                           until=None, log=log, label="syn")
    control: tuple[HopResult, ...] = ()
    if cfg.control_sni is not None:
        ctl_sni = cfg.control_sni
        control = await _trace(
            cfg, lambda t: probe_tls(watch, cfg.ip, cfg.port, ctl_sni, t, cfg.timeout),
            until=None, log=log, label="control")
    server_hop = _first_terminal(control)
    target = await _trace(
        cfg, lambda t: probe_tls(watch, cfg.ip, cfg.port, cfg.sni, t, cfg.timeout),
        until=server_hop, log=log, label="target")
    return TraceRun(syn, control, target)

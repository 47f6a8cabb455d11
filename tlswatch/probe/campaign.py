"""Campaigns: many targets × vantages, measured concurrently, judged, written as they finish.

``run_campaign(tasks, options, sink, judge=…, run_id=…)`` pulls tasks from an iterator (never
materialised) with ``concurrency`` workers, so at most that many measurements are in flight
and memory stays flat however long the input is. Each task:

1. waits for the rate limits (a global rate, a rate per destination IP) — outside every
   measurement timer, so waiting never turns into a timeout;
2. is measured (:func:`tlswatch.probe.measure.measure`); its control(s) (if any: a path or
   resolver control, an SNI control, or one of each) are measured once per task,
   concurrently when their destination is known up front;
3. is judged by ``classify`` (:func:`~tlswatch.classify.probe_record.probe_record`);
4. is repeated up to ``retries`` times while its verdict is not ``ok``, with exponential
   backoff and jitter. An ``ok`` attempt ends the retries and is the result (a transient
   failure is not interference, as in Censored Planet's retry rule); otherwise the result is
   the most common outcome class among the attempts, ties going to the most recent, and the
   record kept is the latest attempt of that class. ``attempts.agreeing`` counts the attempts
   whose outcome class equals the result's.

Record ids are computed from the task (target as requested, vantage, attempt 0), never from
what DNS returned, so a resumed run recognises finished work. Records go to the sink as they
complete; the sink is checkpointed (fsync for files) every ``checkpoint_records`` records or
``checkpoint_seconds`` seconds and at the end.

With a per-IP rate and a task that needs DNS, the campaign resolves the name itself first
(same resolver, timeout and bogon policy as ``measure``), waits for that IP's slot, then
measures the IP and folds the DNS result into the observation: the per-IP wait must sit
between DNS and connect, which ``measure`` does as one call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Container, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from tlswatch.classify.chain import ChainJudge
from tlswatch.classify.probe_record import JudgedObservation, judge_observation, probe_record
from tlswatch.failures import DnsFailure, Stage, Verdict, outcome, outcome_class
from tlswatch.model import Attempts, Record, Target
from tlswatch.probe.dns import DEFAULT_BOGONS, BogonKind, IpVersion, parse_resolver, resolve
from tlswatch.probe.inputs import Endpoint, Task
from tlswatch.probe.measure import ResetEvidence, Timeouts, measure
from tlswatch.probe.observation import ProbeObservation
from tlswatch.probe.ratelimit import RateLimiter
from tlswatch.probe.tls_client import DEFAULT_MAX_BYTES, KeyLog, TlsVersion

__all__ = [
    "CampaignOptions",
    "CaptiveResult",
    "ControlKind",
    "ControlSpec",
    "MeasureFn",
    "RecordSink",
    "Summary",
    "captive_portal_check",
    "run_campaign",
    "system_resolver",
]

ControlKind = Literal["sni", "path", "resolver"]
_ONE = Attempts(1, 1)
MeasureFn = Callable[..., Awaitable[ProbeObservation]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def system_resolver() -> tuple[str, int]:
    """This machine's first configured nameserver (which we still query directly)."""
    import dns.exception
    import dns.resolver

    try:
        ns = dns.resolver.Resolver().nameservers
    except dns.exception.DNSException:  # no /etc/resolv.conf, or an unreadable one
        ns = []
    if not ns:
        raise ValueError("no resolver given and none configured on this system")
    return parse_resolver(str(ns[0]))


class RecordSink(Protocol):
    """Where records go (``JsonlWriter`` is one)."""

    def write(self, record: Any) -> None: ...

    def checkpoint(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ControlSpec:
    """The control measurement of every task.

    ``sni``: the same IP as the measurement, with SNI ``sni``. ``path``: the same SNI to
    ``endpoint`` (port defaults to the task's). ``resolver``: the same SNI to the address
    ``resolver`` returns for the name.
    """

    kind: ControlKind
    sni: str | None = None
    endpoint: Endpoint | None = None
    resolver: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        needed = {"sni": self.sni, "path": self.endpoint, "resolver": self.resolver}[self.kind]
        if needed is None:
            raise ValueError(f"a {self.kind} control needs its {self.kind} parameter")


@dataclass(frozen=True, slots=True)
class CampaignOptions:
    """How every task of a campaign is measured, limited and repeated."""

    resolver: tuple[str, int] | None = None  # None: the system's first nameserver
    control: ControlSpec | None = None
    #: A second control, of kind ``sni``, beside a path or resolver ``control``.
    sni_control: ControlSpec | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    ip_version: IpVersion = "4"
    min_version: TlsVersion = "TLSv1.2"
    max_version: TlsVersion = "TLSv1.3"
    alpn: tuple[str, ...] = ()
    http: bool = False
    keylog: KeyLog | None = None
    bogons: frozenset[BogonKind] = DEFAULT_BOGONS
    max_bytes: int = DEFAULT_MAX_BYTES
    retries: int = 0
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    backoff_max: float = 30.0
    concurrency: int = 50
    rate: float | None = None
    per_ip_rate: float | None = None
    checkpoint_records: int = 100
    checkpoint_seconds: float = 5.0
    captive_portal: bool = False  # the caller's pre-check failed: every verdict inconclusive
    clock: Callable[[], datetime] = _utcnow
    groups: str | None = None  # key-exchange groups offered (OpenSSL list syntax)
    #: The probe's own live capture: a reset measurement gets the RST's TTL/IP ID evidence.
    #: Local only (a capture is not picklable: distributed shards run without it).
    resets: ResetEvidence | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.retries < 0:
            raise ValueError("retries must be 0 or more")
        if self.sni_control is not None and (
                self.sni_control.kind != "sni" or self.control is None
                or self.control.kind == "sni"):
            raise ValueError("sni_control is an sni control beside a path or resolver control")

    @property
    def controls(self) -> tuple[ControlSpec, ...]:
        """Every control of a task: ``control`` first."""
        return tuple(c for c in (self.control, self.sni_control) if c is not None)


@dataclass(slots=True)
class Summary:
    """What a campaign did. ``records``: written this run; ``skipped``: already in the output."""

    records: int = 0
    skipped: int = 0
    errors: int = 0
    retried: int = 0
    measurements: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    max_in_flight: int = 0

    @property
    def rate(self) -> float:
        """Records per second over the campaign's wall time."""
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def count(self, verdict: str, outcome: str) -> None:
        """A record written."""
        self.records += 1
        self.verdicts[verdict] += 1
        self.outcomes[outcome_class(outcome)] += 1

    def add(self, other: Summary) -> None:
        """What another process or batch measured (its records are counted as they are
        written here; how many were in flight at once is the caller's to combine)."""
        self.skipped += other.skipped
        self.errors += other.errors
        self.retried += other.retried
        self.measurements += other.measurements


class _Campaign:
    def __init__(self, options: CampaignOptions, sink: RecordSink, judge: ChainJudge,
                 run_id: str, done: Container[str],
                 on_record: Callable[[Record], None] | None,
                 on_error: Callable[[str], None] | None,
                 measure_fn: MeasureFn, rng: random.Random,
                 sleep: Callable[[float], Awaitable[None]]) -> None:
        self.o = options
        self.sink = sink
        self.judge = judge
        self.run_id = run_id
        self.done = done
        self.on_record = on_record
        self.on_error = on_error
        self.measure_fn = measure_fn
        self.rng = rng
        self.sleep = sleep
        self.limiter = RateLimiter(options.rate, options.per_ip_rate)
        self.summary = Summary()
        self.in_flight = 0
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()

    # -- measuring ---------------------------------------------------------------------

    async def _measure(self, domain: str, sni: str | None, ip: str | None, port: int,
                       resolver: tuple[str, int] | None, timeouts: Timeouts) -> ProbeObservation:
        o = self.o
        self.summary.measurements += 1
        return await self.measure_fn(
            Target(domain=domain, port=port), ip=ip, port=port, resolver=resolver, sni=sni,
            timeouts=timeouts, alpn=o.alpn, min_version=o.min_version,
            max_version=o.max_version, keylog=o.keylog, http=o.http, ip_version=o.ip_version,
            bogons=o.bogons, max_bytes=o.max_bytes, clock=o.clock, groups=o.groups,
            resets=o.resets)

    async def observe(self, domain: str, sni: str | None, ip: str | None, port: int,
                      resolver: tuple[str, int] | None) -> ProbeObservation:
        """One rate-limited measurement."""
        if ip is None and self.limiter.limits_ips:
            await self.limiter.acquire_global()
            return await self._resolve_then_measure(domain, sni, port, resolver)
        await self.limiter.acquire(ip)
        return await self._measure(domain, sni, ip, port, resolver, self.o.timeouts)

    async def _resolve_then_measure(self, domain: str, sni: str | None, port: int,
                                    resolver: tuple[str, int] | None) -> ProbeObservation:
        o = self.o
        started = o.clock()
        t0 = time.perf_counter_ns()
        overall_timeout = False
        try:
            async with asyncio.timeout(o.timeouts.overall):
                res = await resolve(domain, resolver or system_resolver(),
                                    timeout=o.timeouts.dns, ip_version=o.ip_version,
                                    bogons=o.bogons)
        except TimeoutError:
            overall_timeout = True
        dns_s = (time.perf_counter_ns() - t0) / 1e9
        if overall_timeout:
            self.summary.measurements += 1
            return ProbeObservation(
                target=Target(domain=domain, sni=sni, port=port), started=started,
                failure=outcome(Stage.DNS, DnsFailure.TIMEOUT), anomalies=("overall_timeout",),
                total_ms=round(dns_s * 1e3, 3))
        bogons = tuple(f"dns_bogon:{kind}:{addr}" for addr, kind in res.bogons)
        if res.info.failure is not None or not res.usable:
            self.summary.measurements += 1
            return ProbeObservation(
                target=Target(domain=domain, sni=sni, port=port), started=started, dns=res.info,
                failure=res.info.failure or outcome(Stage.DNS, DnsFailure.NO_ANSWER),
                anomalies=bogons, dns_ms=res.dns_ms, total_ms=round(dns_s * 1e3, 3))
        ip = res.usable[0]
        await self.limiter.acquire(ip, global_too=False)
        left = dataclasses.replace(o.timeouts, overall=max(0.001, o.timeouts.overall - dns_s))
        obs = await self._measure(domain, sni, ip, port, None, left)
        return dataclasses.replace(
            obs, started=started, dns=res.info, dns_ms=res.dns_ms,
            anomalies=bogons + obs.anomalies,
            total_ms=round((obs.total_ms or 0.0) + dns_s * 1e3, 3))

    async def control(self, task: Task, ip: str | None, c: ControlSpec) -> ProbeObservation:
        if c.kind == "sni":
            return await self.observe(task.domain, c.sni, ip, task.port, None)
        if c.kind == "path":
            assert c.endpoint is not None
            return await self.observe(task.domain, task.sni, c.endpoint.ip,
                                      c.endpoint.port or task.port, None)
        return await self.observe(task.domain, task.sni, None, task.port, c.resolver)

    def _backoff(self, attempt: int) -> float:
        base: float = min(self.o.backoff_max, self.o.backoff * 2.0 ** (attempt - 1))
        return base * self.rng.uniform(0.5, 1.0)

    # -- one task ------------------------------------------------------------------------

    async def run_task(self, task: Task) -> Record:
        o = self.o
        ctl = o.control
        specs = o.controls
        early: dict[ControlKind, asyncio.Task[ProbeObservation]] = {}
        for spec in specs:
            if spec.kind != "sni" or task.ip is not None:
                # Its destination is known now: measure the control alongside the first attempt.
                early[spec.kind] = asyncio.create_task(self.control(task, task.ip, spec))
        tries: list[tuple[Record, str]] = []
        judged: dict[ControlKind, JudgedObservation] = {}
        note: str | None = None
        retries = 0 if o.captive_portal else o.retries  # a captive portal gives the same again
        try:
            for attempt in range(retries + 1):
                if attempt:
                    await self.sleep(self._backoff(attempt))
                obs = await self.observe(task.domain, task.sni, task.ip, task.port, o.resolver)
                seen = judge_observation(obs, self.judge)
                if attempt == 0:
                    for spec in specs:
                        if spec.kind in early:
                            judged[spec.kind] = judge_observation(await early[spec.kind],
                                                                  self.judge)
                        elif obs.target.ip is not None:
                            judged[spec.kind] = judge_observation(
                                await self.control(task, obs.target.ip, spec), self.judge)
                        else:
                            note = "control_not_measured: the sni control needs the target's IP"
                control_j = judged.get(ctl.kind) if ctl else None
                rec, decision = probe_record(
                    record_id=task.id, run_id=self.run_id, seen=seen, control=control_j,
                    control_kind=ctl.kind if ctl else "path", vantage=task.record_vantage,
                    captive_portal=o.captive_portal, attempts=_ONE if attempt == 0 else None,
                    sni_control=judged.get("sni") if o.sni_control else None)
                tries.append((rec, outcome_class(decision.outcome)))
                if decision.verdict is Verdict.OK:
                    break
        finally:
            for t in early.values():
                if not t.done():
                    t.cancel()
        if len(tries) == 1 and note is None:
            return tries[0][0]  # built with attempts 1/1 already: no second Record
        rec, agreeing = _pick(tries)
        if len(tries) > 1:
            self.summary.retried += 1
        extra = (note,) if note else ()
        return dataclasses.replace(rec, attempts=Attempts(len(tries), agreeing),
                                   anomalies=rec.anomalies + extra)

    # -- the pool --------------------------------------------------------------------------

    def _emit(self, rec: Record) -> None:
        self.sink.write(rec)
        self.summary.count(rec.verdict, rec.outcome)
        self._since_checkpoint += 1
        now = time.monotonic()
        if (self._since_checkpoint >= self.o.checkpoint_records
                or now - self._last_checkpoint >= self.o.checkpoint_seconds):
            self.sink.checkpoint()
            self._since_checkpoint = 0
            self._last_checkpoint = now
        if self.on_record is not None:
            self.on_record(rec)

    async def run(self, tasks: Iterable[Task]) -> Summary:
        it = iter(tasks)
        t0 = time.perf_counter()

        async def worker() -> None:
            # Workers share one iterator: next() never awaits, so no two run it at once.
            for task in it:
                if task.id in self.done:
                    self.summary.skipped += 1
                    continue
                self.in_flight += 1
                self.summary.max_in_flight = max(self.summary.max_in_flight, self.in_flight)
                try:
                    rec = await self.run_task(task)
                except Exception as e:  # a bug must not sink a million-target run
                    self.summary.errors += 1
                    if self.on_error is not None:
                        self.on_error(f"internal error on {task.domain} ({task.where}): "
                                      f"{type(e).__name__}: {e}")
                    continue
                finally:
                    self.in_flight -= 1
                self._emit(rec)

        workers = [asyncio.create_task(worker()) for _ in range(self.o.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.summary.elapsed_s = time.perf_counter() - t0
            self.sink.checkpoint()
        return self.summary


def _pick(tries: list[tuple[Record, str]]) -> tuple[Record, int]:
    """The result of the attempts (see the module docstring) and how many agree with it."""
    counts = Counter(cls for _, cls in tries)
    last_rec, last_cls = tries[-1]
    if last_rec.verdict == Verdict.OK.value:
        return last_rec, counts[last_cls]
    best = max(counts.values())
    for rec, cls in reversed(tries):
        if counts[cls] == best:
            return rec, best
    raise AssertionError("unreachable")  # pragma: no cover


async def run_campaign(
    tasks: Iterable[Task],
    options: CampaignOptions,
    sink: RecordSink,
    *,
    judge: ChainJudge,
    run_id: str,
    done: Container[str] = frozenset(),
    on_record: Callable[[Record], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    measure_fn: MeasureFn = measure,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Summary:
    """Measure every task not in ``done``; write each record to ``sink`` as it completes.

    ``on_record`` sees each record after it was written; ``on_error`` gets one line per task
    that failed inside tlswatch (no record is written for it, so a resume retries it).
    ``measure_fn``, ``rng`` and ``sleep`` are for tests.
    """
    c = _Campaign(options, sink, judge, run_id, done, on_record, on_error, measure_fn,
                  rng or random.Random(), sleep)
    return await c.run(tasks)


# -- captive-portal pre-check --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaptiveResult:
    """``ok``: the check URL answered as expected; ``detail`` says what was seen."""

    ok: bool
    detail: str


async def captive_portal_check(
    url: str,
    *,
    resolver: tuple[str, int] | None,
    expect_status: int = 204,
    timeout: float = 5.0,
    bogons: frozenset[BogonKind] = DEFAULT_BOGONS,
) -> CaptiveResult:
    """``GET`` an ``http://`` URL over plain HTTP; a portal answers something else.

    Like Android's ``generate_204`` check: the network is usable when the status is
    ``expect_status``. Raises ValueError for a URL that is not ``http://host[:port]/path``.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r}: the captive-portal check needs an http:// URL")
    host = parts.hostname
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        async with asyncio.timeout(timeout):
            ip = host
            if not _is_ip(host):
                res = await resolve(host, resolver or system_resolver(), timeout=timeout,
                                    bogons=bogons)
                if not res.usable:
                    return CaptiveResult(False, f"DNS: {res.info.failure}")
                ip = res.usable[0]
            reader, writer = await asyncio.open_connection(ip, port)
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                             "User-Agent: tlswatch\r\nConnection: close\r\n\r\n".encode())
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        return CaptiveResult(False, "timeout")
    except OSError as e:
        return CaptiveResult(False, f"connection failed ({type(e).__name__})")
    fields = line.decode("latin-1").split()
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        return CaptiveResult(False, "not an HTTP response")
    status = int(fields[1])
    return CaptiveResult(status == expect_status, f"HTTP {status}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

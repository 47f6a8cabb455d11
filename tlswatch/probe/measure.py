"""The single entry point: ``measure(target, …) -> ProbeObservation``.

Stages run in order — DNS (unless an IP is given), TCP connect, TLS handshake, optional
``GET /`` — each under its own timeout, all under an overall one. The first failing stage
names the observation's ``failure``; later stages are not attempted. Peer behaviour never
raises: only usage errors (a bad IP literal, no way to find an address) do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

from tlswatch.failures import DnsFailure, HttpFailure, Stage, TcpFailure, TlsFailure, outcome
from tlswatch.model import DnsInfo, Flow, HttpInfo, RstInfo, Target, TcpInfo, TlsInfo
from tlswatch.probe.dns import DEFAULT_BOGONS, BogonKind, IpVersion, parse_resolver, resolve
from tlswatch.probe.http_fetch import http_get
from tlswatch.probe.observation import ProbeObservation
from tlswatch.probe.tcp import tcp_connect
from tlswatch.probe.tls_client import (
    DEFAULT_MAX_BYTES,
    HandshakeResult,
    KeyLog,
    TlsOptions,
    TlsSession,
    TlsVersion,
)

__all__ = ["SNI_FROM_DOMAIN", "ResetEvidence", "SniDefault", "Timeouts", "measure"]


class ResetEvidence(Protocol):
    """Where a reset's packet-level evidence comes from (the probe's own live capture)."""

    async def reset_evidence(self, flow: Flow, wait: float = ...) -> RstInfo | None: ...


class SniDefault(enum.Enum):
    DOMAIN = "domain"


#: ``sni`` default: send the target's domain (pass None to send no SNI at all).
SNI_FROM_DOMAIN: Final = SniDefault.DOMAIN


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds per stage, and for the whole measurement."""

    dns: float = 5.0
    connect: float = 5.0
    tls: float = 10.0
    http: float = 10.0
    overall: float = 30.0


@dataclass(slots=True)
class _Progress:
    """What the stages produced so far: the overall timeout builds the record from it."""

    stage: Stage = Stage.DNS
    dns: DnsInfo | None = None
    dns_ms: float | None = None
    tcp: TcpInfo = field(default_factory=TcpInfo)
    flow: Flow | None = None
    session: TlsSession | None = None
    tls_started_ns: int = 0
    hs: HandshakeResult | None = None
    http: HttpInfo | None = None
    http_ms: float | None = None
    failure: str | None = None
    anomalies: list[str] = field(default_factory=list)


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def measure(
    target: Target | str,
    *,
    ip: str | None = None,
    port: int | None = None,
    resolver: str | tuple[str, int] | None = None,
    sni: str | SniDefault | None = SNI_FROM_DOMAIN,
    timeouts: Timeouts = Timeouts(),
    alpn: Sequence[str] = (),
    min_version: TlsVersion = "TLSv1.2",
    max_version: TlsVersion = "TLSv1.3",
    keylog: KeyLog | str | Path | None = None,
    http: bool = False,
    ip_version: IpVersion = "4",
    bogons: frozenset[BogonKind] = DEFAULT_BOGONS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    clock: Callable[[], datetime] = _utcnow,
    groups: str | None = None,
    resets: ResetEvidence | None = None,
) -> ProbeObservation:
    """Measure one target.

    ``target`` is a domain or a :class:`~tlswatch.model.Target`. With ``ip`` (or
    ``target.ip``) DNS is skipped and the handshake goes to that address with the SNI (the
    Censored Planet method); otherwise ``resolver`` (``"IP[:PORT]"``) is asked and the first
    non-bogon answer is used. ``keylog`` given as a path is opened (append) for this call.
    ``resets`` (the probe's own live capture) fills ``tcp.rst`` when the measurement ended
    in a reset: the RST's TTL/IP ID and why it looks injected.
    """
    tgt = Target(domain=target) if isinstance(target, str) else target
    domain = tgt.domain
    the_ip = ip or tgt.ip
    the_port = port or tgt.port
    the_sni = domain if isinstance(sni, SniDefault) else sni
    if isinstance(sni, SniDefault) and tgt.sni is not None:
        the_sni = tgt.sni
    if the_ip is None and domain is None:
        raise ValueError("measure() needs a domain or an IP")
    own_keylog = KeyLog(keylog) if isinstance(keylog, str | Path) else None
    options = TlsOptions(
        sni=the_sni,
        alpn=tuple(alpn),
        min_version=min_version,
        max_version=max_version,
        keylog=own_keylog or (keylog if isinstance(keylog, KeyLog) else None),
        max_bytes=max_bytes,
        groups=groups,
    )
    started = clock()
    t0 = time.perf_counter_ns()
    p = _Progress()
    try:
        async with asyncio.timeout(timeouts.overall):
            await _run(
                p, domain, the_ip, the_port, resolver, options, timeouts, http, ip_version, bogons
            )
    except TimeoutError:
        p.failure = p.failure or _stage_timeout(p.stage)
        if p.session is not None and p.hs is None:
            elapsed = (time.perf_counter_ns() - p.tls_started_ns) / 1e6
            p.hs = p.session.result_after_timeout(elapsed)
            p.failure = p.hs.failure
        p.anomalies.append("overall_timeout")
    finally:
        if p.session is not None:
            p.session.close()
        if own_keylog is not None:
            own_keylog.close()
    if resets is not None and p.flow is not None and p.failure and "reset" in p.failure:
        rst = await resets.reset_evidence(p.flow)
        if rst is not None:
            p.tcp = dataclasses.replace(p.tcp, rst=rst)
    hs = p.hs
    return ProbeObservation(
        target=Target(
            domain=domain, sni=the_sni, ip=p.flow.server_ip if p.flow else the_ip, port=the_port
        ),
        started=started,
        dns=p.dns,
        tcp=p.tcp,
        tls=hs.tls if hs else TlsInfo(),
        chain_der=hs.chain_der if hs else (),
        http=p.http,
        failure=p.failure,
        anomalies=tuple(p.anomalies) + (hs.anomalies if hs else ()),
        flow=p.flow,
        non_tls_prefix=hs.non_tls_prefix if hs else b"",
        dns_ms=p.dns_ms,
        http_ms=p.http_ms,
        total_ms=round((time.perf_counter_ns() - t0) / 1e6, 3),
    )


async def _run(
    p: _Progress,
    domain: str | None,
    ip: str | None,
    port: int,
    resolver: str | tuple[str, int] | None,
    options: TlsOptions,
    timeouts: Timeouts,
    http: bool,
    ip_version: IpVersion,
    bogons: frozenset[BogonKind],
) -> None:
    if ip is None:
        assert domain is not None
        p.stage = Stage.DNS
        res = await resolve(
            domain,
            _resolver_addr(resolver),
            timeout=timeouts.dns,
            ip_version=ip_version,
            bogons=bogons,
        )
        p.dns, p.dns_ms = res.info, res.dns_ms
        p.anomalies.extend(f"dns_bogon:{kind}:{addr}" for addr, kind in res.bogons)
        if res.info.failure is not None:
            p.failure = res.info.failure
            return
        ip = res.usable[0]
    p.stage = Stage.TCP
    tcp = await tcp_connect(ip, port, timeouts.connect)
    p.tcp = tcp.info
    if tcp.sock is None or tcp.local is None:
        p.failure = tcp.info.failure
        return
    p.flow = Flow(tcp.local[0], tcp.local[1], ip, port)
    p.stage = Stage.TLS
    p.tls_started_ns = time.perf_counter_ns()
    p.session = TlsSession(tcp.sock, options)
    p.hs = await p.session.handshake(timeouts.tls)
    if p.hs.failure is not None:
        p.failure = p.hs.failure
        return
    if http:
        p.stage = Stage.HTTP
        t = time.perf_counter_ns()
        host = domain or options.sni or ip
        res_http = await http_get(p.session, host, timeouts.http)
        p.http_ms = round((time.perf_counter_ns() - t) / 1e6, 3)
        p.http = res_http.info
        p.failure = res_http.failure
        p.anomalies.extend(res_http.anomalies)


def _resolver_addr(resolver: str | tuple[str, int] | None) -> tuple[str, int]:
    if isinstance(resolver, tuple):
        return resolver
    if resolver is not None:
        return parse_resolver(resolver)
    # No resolver given: the system's first nameserver, still queried directly by us.
    import dns.resolver

    ns = dns.resolver.Resolver().nameservers
    if not ns:
        raise ValueError("no resolver given and none configured on this system")
    return parse_resolver(str(ns[0]))


def _stage_timeout(stage: Stage) -> str:
    if stage is Stage.DNS:
        return outcome(Stage.DNS, DnsFailure.TIMEOUT)
    if stage is Stage.TCP:
        return outcome(Stage.TCP, TcpFailure.TIMEOUT)
    if stage is Stage.TLS:
        return outcome(Stage.TLS, TlsFailure.TIMEOUT)
    return outcome(Stage.HTTP, HttpFailure.FAILED, "timeout")

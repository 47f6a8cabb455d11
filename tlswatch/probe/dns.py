"""DNS stage: A/AAAA queries to one chosen resolver (dnspython), with bogon detection.

We send the queries ourselves (``dns.asyncquery``) instead of using a stub resolver so the
record keeps the resolver's own rcode: NXDOMAIN, SERVFAIL and REFUSED stay distinct and
nothing is retried behind our back. Bogon answers are recorded and never connected to; what
counts as a bogon is a parameter because the lab itself lives on loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass
from typing import Final, Literal

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

# Bogons live in tlswatch.bogons (analyse needs them without dnspython); re-exported here.
from tlswatch.bogons import (
    BOGON_KINDS,
    DEFAULT_BOGONS,
    LAB_BOGONS,
    BogonKind,
    BogonPolicy,
    bogon_kind,
    routable_policy,
)
from tlswatch.failures import DnsFailure, Stage, outcome
from tlswatch.model import DnsInfo

__all__ = [
    "BOGON_KINDS",
    "DEFAULT_BOGONS",
    "LAB_BOGONS",
    "BogonKind",
    "BogonPolicy",
    "DnsResult",
    "IpVersion",
    "bogon_kind",
    "parse_resolver",
    "resolve",
    "routable_policy",
]

IpVersion = Literal["4", "6", "both"]


def parse_resolver(spec: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT``, ``[v6]:PORT`` or a bare IPv6 address -> (ip, port)."""
    if spec.startswith("["):
        host, _, port = spec[1:].partition("]")
        return str(ipaddress.ip_address(host)), int(port.lstrip(":") or 53)
    if spec.count(":") == 1:
        host, port = spec.split(":")
        return str(ipaddress.ip_address(host)), int(port)
    return str(ipaddress.ip_address(spec)), 53


@dataclass(frozen=True, slots=True)
class DnsResult:
    """The DNS record part, the addresses we may connect to, and the bogons we refused."""

    info: DnsInfo
    usable: tuple[str, ...]
    bogons: tuple[tuple[str, BogonKind], ...] = ()
    dns_ms: float | None = None


_FAILURE_ORDER: Final = (
    DnsFailure.NXDOMAIN,
    DnsFailure.SERVFAIL,
    DnsFailure.REFUSED,
    DnsFailure.NO_ANSWER,
    DnsFailure.TIMEOUT,
)
_RCODE_FAILURE: Final = {
    dns.rcode.NXDOMAIN: DnsFailure.NXDOMAIN,
    dns.rcode.SERVFAIL: DnsFailure.SERVFAIL,
    dns.rcode.REFUSED: DnsFailure.REFUSED,
}


async def _query(
    name: str, rdtype: dns.rdatatype.RdataType, ip: str, port: int, timeout: float
) -> tuple[str | None, tuple[str, ...], DnsFailure | None]:
    """One query -> (rcode text, answers, failure)."""
    import dns.asyncquery  # here: it loads aioquic (~80 ms), which commands without probes skip

    q = dns.message.make_query(name, rdtype)
    try:
        resp = await dns.asyncquery.udp(q, ip, timeout=timeout, port=port)
        if resp.flags & dns.flags.TC:
            resp = await dns.asyncquery.tcp(q, ip, timeout=timeout, port=port)
    except dns.exception.Timeout:
        return None, (), DnsFailure.TIMEOUT
    except (OSError, dns.exception.DNSException):
        # Unreachable resolver, an ICMP error, a malformed or mismatched reply: no usable answer.
        return None, (), DnsFailure.SERVFAIL
    rcode = resp.rcode()
    text = dns.rcode.to_text(rcode)
    if rcode in _RCODE_FAILURE:
        return text, (), _RCODE_FAILURE[rcode]
    if rcode != dns.rcode.NOERROR:
        return text, (), DnsFailure.SERVFAIL
    answers: list[str] = []
    for rrset in resp.answer:
        if rrset.rdtype == rdtype:  # CNAMEs in the chain are followed by the resolver
            answers.extend(r.to_text() for r in rrset)
    return text, tuple(answers), None if answers else DnsFailure.NO_ANSWER


async def resolve(
    name: str,
    resolver: tuple[str, int],
    *,
    timeout: float = 2.0,
    ip_version: IpVersion = "4",
    bogons: frozenset[BogonKind] = DEFAULT_BOGONS,
) -> DnsResult:
    """Resolve ``name`` at ``resolver`` (A, AAAA or both, concurrently) within ``timeout``."""
    ip, port = resolver
    types: list[dns.rdatatype.RdataType] = []
    if ip_version in ("4", "both"):
        types.append(dns.rdatatype.A)
    if ip_version in ("6", "both"):
        types.append(dns.rdatatype.AAAA)
    fqdn = dns.name.from_text(name).to_text()
    start = time.perf_counter_ns()
    results = await asyncio.gather(*(_query(fqdn, t, ip, port, timeout) for t in types))
    ms = round((time.perf_counter_ns() - start) / 1e6, 3)
    answers = tuple(a for _, ans, _ in results for a in ans)
    rcode = next((r for r, _, _ in results if r is not None), None)
    label = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    failure: str | None = None
    if not answers:
        failed = {f for _, _, f in results if f is not None}
        first = next(f for f in _FAILURE_ORDER if f in failed)
        failure = outcome(Stage.DNS, first)
        return DnsResult(DnsInfo(label, (), failure, rcode), (), (), ms)
    usable: list[str] = []
    bogus: list[tuple[str, BogonKind]] = []
    for a in answers:
        kind = bogon_kind(a, bogons)
        if kind is None:
            usable.append(a)
        else:
            bogus.append((a, kind))
    if not usable:
        failure = outcome(Stage.DNS, DnsFailure.BOGON, bogus[0][1])
    return DnsResult(DnsInfo(label, answers, failure, rcode), tuple(usable), tuple(bogus), ms)

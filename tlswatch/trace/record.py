"""The ``tlswatch-trace/1`` record: one trace, its hops, the located hop and the evidence.

A record kind of its own (``"type": "trace"``), not a ``tlswatch/1`` observation: it holds
many handshakes per TTL. JSON shape: ``tlswatch/trace/trace.schema.json``; keys are stable,
new keys may be added. Peer-supplied text (subjects, issuers, SANs) is cut and kept
JSON-escaped; display it through :func:`tlswatch.textsafe.terminal_safe`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from tlswatch.model import to_plain

__all__ = [
    "SCHEMA",
    "LeafSummary",
    "ProbeSummary",
    "TraceHop",
    "TraceOptions",
    "TraceRecord",
    "TraceTarget",
    "record_line",
]

SCHEMA: Final = "tlswatch-trace/1"


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceTarget:
    """Where the trace went. ``domain``/``resolved``: when TARGET was a name (resolved once)."""

    ip: str
    port: int
    sni: str
    control_sni: str | None
    domain: str | None = None
    resolved: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LeafSummary:
    """The presented leaf, in short (the full chain is in the probe's records, not here)."""

    subject: str | None
    issuer: str | None
    sans: tuple[str, ...] = ()
    not_before: str | None = None
    not_after: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeSummary:
    """What one probe kind (target SNI, control SNI or SYN) drew at one TTL.

    ``response`` is the representative of the repeats (``counts`` has them all); ``outcome``
    is in the tlswatch/1 vocabulary (``cert/...`` for a chain, ``tls/...``/``tcp/...``
    otherwise) for answers from the far side; ``verdict`` judges a target answer against
    the control's answer at the full path (the probe's verdict engine).
    """

    response: str
    router: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    elapsed_ms: float | None = None
    failure: str | None = None
    tls_version: str | None = None
    history: str | None = None
    syn_ack_ttl: int | None = None
    server_ttl: int | None = None
    server_ip_id: int | None = None
    rst_ttl: int | None = None
    rst_ip_id: int | None = None
    fin_ttl: int | None = None
    quoted_ttl: int | None = None
    quoted_offset: int | None = None
    chain_sha256: tuple[str, ...] = ()
    leaf: LeafSummary | None = None
    outcome: str | None = None
    interception: str | None = None
    verdict: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceHop:
    """One TTL. ``router`` is the ICMP source that answered at this TTL (control first)."""

    ttl: int
    router: str | None = None
    target: ProbeSummary | None = None
    control: ProbeSummary | None = None
    syn: ProbeSummary | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceOptions:
    max_ttl: int
    timeout: float
    repeats: int
    syn: bool
    pause: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceRecord:
    """One trace. ``located_hop``: where interception or injection starts (None: nowhere);
    ``server_hop``: the smallest TTL at which the control SNI is answered; ``tcp_hop``: the
    smallest TTL at which a TTL-limited SYN completes the TCP handshake."""

    type: str = "trace"
    schema: str = SCHEMA
    id: str
    time: str
    target: TraceTarget
    options: TraceOptions
    hops: tuple[TraceHop, ...]
    located_hop: int | None
    located_router: str | None
    server_hop: int | None
    tcp_hop: int | None
    kind: str
    evidence: tuple[str, ...]
    verdict: str
    outcome: str
    confidence: float
    rule_id: str
    rules_version: str
    reasons: tuple[str, ...]
    stores: tuple[dict[str, str], ...] = ()


def record_line(record: TraceRecord) -> str:
    """One compact JSON line (no newline); ASCII-escaped like every tlswatch record."""
    plain: dict[str, Any] = to_plain(record)
    for hop in plain["hops"]:
        for key in ("target", "control", "syn"):
            if hop[key] is not None:
                # Per-probe facts are sparse (a router's ICMP has no chain): omit the empty.
                hop[key] = {k: v for k, v in hop[key].items() if v not in (None, [], {})}
    return json.dumps(plain, ensure_ascii=True, separators=(",", ":"))

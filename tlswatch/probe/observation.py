"""What one probe saw: the raw observation handed to ``x509``/``classify`` (no verdicts here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tlswatch.model import DnsInfo, Flow, HttpInfo, Target, TcpInfo, TlsInfo

__all__ = ["ProbeObservation"]


@dataclass(frozen=True, slots=True)
class ProbeObservation:
    """One measurement of one target from here.

    ``failure`` is the first stage that failed, as ``stage/class[:detail]``
    (:mod:`tlswatch.failures`), or None when every attempted stage succeeded. ``chain_der`` is
    the chain exactly as presented, leaf first, even when the handshake failed later (when
    the wire showed it). ``non_tls_prefix`` keeps the first bytes of a non-TLS answer (a
    blockpage on 443) as evidence. ``started`` is the wall-clock time the probe began (UTC).
    """

    target: Target
    started: datetime
    tcp: TcpInfo = field(default_factory=TcpInfo)
    tls: TlsInfo = field(default_factory=TlsInfo)
    dns: DnsInfo | None = None
    chain_der: tuple[bytes, ...] = field(default=(), repr=False)
    http: HttpInfo | None = None
    failure: str | None = None
    anomalies: tuple[str, ...] = ()
    flow: Flow | None = None
    non_tls_prefix: bytes = field(default=b"", repr=False)
    dns_ms: float | None = None
    http_ms: float | None = None
    total_ms: float | None = None

    def __post_init__(self) -> None:
        if self.started.tzinfo is None:
            raise ValueError("started must be timezone-aware (UTC)")

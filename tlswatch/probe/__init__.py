"""Live probes: the only socket code. Observes (bytes, chains, timings, failures); never judges.

``measure(target, …) -> ProbeObservation`` runs DNS → TCP → TLS (pyOpenSSL over memory BIOs,
every byte mirrored into :mod:`tlswatch.tls`) → optional ``GET /``, each stage with its own
timeout. ``classify`` turns observations into verdicts.

The names below load their modules when first used (asyncio, dnspython and pyOpenSSL cost
~0.1 s at start-up, which commands that never probe, such as ``tlswatch analyse``, skip).
"""

from typing import TYPE_CHECKING

from tlswatch._lazy import lazy_exports

if TYPE_CHECKING:
    from tlswatch.probe.dns import DEFAULT_BOGONS, LAB_BOGONS, BogonKind, bogon_kind, resolve
    from tlswatch.probe.http_fetch import http_get
    from tlswatch.probe.measure import SNI_FROM_DOMAIN, Timeouts, measure
    from tlswatch.probe.observation import ProbeObservation
    from tlswatch.probe.tcp import tcp_connect
    from tlswatch.probe.tls_client import (
        DEFAULT_MAX_BYTES,
        OPENSSL_MAX_CERT_LIST,
        HandshakeResult,
        KeyLog,
        TlsOptions,
        TlsSession,
    )

__all__ = [
    "DEFAULT_BOGONS",
    "DEFAULT_MAX_BYTES",
    "LAB_BOGONS",
    "OPENSSL_MAX_CERT_LIST",
    "SNI_FROM_DOMAIN",
    "BogonKind",
    "HandshakeResult",
    "KeyLog",
    "ProbeObservation",
    "Timeouts",
    "TlsOptions",
    "TlsSession",
    "bogon_kind",
    "http_get",
    "measure",
    "resolve",
    "tcp_connect",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".dns": ("DEFAULT_BOGONS", "LAB_BOGONS", "BogonKind", "bogon_kind", "resolve"),
    ".http_fetch": ("http_get",),
    ".measure": ("SNI_FROM_DOMAIN", "Timeouts", "measure"),
    ".observation": ("ProbeObservation",),
    ".tcp": ("tcp_connect",),
    ".tls_client": ("DEFAULT_MAX_BYTES", "OPENSSL_MAX_CERT_LIST", "HandshakeResult", "KeyLog",
                    "TlsOptions", "TlsSession"),
})

"""OONI failure strings (``df-007-errors``) as tlswatch outcomes (table: ``docs/report.md``).

OONI names *what* went wrong (``connection_reset``), not *when*; a tlswatch outcome needs
both, so the stage comes from where the string sits in the measurement: a ``failure`` of a
``tls_handshakes[]`` entry happened during the TLS handshake (``connection_reset`` there is
``tls/reset``, a reset after the ClientHello), one in ``tcp_connect[]`` while connecting
(``tcp/reset``), one in ``queries[]`` or ``dns_experiment_failure`` while resolving.

Certificate verification failures (``ssl_invalid_hostname``, ``ssl_unknown_authority``,
``ssl_invalid_certificate``) are not outcomes of their own: the chain is judged whenever
OONI kept it, and only a handshake without certificates falls back to :data:`CERT_FAILURES`.
A string that cannot be placed (OONI's ``unknown_failure: …``, which carries the probe's own
error text, often about the probe's own network) is ``tls/failed`` during a handshake and
``setup/system_failure`` (verdict ``inconclusive``) elsewhere.
"""

from __future__ import annotations

from enum import StrEnum

from tlswatch.failures import (
    CertOutcome,
    DnsFailure,
    SetupFailure,
    Stage,
    TcpFailure,
    TlsFailure,
    outcome,
)

__all__ = ["CERT_FAILURES", "OoniStage", "map_failure"]


class OoniStage(StrEnum):
    """Where in a measurement a failure string was found."""

    DNS = "dns"
    TCP = "tcp"
    TLS = "tls"


#: Certificate verification failures: the chain (when OONI kept it) is judged instead, and
#: only a handshake that kept no certificates falls back to these outcomes.
CERT_FAILURES: dict[str, str] = {
    "ssl_invalid_hostname": outcome(Stage.CERT, CertOutcome.HOSTNAME_MISMATCH),
    "ssl_unknown_authority": outcome(Stage.CERT, CertOutcome.UNTRUSTED_ROOT),
    "ssl_unknown_autority": outcome(Stage.CERT, CertOutcome.UNTRUSTED_ROOT),  # df-007 spelling
    "ssl_invalid_certificate": outcome(Stage.CERT, CertOutcome.INVALID),
}

_DNS: dict[str, DnsFailure] = {
    "dns_nxdomain_error": DnsFailure.NXDOMAIN,
    "dns_name_error": DnsFailure.NXDOMAIN,
    "dns_no_answer": DnsFailure.NO_ANSWER,
    "dns_refused_error": DnsFailure.REFUSED,
    "dns_server_misbehaving": DnsFailure.SERVFAIL,
    "dns_servfail_error": DnsFailure.SERVFAIL,
    "dns_name_failure": DnsFailure.SERVFAIL,
    "dns_lookup_error": DnsFailure.SERVFAIL,
    "dns_bogon_error": DnsFailure.BOGON,
}
_TIMEOUTS = frozenset({"generic_timeout_error", "deferred_timeout_error", "task_timed_out",
                       "tcp_timed_out_error"})
_REFUSED = frozenset({"connection_refused", "connection_refused_error"})
_UNREACHABLE = frozenset({"host_unreachable", "network_unreachable", "connect_error"})
_EOF = frozenset({"eof_error", "connection_done", "connection_lost_error"})


def map_failure(failure: str, stage: OoniStage) -> str:
    """The tlswatch outcome for an OONI failure string found at ``stage``."""
    key = failure.strip()
    if key in _DNS:
        return outcome(Stage.DNS, _DNS[key])
    if key in CERT_FAILURES:
        return CERT_FAILURES[key]
    if key in _REFUSED:
        return outcome(Stage.TCP, TcpFailure.REFUSED)
    if key in _UNREACHABLE:
        return outcome(Stage.TCP, TcpFailure.UNREACHABLE)
    if key in _TIMEOUTS:
        return {OoniStage.DNS: outcome(Stage.DNS, DnsFailure.TIMEOUT),
                OoniStage.TCP: outcome(Stage.TCP, TcpFailure.TIMEOUT),
                OoniStage.TLS: outcome(Stage.TLS, TlsFailure.TIMEOUT)}[stage]
    if stage is OoniStage.TLS:
        if key == "connection_reset":
            return outcome(Stage.TLS, TlsFailure.RESET)
        if key in _EOF:
            return outcome(Stage.TLS, TlsFailure.EOF)
        return outcome(Stage.TLS, TlsFailure.FAILED)  # ssl_failed_handshake, unknown_failure …
    if stage is OoniStage.TCP and (key == "connection_reset" or key in _EOF):
        return outcome(Stage.TCP, TcpFailure.RESET)
    return outcome(Stage.SETUP, SetupFailure.SYSTEM_FAILURE)

"""OONI failure strings -> tlswatch outcomes (``tlswatch.ooni.failures``)."""

from __future__ import annotations

import pytest

from tlswatch.ooni import OoniStage, map_failure

DNS, TCP, TLS = OoniStage.DNS, OoniStage.TCP, OoniStage.TLS


@pytest.mark.parametrize(("failure", "stage", "expected"), [
    ("connection_reset", TLS, "tls/reset"),
    ("connection_reset", TCP, "tcp/reset"),
    ("generic_timeout_error", TLS, "tls/timeout"),
    ("generic_timeout_error", TCP, "tcp/timeout"),
    ("generic_timeout_error", DNS, "dns/timeout"),
    ("eof_error", TLS, "tls/eof"),
    ("connection_refused", TCP, "tcp/refused"),
    ("connection_refused_error", TCP, "tcp/refused"),
    ("dns_nxdomain_error", DNS, "dns/nxdomain"),
    ("dns_no_answer", DNS, "dns/no_answer"),
    ("dns_refused_error", DNS, "dns/refused"),
    ("dns_server_misbehaving", DNS, "dns/servfail"),
    ("dns_bogon_error", DNS, "dns/bogon"),
    ("host_unreachable", TCP, "tcp/unreachable"),
    ("network_unreachable", TCP, "tcp/unreachable"),
    ("ssl_failed_handshake", TLS, "tls/failed"),
    ("ssl_invalid_hostname", TLS, "cert/hostname_mismatch"),
    ("ssl_unknown_authority", TLS, "cert/untrusted_root"),
    ("ssl_unknown_autority", TLS, "cert/untrusted_root"),  # df-007's spelling
    ("ssl_invalid_certificate", TLS, "cert/invalid"),
    ("unknown_failure: remote error: tls: unrecognized name", TLS, "tls/failed"),
    ("unknown_failure: dial tcp [scrubbed]: connect: no route to host", TCP,
     "setup/system_failure"),
    ("connection_reset", DNS, "setup/system_failure"),
])
def test_mapping(failure: str, stage: OoniStage, expected: str) -> None:
    assert map_failure(failure, stage) == expected

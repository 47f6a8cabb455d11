"""tlswatch.testing.quic_transcripts: deterministic QUIC handshakes our analyser can open."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tlswatch.quic import QUIC_V1, QUIC_V2, analyse_quic_datagrams, parse_long_headers
from tlswatch.testing import CertFactory
from tlswatch.testing.quic_transcripts import quic_handshake
from tlswatch.tls.keylog import KeyLog


@pytest.mark.parametrize(("version", "suite"), [(QUIC_V1, 0x1301), (QUIC_V2, 0x1302),
                                                (QUIC_V2, 0x1303)])
def test_deterministic_and_opened_with_its_key_log(version: int, suite: int) -> None:
    sc = CertFactory(seed=0).legitimate("example.org")
    assert sc.leaf_key is not None
    q = quic_handshake(sc.chain, sc.leaf_key, sni="example.org", seed=1, label="t",
                       version=version, suite=suite)
    again = quic_handshake(sc.chain, sc.leaf_key, sni="example.org", seed=1, label="t",
                           version=version, suite=suite)
    assert q == again
    other = quic_handshake(sc.chain, sc.leaf_key, sni="example.org", seed=2, label="t",
                           version=version, suite=suite)
    assert other.datagrams != q.datagrams
    for from_client, dg in q.datagrams:
        assert len(dg) <= 1200 and (len(dg) == 1200 or not from_client)
        assert all(h.version == version for h in parse_long_headers(dg))
    c, s = ("192.0.2.1", 50000), ("198.51.100.7", 443)
    dgs = [(i, *(c if up else s), *(s if up else c), dg)
           for i, (up, dg) in enumerate(q.datagrams)]
    (obs,) = analyse_quic_datagrams(dgs, secrets=KeyLog(q.keylog).get)
    assert (obs.sni, obs.cipher, obs.keylog, obs.server_alpn) == (
        "example.org", suite, "decrypted", "h3")
    assert obs.dcid == q.dcid.hex() and obs.handshake_complete and obs.anomalies == []
    assert obs.chain_der == tuple(x.public_bytes(Encoding.DER) for x in sc.chain)

"""QUIC Handshake packets carrying a CompressedCertificate (RFC 8879), as Google's and
Cloudflare's servers send to browsers: the chain is inflated and judged; hostile messages
become anomalies while the handshake is still read to its Finished.

aioquic implements no certificate compression, so the handshakes are the test kit's
(``quic_handshake(compress_certificate=...)``: real QUIC packet protection and key schedule).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import require_module
from tls.compressed_common import CLIENT, SERVER, STORE, T0, ders, scenario

from tlswatch.cli.main import cli
from tlswatch.quic import QUIC_V2, QuicFlowObservation, analyse_quic_datagrams
from tlswatch.testing import Scenario
from tlswatch.testing.pcap_writer import pcap_bytes, udp_datagram
from tlswatch.testing.quic_transcripts import QuicTranscript, quic_handshake
from tlswatch.tls.keylog import KeyLog


def handshake(sc: Scenario, compression: Any, **kw: Any) -> QuicTranscript:
    assert sc.leaf_key is not None
    return quic_handshake(sc.chain, sc.leaf_key, sni=sc.host, seed=1, label="cc",
                          compress_certificate=compression, **kw)


def observe(q: QuicTranscript) -> QuicFlowObservation:
    dgs = [(T0 + i * 1000, "192.0.2.10" if c else "198.51.100.7", 50000 if c else 443,
            "198.51.100.7" if c else "192.0.2.10", 443 if c else 50000, p)
           for i, (c, p) in enumerate(q.datagrams)]
    (obs,) = analyse_quic_datagrams(dgs, secrets=KeyLog(q.keylog).get)
    return obs


@pytest.mark.parametrize("algorithm", ["zlib", "brotli"])
@pytest.mark.parametrize("version", [1, QUIC_V2])
def test_compressed_chain_is_recovered(algorithm: str, version: int) -> None:
    sc = scenario("legitimate", "example.org")
    obs = observe(handshake(sc, algorithm, version=version))
    assert obs.keylog == "decrypted" and obs.handshake_complete
    assert obs.chain_der == ders(sc) and obs.server_alpn == "h3"
    assert obs.anomalies == [f"server:certificate_compressed:{algorithm}"]


def test_zstd_when_zstandard_is_installed() -> None:
    require_module("zstandard")  # optional: without it the note says not_supported
    sc = scenario("legitimate", "example.org")
    obs = observe(handshake(sc, "zstd"))
    assert obs.chain_der == ders(sc)
    assert obs.anomalies == ["server:certificate_compressed:zstd"]


def test_plain_certificate_has_no_note() -> None:
    sc = scenario("legitimate", "example.org")
    obs = observe(handshake(sc, None))
    assert obs.chain_der == ders(sc) and obs.anomalies == []


def _bomb(body: bytes) -> bytes:
    # The CRYPTO stream is capped at 64 KiB, so the bomb's compressed size must fit in it.
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(bytes(1 << 20)) for _ in range(32)) + comp.flush()
    assert len(data) < 40_000
    return b"\x00\x01" + (1 << 20).to_bytes(3, "big") + len(data).to_bytes(3, "big") + data


def _truncated(body: bytes) -> bytes:
    data = zlib.compress(body)[:-20]
    return b"\x00\x01" + len(body).to_bytes(3, "big") + len(data).to_bytes(3, "big") + data


def _over_cap(body: bytes) -> bytes:
    data = zlib.compress(body)
    return b"\x00\x01" + b"\xff\xff\xff" + len(data).to_bytes(3, "big") + data


@pytest.mark.parametrize(("builder", "problem"), [
    (_bomb, "length_mismatch"), (_truncated, "corrupt"), (_over_cap, "over_cap"),
])
def test_hostile_compressed_certificate_is_an_anomaly(builder: Any, problem: str) -> None:
    sc = scenario("legitimate", "example.org")
    obs = observe(handshake(sc, builder))
    assert obs.keylog == "decrypted"  # the Finished after it was still read
    assert obs.chain_der == ()
    assert obs.anomalies == [f"server:certificate_compressed:zlib:{problem}"]


def _records(tmp_path: Path, q: QuicTranscript) -> dict[str, Any]:
    packets = []
    for i, (from_client, payload) in enumerate(q.datagrams):
        src, dst = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
        sport, dport = (50000, 443) if from_client else (443, 50000)
        packets.append(udp_datagram(src, dst, sport=sport, dport=dport, payload=payload,
                                    t_ns=T0 + i * 20_000_000, ip_id=i + 1))
    (tmp_path / "q.pcap").write_bytes(pcap_bytes(packets))
    (tmp_path / "q.keylog").write_text(q.keylog)
    r = CliRunner().invoke(cli, ["analyse", str(tmp_path / "q.pcap"), "--store", STORE,
                                 "--keylog", str(tmp_path / "q.keylog")])
    assert r.exit_code == 0, r.stderr
    (rec,) = [x for x in map(json.loads, r.stdout.splitlines()) if x.get("kind") is None]
    return rec  # type: ignore[no-any-return]


def test_forged_2019_chain_over_quic_sent_compressed_is_intercepted(tmp_path: Path) -> None:
    sc = scenario("forged_2019", "facebook.com")
    rec = _records(tmp_path, handshake(sc, "brotli"))
    assert rec["verdict"] == "intercepted"
    assert rec["outcome"].startswith("cert/known_interception_ca:")
    assert len(rec["chain"]) == len(sc.chain)
    assert "server:certificate_compressed:brotli" in rec["anomalies"]

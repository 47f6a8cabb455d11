"""QUIC flows in a capture: the RFC 9001 Initials, as UDP datagrams, become records."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from quic.vectors import CLIENT_INITIAL_V1, CLIENT_INITIAL_V2, SERVER_INITIAL_V1

from tlswatch.cli.main import cli
from tlswatch.record_schema import load_schema
from tlswatch.testing.pcap_writer import Host, pcap_bytes, udp_datagram

CLIENT = Host("192.0.2.10", "02:00:00:00:00:0a")
SERVER = Host("198.51.100.7", "02:00:00:00:00:07", ttl=52)
T0 = 1_564_660_800_000_000_000  # 2019-08-01T12:00:00Z


def _capture(tmp_path: Path, name: str, exchanges: list[tuple[bool, bytes]]) -> Path:
    packets = []
    for i, (from_client, payload) in enumerate(exchanges):
        src, dst = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
        sport, dport = (50000, 443) if from_client else (443, 50000)
        packets.append(udp_datagram(src, dst, sport=sport, dport=dport, payload=payload,
                                    t_ns=T0 + i * 20_000_000, ip_id=i + 1))
    path = tmp_path / name
    path.write_bytes(pcap_bytes(packets))
    return path


def _records(path: Path) -> list[dict[str, object]]:
    r = CliRunner().invoke(cli, ["analyse", str(path)])
    assert r.exit_code == 0, r.stderr
    import jsonschema

    schema = load_schema()
    out = [json.loads(x) for x in r.stdout.splitlines()]
    for rec in out:
        jsonschema.validate(rec, schema)
    return [x for x in out if x.get("kind") is None]


def test_quic_handshake_reports_sni_ja4_and_an_encrypted_chain(tmp_path: Path) -> None:
    path = _capture(tmp_path, "quic.pcap", [(True, CLIENT_INITIAL_V1), (False, SERVER_INITIAL_V1)])
    (rec,) = _records(path)
    assert rec["target"]["sni"] == "example.com"  # type: ignore[index]
    assert rec["flow"]["transport"] == "udp"  # type: ignore[index]
    assert rec["tls"]["ja4"].startswith("q13")  # type: ignore[index]
    assert (rec["verdict"], rec["outcome"]) == ("inconclusive", "cert/no_chain")
    assert any("QUIC" in r for r in rec["reasons"])  # type: ignore[union-attr]


def test_unanswered_quic_v2_initial_is_a_quic_failure(tmp_path: Path) -> None:
    path = _capture(tmp_path, "quic2.pcap", [(True, CLIENT_INITIAL_V2)])
    (rec,) = _records(path)
    assert rec["outcome"] == "quic/no_response" and rec["verdict"] == "anomaly"
    assert rec["tls"]["version"] == "QUICv2"  # type: ignore[index]

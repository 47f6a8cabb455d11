"""QUIC flows in a capture: the RFC 9001 Initials, as UDP datagrams, become records."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
from click.testing import CliRunner
from quic.vectors import CLIENT_INITIAL_V1, CLIENT_INITIAL_V2, SERVER_INITIAL_V1

from tlswatch.cli.main import cli
from tlswatch.record_schema import load_schema
from tlswatch.testing import CertFactory
from tlswatch.testing.pcap_writer import Host, pcap_bytes, udp_datagram

if TYPE_CHECKING:
    from quic.aioquic_session import Session

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


# -- with a key log: handshakes made by aioquic, judged end to end ---------------------------

STORE = str(Path(__file__).resolve().parents[2] / "captures" / "lab-public-root.pem")


def _wrong_secrets(s: Session) -> str:
    """Secrets of the right shape, under this session's client random, that are not its own."""
    return "".join(f"{line.split()[0]} {s.client_random.hex()} {'5a' * 48}\n"
                   for line in s.keylog.splitlines())


def _aioquic(tmp_path: Path, scenario: str, host: str, version: int = 1,
             keylog: Callable[[Session], str] | None = lambda s: s.keylog,
             ) -> tuple[list[dict[str, Any]], str]:
    from quic.aioquic_session import handshake  # (skips without aioquic)

    sc = getattr(CertFactory(seed=0), scenario)(host)
    assert sc.leaf_key is not None
    s = handshake(sc.chain, sc.leaf_key, host=host, version=version)
    pcap = s.pcap(tmp_path / "quic.pcap")
    args = ["analyse", str(pcap), "--store", STORE]
    if keylog is not None:
        (tmp_path / "k.log").write_text(keylog(s))
        args += ["--keylog", str(tmp_path / "k.log")]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.stderr
    schema = load_schema()
    out = [json.loads(x) for x in r.stdout.splitlines()]
    for rec in out:
        jsonschema.validate(rec, schema)
    return [x for x in out if x.get("kind") is None], r.stderr


def test_quic_chain_from_a_key_log_is_judged_valid(tmp_path: Path) -> None:
    (rec,), err = _aioquic(tmp_path, "legitimate", "example.org")
    assert (rec["verdict"], rec["outcome"]) == ("ok", "cert/valid")
    assert rec["tls"]["alpn"] == "h3" and rec["tls"]["cipher"] == "TLS_AES_256_GCM_SHA384"
    assert rec["target"]["sni"] == "example.org" and rec["tls"]["ja4"].startswith("q13d")
    assert len(rec["chain"]) == 2 and rec["validation"][0]["trusted"]
    assert "TLS 1.3: the handshake was decrypted with a key log" in rec["reasons"]
    assert "1 decrypted with key logs" in err


def test_quic_v2_interception_chain_comes_out_intercepted(tmp_path: Path) -> None:
    (rec,), _ = _aioquic(tmp_path, "forged_2019", "facebook.com", version=0x6B3343CF)
    assert rec["tls"]["version"] == "QUICv2"
    assert rec["verdict"] == "intercepted"
    assert rec["outcome"].startswith("cert/known_interception_ca:")
    assert rec["interception"]["matched"]
    assert "Security Certificate" in rec["chain"][1]["subject"]


def test_quic_without_a_key_log_the_chain_is_encrypted(tmp_path: Path) -> None:
    (rec,), _ = _aioquic(tmp_path, "forged_2019", "facebook.com", keylog=None)
    assert (rec["verdict"], rec["outcome"]) == ("inconclusive", "cert/no_chain")
    assert any("encrypted Handshake packets" in r for r in rec["reasons"])
    assert rec["chain"] == []


def test_quic_wrong_key_log_is_a_reason_and_a_warning(tmp_path: Path) -> None:
    (rec,), err = _aioquic(tmp_path, "forged_2019", "facebook.com", keylog=_wrong_secrets)
    assert (rec["verdict"], rec["outcome"]) == ("inconclusive", "cert/no_chain")
    assert rec["chain"] == []
    assert any(r.startswith("the key log did not decrypt the handshake") for r in rec["reasons"])
    assert "1 not decrypted by the key log" in err


def test_sample_capture_with_its_key_log_gives_the_manifest_verdict() -> None:
    captures = Path(STORE).parent
    manifest = json.loads((captures / "MANIFEST.json").read_text())["files"]
    expect = next(e for e in manifest if e["name"] == "kz2019-intercepted-quic.pcap")["expect"]
    r = CliRunner().invoke(cli, ["analyse", str(captures / "kz2019-intercepted-quic.pcap"),
                                 "--store", STORE, "--keylog",
                                 str(captures / "kz2019-intercepted-quic.keylog")])
    assert r.exit_code == 0, r.stderr
    (rec,) = [x for x in map(json.loads, r.stdout.splitlines()) if x.get("kind") is None]
    assert (rec["verdict"], rec["outcome"]) == (expect["verdict"], expect["outcome"])
    assert rec["tls"]["ja4"] == "q13d0308h3_55b375c5d22e_ed24036c84fa"
    assert rec["interception"]["evidence"] == "issuer_name_only" and len(rec["chain"]) == 3


def test_key_log_in_a_pcapng_decryption_secrets_block_opens_quic(tmp_path: Path) -> None:
    from quic.aioquic_session import handshake

    from tlswatch.testing.pcap_writer import pcapng_bytes

    sc = CertFactory(seed=0).legitimate("example.org")
    assert sc.leaf_key is not None
    s = handshake(sc.chain, sc.leaf_key, host="example.org", cipher=0x1303)
    path = tmp_path / "q.pcapng"
    path.write_bytes(pcapng_bytes(s.packets(), keylog=s.keylog.encode()))
    r = CliRunner().invoke(cli, ["analyse", str(path), "--store", STORE])
    assert r.exit_code == 0, r.stderr
    (rec,) = [x for x in map(json.loads, r.stdout.splitlines()) if x.get("kind") is None]
    assert (rec["verdict"], rec["outcome"]) == ("ok", "cert/valid")
    assert rec["tls"]["cipher"] == "TLS_CHACHA20_POLY1305_SHA256"

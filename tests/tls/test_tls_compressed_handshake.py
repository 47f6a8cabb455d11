"""Decrypted TLS 1.3 handshakes whose server sends a CompressedCertificate (RFC 8879): the
chain is recovered, judged like an uncompressed one, and the record notes the compression.

The handshakes come from the test kit (``tls13_handshake(compress_certificate=...)``); tshark
(an independent TLS implementation) reads the same chain out of the same capture.
"""

from __future__ import annotations

import json
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import require_tool
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tls.compressed_common import CLIENT, SERVER, STORE, T0, ders, scenario
from tlswatch.cli.main import cli
from tlswatch.testing import Scenario
from tlswatch.testing.pcap_writer import TcpFlow, pcap_bytes, replay
from tlswatch.testing.transcripts import Transcript, tls13_handshake, transcript_hash
from tlswatch.tls.decrypt import DecryptState, HandshakeDecryptor
from tlswatch.tls.hello import ExtensionType, decode_client_hello
from tlswatch.tls.keylog import KeyLog


def transcript(sc: Scenario, compression: Any, **kw: Any) -> Transcript:
    assert sc.leaf_key is not None
    return tls13_handshake(sc.chain, sc.leaf_key, sni=sc.host, seed=1, label="cc",
                           compress_certificate=compression, **kw)


def decrypt(t: Transcript) -> HandshakeDecryptor:
    secret = KeyLog(t.keylog).get(t.client_random, "SERVER_HANDSHAKE_TRAFFIC_SECRET")
    assert secret is not None
    dec = HandshakeDecryptor(t.cipher_suite, secret)
    stream = t.sent_by("server")
    for i in range(0, len(stream), 333):  # any chunking
        dec.feed(stream[i : i + 333])
    return dec


@pytest.mark.parametrize("algorithm", ["zlib", "brotli"])
@pytest.mark.parametrize("hello_retry", [False, True])
def test_decryptor_inflates_the_chain(algorithm: str, hello_retry: bool) -> None:
    sc = scenario("legitimate", "example.org")
    dec = decrypt(transcript(sc, algorithm, hello_retry=hello_retry))
    assert dec.state is DecryptState.DONE
    assert dec.certificates == ders(sc)
    assert dec.anomalies == [f"certificate_compressed:{algorithm}"]


def test_plain_certificate_has_no_note() -> None:
    sc = scenario("legitimate", "example.org")
    dec = decrypt(transcript(sc, None))
    assert dec.state is DecryptState.DONE and dec.certificates == ders(sc) and not dec.anomalies


def _liar(body: bytes) -> bytes:
    """zlib data with an uncompressed_length one byte short."""
    data = zlib.compress(body)
    return b"\x00\x01" + (len(body) - 1).to_bytes(3, "big") + len(data).to_bytes(3, "big") + data


def _bomb(body: bytes) -> bytes:
    """16 MiB of zeros declared as the real certificate's length."""
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(bytes(1 << 20)) for _ in range(16)) + comp.flush()
    return b"\x00\x01" + len(body).to_bytes(3, "big") + len(data).to_bytes(3, "big") + data


def _unknown(body: bytes) -> bytes:
    return b"\x12\x34" + len(body).to_bytes(3, "big") + len(body).to_bytes(3, "big") + body


@pytest.mark.parametrize(("builder", "note"), [
    (_liar, "certificate_compressed:zlib:length_mismatch"),
    (_bomb, "certificate_compressed:zlib:length_mismatch"),
    (_unknown, "certificate_compressed:0x1234:unknown_algorithm"),
])
def test_hostile_compressed_certificate_is_a_note_and_decryption_goes_on(
        builder: Any, note: str) -> None:
    sc = scenario("legitimate", "example.org")
    dec = decrypt(transcript(sc, builder))
    assert dec.state is DecryptState.DONE  # the server's Finished was still read
    assert dec.certificates is None
    assert dec.anomalies == [note]


def test_client_offers_compress_certificate_only_when_asked() -> None:
    sc = scenario("legitimate", "example.org")
    for compression, offered in ((None, False), ("brotli", True)):
        t = transcript(sc, compression)
        ch = decode_client_hello(t.handshake_messages[0][4:])
        ext = next((e for e in ch.extensions
                    if e.type == ExtensionType.COMPRESS_CERTIFICATE), None)
        assert (ext is not None) is offered
        if ext is not None:
            assert ext.data == b"\x06\x00\x01\x00\x02\x00\x03"  # zlib, brotli, zstd


def test_certificate_verify_covers_the_compressed_message() -> None:
    # RFC 8879 §4: the CompressedCertificate replaces Certificate in the transcript hash.
    sc = scenario("legitimate", "example.org")
    ch, sh, ee, cert, cv = transcript(sc, "brotli").handshake_messages[:5]
    assert cert[0] == 25 and cv[0] == 15
    content = (b" " * 64 + b"TLS 1.3, server CertificateVerify\x00"
               + transcript_hash(hashes.SHA256(), (ch, sh, ee, cert)))
    assert cv[4:6] == b"\x04\x03"  # ecdsa_secp256r1_sha256: the lab leaf is P-256
    pub = sc.chain[0].public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(cv[8:], content, ec.ECDSA(hashes.SHA256()))


# -- end to end: a capture and its key log through `tlswatch analyse` ------------------------


def _capture(tmp_path: Path, t: Transcript, name: str) -> tuple[Path, Path]:
    flow = TcpFlow(CLIENT, SERVER, client_port=40001, start_ns=T0)
    flow.connect()
    replay(flow, t.flights)
    flow.close("client")
    pcap, keylog = tmp_path / f"{name}.pcap", tmp_path / f"{name}.keylog"
    pcap.write_bytes(pcap_bytes(flow.packets))
    keylog.write_text(t.keylog)
    return pcap, keylog


def _analyse(pcap: Path, keylog: Path) -> dict[str, Any]:
    r = CliRunner().invoke(cli, ["analyse", str(pcap), "--store", STORE,
                                 "--keylog", str(keylog)])
    assert r.exit_code == 0, r.stderr
    (rec,) = [x for x in map(json.loads, r.stdout.splitlines()) if x.get("kind") is None]
    return rec  # type: ignore[no-any-return]


def test_forged_2019_chain_sent_compressed_is_judged_intercepted(tmp_path: Path) -> None:
    sc = scenario("forged_2019", "facebook.com")
    plain = _analyse(*_capture(tmp_path, transcript(sc, None), "plain"))
    comp = _analyse(*_capture(tmp_path, transcript(sc, "brotli"), "brotli"))
    assert comp["verdict"] == "intercepted"
    assert comp["outcome"].startswith("cert/known_interception_ca:")
    for key in ("verdict", "outcome", "chain", "interception", "validation"):
        assert comp[key] == plain[key], key
    assert "certificate_compressed:brotli" in comp["anomalies"]
    assert not any("certificate_compressed" in a for a in plain.get("anomalies", ()))


def test_hostile_compressed_certificate_in_a_capture_is_a_note(tmp_path: Path) -> None:
    sc = scenario("forged_2019", "facebook.com")
    rec = _analyse(*_capture(tmp_path, transcript(sc, _bomb), "bomb"))
    assert rec["chain"] == [] and rec["verdict"] != "intercepted"
    assert "certificate_compressed:zlib:length_mismatch" in rec["anomalies"]


def test_tshark_reads_the_same_compressed_chain(tmp_path: Path) -> None:
    # Wireshark 4.0 inflates brotli CompressedCertificates (not yet zlib or zstd).
    tshark = require_tool("tshark")
    sc = scenario("legitimate", "example.org")
    pcap, keylog = _capture(tmp_path, transcript(sc, "brotli"), "tshark")
    out = subprocess.run(
        [tshark, "-n", "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}",
         "-Y", "tls.handshake.type == 25", "-T", "fields",
         "-e", "tls.compress_certificate.algorithm", "-e", "tls.handshake.certificate"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    (line,) = out.splitlines()
    algorithm, certs = line.split("\t")
    assert algorithm == "2"
    assert tuple(bytes.fromhex(c) for c in certs.split(",")) == ders(sc)

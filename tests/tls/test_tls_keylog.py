"""tlswatch.tls.keylog: SSLKEYLOGFILE parsing, bounded, never raising on content."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tlswatch.tls.keylog import KeyLog, load_keylog

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
CR = bytes(range(32))
CR_HEX = CR.hex()


def test_sample_tls13_key_log() -> None:
    kl = load_keylog(CAPTURES / "clean-tls13.keylog")
    assert len(kl) == 1 and kl.bad_lines == 0 and kl.tls13_sessions == 1
    (random,) = kl._sessions  # one session
    assert len(kl.server_handshake_secret(random) or b"") == 32
    assert set(kl.secrets(random)) >= {"CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                                      "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                                      "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"}


def test_sha384_secrets() -> None:
    kl = load_keylog(CAPTURES / "clean-tls13-aes256.keylog")
    (random,) = kl._sessions
    assert len(kl.server_handshake_secret(random) or b"") == 48


def test_tls12_client_random_is_accepted_and_counted() -> None:
    kl = load_keylog(CAPTURES / "clean-tls12.keylog")
    assert kl.tls12_sessions == 1 and kl.labels["CLIENT_RANDOM"] == 1 and kl.bad_lines == 0
    (random,) = kl._sessions
    assert len(kl.master_secret(random) or b"") == 48
    assert kl.server_handshake_secret(random) is None
    assert "1 TLS 1.2 (CLIENT_RANDOM)" in kl.summary()


def test_bad_lines_are_counted_not_raised() -> None:
    text = "\n".join([
        "# a comment", "",
        f"CLIENT_RANDOM {CR_HEX} {'ab' * 48}",  # ok
        f"SERVER_HANDSHAKE_TRAFFIC_SECRET {CR_HEX} {'cd' * 32}",  # ok
        f"EXPORTER_SECRET {CR_HEX} {'ef' * 48}",  # ok (kept, unused)
        f"CLIENT_RANDOM {CR_HEX} {'ab' * 32}",  # master secret of the wrong length
        f"SERVER_HANDSHAKE_TRAFFIC_SECRET {'00' * 31} {'cd' * 32}",  # short random
        f"SERVER_HANDSHAKE_TRAFFIC_SECRET {CR_HEX} {'cd' * 20}",  # odd secret length
        f"RSA {'00' * 8} {'11' * 48}",  # unknown label
        f"CLIENT_RANDOM {CR_HEX} zz",  # not hex
        "only two",
        "x" * 10_000,  # over the line cap
        "CLIENT_RANDOM \udcff \udcfe",
    ])
    kl = KeyLog(text)
    assert kl.lines == 3 and kl.bad_lines == 8 and len(kl) == 1
    assert kl.server_handshake_secret(CR) == b"\xcd" * 32
    assert kl.get(CR, "EXPORTER_SECRET") == b"\xef" * 48
    assert "8 line(s) not understood" in kl.summary()


def test_sessions_are_bounded_and_later_lines_win() -> None:
    kl = KeyLog(max_sessions=2)
    for i in range(3):
        kl.add_text(f"SERVER_HANDSHAKE_TRAFFIC_SECRET {bytes([i]).hex() * 32} {'00' * 32}")
    assert len(kl) == 2 and kl.dropped == 1
    kl.add_text(f"SERVER_HANDSHAKE_TRAFFIC_SECRET {'00' * 32} {'11' * 32}".encode())
    assert kl.server_handshake_secret(bytes(32)) == b"\x11" * 32


@given(st.binary(max_size=2000))
def test_never_raises_on_any_bytes(data: bytes) -> None:
    kl = KeyLog()
    kl.add_text(data)
    assert kl.lines + kl.bad_lines + kl.dropped <= data.count(b"\n") + data.count(b"\r") + 1

from __future__ import annotations

import random

import pytest

from tlswatch.tls.connection import HISTORY_LETTERS, MAX_HISTORY, TLSConnection
from tlswatch.tls.events import AlertEvent, EncryptedRecordEvent
from tlswatch.tls.hello import HRR_RANDOM
from tlswatch.tls.parser import Status

from .tls_builders import (
    DATA,
    client_hello_body,
    ext,
    hs,
    load_transcript,
    record,
    server_hello_body,
    sni_ext,
)


def replay(name: str, split_seed: int | None = None) -> TLSConnection:
    conn = TLSConnection()
    rng = random.Random(split_seed)
    for side, data in load_transcript(name):
        feed = conn.feed_client if side == "c" else conn.feed_server
        if split_seed is None:
            feed(data)
        else:
            pos = 0
            while pos < len(data):
                step = rng.randint(1, 40)
                feed(data[pos : pos + step])
                pos += step
    conn.eof_client()
    conn.eof_server()
    return conn


@pytest.mark.parametrize("name", ["tls12", "tls13"])
def test_real_transcripts(name: str) -> None:
    conn = replay(name)
    assert conn.client_hello is not None and conn.client_hello.server_name == "example.test"
    assert conn.server_hello is not None
    assert conn.version == (0x0303 if name == "tls12" else 0x0304)
    assert conn.client.status is Status.DONE and conn.server.status is Status.DONE
    assert conn.ja3 and len(conn.ja3) == 32 and conn.ja3s and len(conn.ja3s) == 32
    assert conn.ja4 and conn.ja4.startswith("t12d" if name == "tls12" else "t13d")
    assert conn.alerts == []
    assert replay(name, split_seed=3).history == conn.history


def test_tls12_history_and_chain() -> None:
    conn = replay("tls12")
    assert conn.certificates == ((DATA / "server_cert.der").read_bytes(),)
    assert conn.server_hello is not None and conn.server_hello.alpn_protocol == b"h2"
    # client hello, server hello/cert/ske/done, client kx + CCS + encrypted finished,
    # server ticket + CCS + encrypted finished, then application data and both EOFs.
    assert conn.history.startswith("CsxknGID")
    assert conn.history.endswith("Ee")


def test_tls13_history() -> None:
    conn = replay("tls13")
    # The certificate travels encrypted in TLS 1.3, so it is not visible here.
    assert conn.certificates is None
    assert conn.history.startswith("CsidI")


def test_hrr_flow_keeps_second_client_hello_in_clear() -> None:
    tls13 = ext(43, b"\x03\x04")
    ch = record(22, hs(1, client_hello_body(extensions=(sni_ext(b"one.example"), tls13))))
    ch2 = record(22, hs(1, client_hello_body(extensions=(sni_ext(b"two.example"), tls13))))
    hrr = record(22, hs(2, server_hello_body(random=HRR_RANDOM, extensions=(tls13,))))
    sh = record(22, hs(2, server_hello_body(extensions=(tls13,))))
    conn = TLSConnection()
    conn.feed_client(ch)
    conn.feed_server(hrr)
    conn.feed_client(record(20, b"\x01") + ch2)  # compatibility CCS, then a cleartext hello
    conn.feed_server(sh + record(20, b"\x01") + record(23, b"x" * 50))
    conn.feed_client(record(23, b"y" * 30))
    assert conn.hello_retry_request is not None
    assert conn.client_hello is not None and conn.client_hello.server_name == "two.example"
    assert conn.history == "ChICsidD"
    assert conn.client.encrypted and conn.server.encrypted


def test_alert_after_client_hello_is_recorded() -> None:
    conn = TLSConnection()
    conn.feed_client(
        record(22, hs(1, client_hello_body(extensions=(sni_ext(b"blocked.example"),))))
    )
    conn.feed_server(record(21, b"\x02\x70"))
    conn.eof_server()
    assert conn.alerts == [(False, AlertEvent(2, 112, "unrecognized_name"))]
    assert conn.history == "Cae"


def test_not_tls_reply() -> None:
    conn = TLSConnection()
    conn.feed_client(record(22, hs(1, client_hello_body())))
    conn.feed_server(b"HTTP/1.1 403 Forbidden\r\n\r\n<html>blocked</html>")
    assert conn.server.invalid_reason == "not_tls"
    assert conn.history == "Cv"


def test_encrypted_runs_collapse_and_history_is_capped() -> None:
    conn = TLSConnection()
    events = conn.feed_server(record(23, b"a") * 5)
    assert events == [EncryptedRecordEvent(23, 1)] * 5
    assert conn.history == "d"
    for _ in range(MAX_HISTORY):
        conn.feed_client(record(21, b"\x01\x00"))
    assert len(conn.history) == MAX_HISTORY + 1 and conn.history.endswith("+")


def test_letters_documented() -> None:
    assert len(HISTORY_LETTERS) == len(set(HISTORY_LETTERS.values()))
    assert all(letter.islower() for letter in HISTORY_LETTERS)

"""tlswatch.tls.decrypt against RFC 8448 §3 and the lab's sample sessions.

RFC 8448 ("Example Handshake Traces for TLS 1.3", M. Thomson, January 2019), §3 "Simple
1-RTT Handshake" (TLS_AES_128_GCM_SHA256): the server handshake traffic secret, the derived
write key and IV, the server's encrypted flight (one 679-byte record) and its plaintext
(EncryptedExtensions, Certificate, CertificateVerify, Finished) are copied from that section
(https://www.rfc-editor.org/rfc/rfc8448#section-3). The production key schedule here is
independent of tlswatch.testing.transcripts (which built the captures).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given, settings
from hypothesis import strategies as st
from testing.test_transcripts import (
    C_AP_IV,
    C_AP_KEY,
    C_AP_TRAFFIC,
    C_HS_IV,
    C_HS_KEY,
    C_HS_TRAFFIC,
    CLIENT_DATA_RECORD,
    CLIENT_FINISHED_RECORD,
    CLIENT_VERIFY_DATA,
    S_AP_IV,
    S_AP_KEY,
    S_AP_TRAFFIC,
    S_HS_IV,
    S_HS_KEY,
    S_HS_TRAFFIC,
    SERVER_FLIGHT,
    SERVER_FLIGHT_RECORD,
    SERVER_HELLO,
)

from tlswatch.tls import CertificateEvent, HandshakeMessageEvent
from tlswatch.tls.decrypt import (
    TLS_AES_128_CCM_8_SHA256,
    TLS_AES_128_CCM_SHA256,
    TLS_AES_128_GCM_SHA256,
    DecryptError,
    DecryptState,
    HandshakeDecryptor,
    hkdf_expand_label,
    open_record,
    record_nonce,
    traffic_key_iv,
)

SERVER_HELLO_RECORD = b"\x16\x03\x03" + len(SERVER_HELLO).to_bytes(2, "big") + SERVER_HELLO
CCS_RECORD = b"\x14\x03\x03\x00\x01\x01"


def test_rfc8448_traffic_keys() -> None:
    assert traffic_key_iv(TLS_AES_128_GCM_SHA256, S_HS_TRAFFIC) == (S_HS_KEY, S_HS_IV)
    assert traffic_key_iv(TLS_AES_128_GCM_SHA256, C_HS_TRAFFIC) == (C_HS_KEY, C_HS_IV)
    assert traffic_key_iv(TLS_AES_128_GCM_SHA256, S_AP_TRAFFIC) == (S_AP_KEY, S_AP_IV)
    assert traffic_key_iv(TLS_AES_128_GCM_SHA256, C_AP_TRAFFIC) == (C_AP_KEY, C_AP_IV)
    assert hkdf_expand_label(hashes.SHA256(), S_HS_TRAFFIC, b"iv", b"", 12) == S_HS_IV


def test_record_nonce() -> None:
    assert record_nonce(S_HS_IV, 0) == S_HS_IV
    assert record_nonce(bytes(12), 0x0102) == bytes(10) + b"\x01\x02"


def test_rfc8448_open_server_flight_and_client_records() -> None:
    assert open_record(TLS_AES_128_GCM_SHA256, S_HS_KEY, S_HS_IV, 0,
                       SERVER_FLIGHT_RECORD) == (22, SERVER_FLIGHT)
    assert open_record(TLS_AES_128_GCM_SHA256, C_HS_KEY, C_HS_IV, 0, CLIENT_FINISHED_RECORD) == (
        22, b"\x14\x00\x00\x20" + CLIENT_VERIFY_DATA)
    assert open_record(TLS_AES_128_GCM_SHA256, C_AP_KEY, C_AP_IV, 0,
                       CLIENT_DATA_RECORD) == (23, bytes(range(50)))
    with pytest.raises(DecryptError, match="did not authenticate"):
        open_record(TLS_AES_128_GCM_SHA256, S_HS_KEY, S_HS_IV, 1, SERVER_FLIGHT_RECORD)
    with pytest.raises(DecryptError):
        open_record(TLS_AES_128_GCM_SHA256, S_HS_KEY, S_HS_IV, 0, SERVER_FLIGHT_RECORD[:10])


@pytest.mark.parametrize("chunk", [1, 7, 100, 10_000])
def test_rfc8448_decryptor_any_chunking(chunk: int) -> None:
    stream = SERVER_HELLO_RECORD + CCS_RECORD + SERVER_FLIGHT_RECORD + b"\x17\x03\x03\x00\x05junk"
    dec = HandshakeDecryptor(TLS_AES_128_GCM_SHA256, S_HS_TRAFFIC)
    events = []
    for i in range(0, len(stream), chunk):
        events += dec.feed(stream[i : i + chunk])
    assert dec.state is DecryptState.DONE and dec.records == 1
    assert [e.msg_type if isinstance(e, HandshakeMessageEvent) else "cert" for e in events] == [
        8, "cert", 15, 20]
    cert = events[1]
    assert isinstance(cert, CertificateEvent) and cert.tls13 and len(cert.certificates) == 1
    assert dec.certificates == cert.certificates
    assert cert.certificates[0] in SERVER_FLIGHT


def test_wrong_secret_is_a_state_not_an_exception() -> None:
    dec = HandshakeDecryptor(TLS_AES_128_GCM_SHA256, bytes(32))
    assert dec.feed(SERVER_HELLO_RECORD + SERVER_FLIGHT_RECORD) == []
    assert dec.state is DecryptState.DECRYPT_FAILED and "did not authenticate" in dec.detail
    assert dec.feed(SERVER_FLIGHT_RECORD) == []  # later input is ignored
    short = HandshakeDecryptor(TLS_AES_128_GCM_SHA256, bytes(48))
    assert short.state is DecryptState.DECRYPT_FAILED and "48 bytes" in short.detail
    other = HandshakeDecryptor(0xC02F, S_HS_TRAFFIC)
    assert other.state is DecryptState.UNSUPPORTED


def _seal(suite: int, secret: bytes, seq: int, inner_type: int, content: bytes) -> bytes:
    """A TLS 1.3 record sealed with cryptography's AESCCM directly (test-side sealing)."""
    key, iv = traffic_key_iv(suite, secret)
    tag = 8 if suite == TLS_AES_128_CCM_8_SHA256 else 16
    inner = content + bytes((inner_type,)) + b"\x00" * 3  # with padding
    header = b"\x17\x03\x03" + (len(inner) + tag).to_bytes(2, "big")
    return header + AESCCM(key, tag_length=tag).encrypt(record_nonce(iv, seq), inner, header)


@pytest.mark.parametrize("suite", [TLS_AES_128_CCM_SHA256, TLS_AES_128_CCM_8_SHA256])
def test_aes_ccm_suites(suite: int) -> None:
    # The RFC 8448 flight, resealed under AES-CCM in two records (no CCM vectors in 8448).
    half = len(SERVER_FLIGHT) // 2
    stream = (SERVER_HELLO_RECORD + _seal(suite, S_HS_TRAFFIC, 0, 22, SERVER_FLIGHT[:half])
              + _seal(suite, S_HS_TRAFFIC, 1, 22, SERVER_FLIGHT[half:]))
    dec = HandshakeDecryptor(suite, S_HS_TRAFFIC)
    dec.feed(stream)
    assert dec.state is DecryptState.DONE and dec.records == 2 and dec.certificates


def test_encrypted_alert_and_overflow() -> None:
    dec = HandshakeDecryptor(TLS_AES_128_CCM_SHA256, S_HS_TRAFFIC)
    dec.feed(_seal(TLS_AES_128_CCM_SHA256, S_HS_TRAFFIC, 0, 21, b"\x02\x28"))
    assert dec.state is DecryptState.ALERT and dec.alert == "handshake_failure"
    big = HandshakeDecryptor(TLS_AES_128_GCM_SHA256, S_HS_TRAFFIC, max_bytes=100)
    big.feed(SERVER_FLIGHT_RECORD)
    assert big.state is DecryptState.OVERFLOW


@settings(max_examples=200)
@given(st.binary(max_size=3000))
def test_decryptor_never_raises(data: bytes) -> None:
    dec = HandshakeDecryptor(TLS_AES_128_GCM_SHA256, S_HS_TRAFFIC)
    dec.feed(data)
    dec.feed(SERVER_FLIGHT_RECORD)
    assert isinstance(dec.state, DecryptState)

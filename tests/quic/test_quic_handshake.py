"""QUIC Handshake packets opened with a key log, on handshakes made by a real QUIC stack
(aioquic): v1 and v2, AES-128/256-GCM and ChaCha20-Poly1305, reordered and duplicated
datagrams, wrong and missing key logs, hostile bytes."""

from __future__ import annotations

import asyncio
import random
from functools import lru_cache

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswatch.quic import (
    QUIC_V1,
    QUIC_V2,
    CryptoFrame,
    HandshakeSpace,
    PacketType,
    QuicFlowObservation,
    analyse_quic_datagrams,
    decrypt_long_packet,
    encrypt_long_packet,
    packet_keys,
    parse_frames,
    parse_long_header,
    parse_long_headers,
)
from tlswatch.quic.handshake import MAX_PENDING_PACKETS, encrypted_extensions_alpn
from tlswatch.testing import CertFactory, Scenario
from tlswatch.tls.hello import DecodeError
from tlswatch.tls.keylog import KeyLog

from .aioquic_session import Session, handshake, loopback_handshake


@lru_cache(maxsize=1)
def legit() -> Scenario:
    sc = CertFactory(seed=0).legitimate("example.org")
    assert sc.leaf_key is not None
    return sc


@lru_cache(maxsize=8)
def session(version: int = QUIC_V1, cipher: int | None = 0x1301) -> Session:
    sc = legit()
    assert sc.leaf_key is not None
    return handshake(sc.chain, sc.leaf_key, host="example.org", version=version, cipher=cipher)


def ders(sc: Scenario) -> tuple[bytes, ...]:
    return tuple(c.public_bytes(Encoding.DER) for c in sc.chain)


def observe(s: Session, dgs: list[tuple[int, str, int, str, int, bytes]] | None = None,
            keylog: str | None = None) -> QuicFlowObservation:
    kl = KeyLog(s.keylog if keylog is None else keylog)
    (obs,) = analyse_quic_datagrams(s.tuples() if dgs is None else dgs, secrets=kl.get)
    return obs


@pytest.mark.parametrize(("version", "cipher"), [
    (QUIC_V1, 0x1301), (QUIC_V1, 0x1302), (QUIC_V1, 0x1303),
    (QUIC_V2, 0x1301), (QUIC_V2, 0x1303),
])
def test_handshake_packets_give_the_chain(version: int, cipher: int) -> None:
    s = session(version, cipher)
    assert s.handshake_done
    obs = observe(s)
    assert obs.versions[0] == version and obs.cipher == cipher
    assert (obs.sni, obs.alpn, obs.server_alpn) == ("example.org", ("h3",), "h3")
    assert obs.ja4 is not None and obs.ja4.startswith("q13d")
    assert obs.outcome == "quic/handshake"
    assert (obs.keylog, obs.keylog_detail) == ("decrypted", "")
    assert obs.chain_der == ders(legit())
    assert obs.handshake_complete  # the client's Finished was opened too
    assert obs.server_handshake_packets >= 2


def test_without_a_key_log_nothing_is_opened() -> None:
    s = session()
    (obs,) = analyse_quic_datagrams(s.tuples())
    assert obs.outcome == "quic/handshake" and obs.keylog is None and obs.chain_der == ()
    assert obs.server_handshake_packets >= 2


def test_reordered_and_duplicated_datagrams() -> None:
    s = session()
    dgs = s.tuples()
    # The server's Handshake-only datagram overtakes the Initial that carries the
    # ServerHello: its packet waits for the keys; CRYPTO data then arrives out of order.
    assert dgs[2][5][0] & 0x80
    reordered = [dgs[0], dgs[2], dgs[1], dgs[2], dgs[1], *dgs[3:], dgs[3]]
    obs = observe(s, reordered)
    assert obs.keylog == "decrypted" and obs.chain_der == ders(legit())


def test_packets_split_into_tiny_crypto_frames_in_any_order() -> None:
    # Not a real stack's output: the same server flight cut into many tiny CRYPTO frames
    # across many Handshake packets, shuffled.
    s = session()
    kl = KeyLog(s.keylog)
    secret = kl.get(s.client_random, "SERVER_HANDSHAKE_TRAFFIC_SECRET")
    assert secret is not None
    keys = packet_keys(secret, 0x1301, QUIC_V1)
    space = HandshakeSpace(server=True)
    space.set_secret(secret, 0x1301, QUIC_V1)
    flight = _server_flight(s)
    pieces = [(o, flight[o : o + 37]) for o in range(0, len(flight), 37)]
    random.Random(7).shuffle(pieces)
    for pn, (off, data) in enumerate(pieces + pieces[:5]):  # and some retransmissions
        frame = bytes((0x06,)) + _varint(off) + _varint(len(data)) + data
        pkt = encrypt_long_packet(keys, version=QUIC_V1, packet_type=PacketType.HANDSHAKE,
                                  dcid=b"\x01" * 8, scid=b"\x02" * 8, packet_number=pn,
                                  payload=frame, pn_len=1 + pn % 2)
        h = parse_long_header(pkt)
        assert h is not None and h.packet_type is PacketType.HANDSHAKE
        space.add_packet(pkt, h)
    assert space.state == "decrypted" and space.chain == ders(legit())
    assert space.alpn == "h3"


def _varint(v: int) -> bytes:
    return (0x4000 | v).to_bytes(2, "big") if v >= 0x40 else bytes((v,))


def _server_flight(s: Session) -> bytes:
    """The server's Handshake-level CRYPTO stream, read back through our own parser."""
    secret = KeyLog(s.keylog).get(s.client_random, "SERVER_HANDSHAKE_TRAFFIC_SECRET")
    assert secret is not None
    keys = packet_keys(secret, 0x1301, QUIC_V1)
    parts: dict[int, bytes] = {}
    for from_client, dg in s.datagrams:
        for h in parse_long_headers(dg) if not from_client else []:
            if h.packet_type is PacketType.HANDSHAKE:
                pkt = decrypt_long_packet(dg, h, keys)
                assert pkt is not None
                for fr in parse_frames(pkt.payload)[0]:
                    if isinstance(fr, CryptoFrame):
                        parts[fr.offset] = fr.data
    out = b""
    for off in sorted(parts):
        assert off == len(out)
        out += parts[off]
    return out


def test_wrong_key_log_is_decrypt_failed_not_a_crash() -> None:
    s = session()
    other = session(QUIC_V1, 0x1303)  # another session's secrets under this client random
    wrong = "".join(line.replace(other.client_random.hex(), s.client_random.hex())
                    for line in other.keylog.splitlines(keepends=True))
    obs = observe(s, keylog=wrong)
    assert obs.keylog == "decrypt_failed" and obs.chain_der == ()
    assert "did not authenticate" in obs.keylog_detail
    assert obs.outcome == "quic/handshake" and obs.sni == "example.org"


def test_key_log_without_this_session_and_secret_of_wrong_length() -> None:
    s = session()
    other = session(QUIC_V1, 0x1303)
    obs = observe(s, keylog=other.keylog)
    assert (obs.keylog, obs.chain_der) == ("no_key", ())
    short = "".join(f"{label} {s.client_random.hex()} {'ab' * 48}\n" for label in (
        "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_HANDSHAKE_TRAFFIC_SECRET"))
    obs = observe(s, keylog=short)  # SHA-384 length for an AES-128-GCM-SHA256 session
    assert obs.keylog == "decrypt_failed" and "has 48 bytes" in obs.keylog_detail


def test_lost_server_initial_leaves_handshake_packets_unopened() -> None:
    s = session()
    dgs = [d for i, d in enumerate(s.tuples()) if i != 1]  # the ServerHello never arrives
    obs = observe(s, dgs)
    assert obs.keylog == "incomplete" and "no ServerHello" in obs.keylog_detail
    assert obs.chain_der == ()


def test_pending_queue_is_bounded() -> None:
    s = session()
    dgs = s.tuples()
    flood = [dgs[0]] + [dgs[2]] * (MAX_PENDING_PACKETS * 4) + dgs[1:]
    obs = observe(s, flood)  # (datagrams per side are capped too)
    assert obs.keylog in ("decrypted", "incomplete")


def test_encrypted_extensions_alpn() -> None:
    with pytest.raises(DecodeError):
        encrypted_extensions_alpn(bytes.fromhex("000b" "0010" "0005"))  # truncated
    good = bytes.fromhex("0009" "0010" "0005" "0003" "02" "6833")
    assert encrypted_extensions_alpn(good) == "h3"
    assert encrypted_extensions_alpn(bytes.fromhex("0000")) is None


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_hostile_bytes_in_handshake_packets_never_crash(data: st.DataObject) -> None:
    s = session()
    dgs = s.tuples()
    i = data.draw(st.sampled_from([1, 2, 3]))
    payload = bytearray(dgs[i][5])
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(payload) - 1))
        payload[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    dgs[i] = (*dgs[i][:5], bytes(payload[:cut]))
    for obs in analyse_quic_datagrams(dgs, secrets=KeyLog(s.keylog).get):
        assert obs.keylog in (None, "decrypted", "decrypt_failed", "incomplete", "invalid")


def test_real_sockets_on_loopback_through_a_recording_relay() -> None:
    sc = legit()
    assert sc.leaf_key is not None
    s = asyncio.run(asyncio.wait_for(
        loopback_handshake(sc.chain, sc.leaf_key, host="example.org", version=QUIC_V2), 10))
    obs = observe(s)
    assert obs.versions[0] == QUIC_V2 and obs.sni == "example.org"
    assert obs.keylog == "decrypted" and obs.chain_der == ders(legit())

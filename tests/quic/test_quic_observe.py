"""Frames, CRYPTO reassembly, per-flow outcomes and robustness on hostile bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tlswatch.quic import (
    QUIC_V1,
    ConnectionCloseFrame,
    CryptoFrame,
    CryptoStream,
    analyse_quic_datagrams,
    encrypt_initial,
    initial_keys,
    parse_frames,
    parse_long_headers,
    transport_error_name,
)

from .vectors import (
    CLIENT_CRYPTO_FRAME,
    CLIENT_INITIAL_V1,
    CLIENT_INITIAL_V2,
    DCID,
    SERVER_INITIAL_V1,
)

C, S = ("192.0.2.1", 50000), ("198.51.100.7", 443)
HELLO = CLIENT_CRYPTO_FRAME[4:]  # the ClientHello handshake message of RFC 9001 §A.2


def up(ts: int, payload: bytes) -> tuple[int, str, int, str, int, bytes]:
    return (ts, C[0], C[1], S[0], S[1], payload)


def down(ts: int, payload: bytes) -> tuple[int, str, int, str, int, bytes]:
    return (ts, S[0], S[1], C[0], C[1], payload)


def crypto(offset: int, data: bytes) -> bytes:
    return bytes((0x06, 0x80 | (offset >> 24), (offset >> 16) & 0xFF, (offset >> 8) & 0xFF,
                  offset & 0xFF, 0x40 | (len(data) >> 8), len(data) & 0xFF)) + data


def client_packet(pn: int, frames: bytes) -> bytes:
    payload = frames + bytes(max(0, 1162 - len(frames)))  # PADDING to a full datagram
    return encrypt_initial(initial_keys(DCID), version=QUIC_V1, dcid=DCID, scid=b"\x01",
                           packet_number=pn, payload=payload)


def test_frames_and_close_names() -> None:
    frames, err = parse_frames(bytes.fromhex("01" "0200000000" "1c" "4128" "06" "03" "616263"))
    assert err is None and len(frames) == 3
    close = frames[2]
    assert isinstance(close, ConnectionCloseFrame)
    assert close.error_code == 0x128 and close.frame_type == 6 and close.reason == b"abc"
    assert close.error_name == "crypto_error:handshake_failure"
    assert transport_error_name(2) == "connection_refused"
    assert transport_error_name(0x4242) == "16962"
    assert parse_frames(b"\x08\x00")[1] == "unexpected_frame:0x8"
    assert parse_frames(b"\x06\x00\x40")[1] is not None  # truncated


def test_crypto_stream_out_of_order_overlap_and_cap() -> None:
    s = CryptoStream()
    msg = b"\x01" + len(HELLO[4:]).to_bytes(3, "big") + HELLO[4:]
    assert s.add(100, msg[100:]) == []
    assert s.add(50, msg[50:120]) == []  # overlapping
    out = s.add(0, msg[:60])
    assert len(out) == 1 and out[0].body == HELLO[4:] and s.contiguous == len(msg)
    small = CryptoStream(max_bytes=16)
    small.add(0, bytes(40))
    assert small.truncated and small.contiguous == 16


def test_rfc_vectors_as_a_flow_handshake() -> None:
    [obs] = analyse_quic_datagrams([up(10, CLIENT_INITIAL_V1), down(20, SERVER_INITIAL_V1)])
    assert obs.outcome == "quic/handshake"
    assert (obs.sni, obs.alpn, obs.versions) == ("example.com", ("alpn",), (QUIC_V1,))
    assert obs.ja4 is not None and obs.ja4.startswith("q13d")
    assert (obs.first_ts_ns, obs.last_ts_ns, obs.dcid) == (10, 20, DCID.hex())
    assert (obs.client, obs.server_port, obs.undecryptable) == (C[0], 443, 0)


def test_v2_no_response_and_packed_addresses() -> None:
    [obs] = analyse_quic_datagrams([(5, bytes([192, 0, 2, 1]), 1, bytes([192, 0, 2, 2]), 443,
                                     CLIENT_INITIAL_V2)])
    assert obs.outcome == "quic/no_response" and obs.sni == "example.com"
    assert obs.client == "192.0.2.1" and obs.versions == (0x6B3343CF,)


def test_split_reordered_client_hello_across_packets() -> None:
    msg = HELLO
    p1 = client_packet(0, crypto(120, msg[120:]))
    p2 = client_packet(1, crypto(0, msg[:120]))
    [obs] = analyse_quic_datagrams([up(1, p1), up(2, p2)])
    assert obs.sni == "example.com" and obs.client_datagrams == 2


def test_version_negotiation_outcome() -> None:
    vn = bytes.fromhex("80" "00000000" "01" "01" "08") + DCID + bytes.fromhex("6b3343cf")
    [obs] = analyse_quic_datagrams([up(1, CLIENT_INITIAL_V1), down(2, vn)])
    assert obs.outcome == "quic/version_negotiation" and obs.offered_versions == (0x6B3343CF,)


def test_server_connection_close_outcome() -> None:
    close = bytes.fromhex("1c" "4128" "06" "00")  # CRYPTO_ERROR + alert 40, as a censor might
    pkt = encrypt_initial(initial_keys(DCID, server=True), version=QUIC_V1, dcid=b"",
                          scid=b"\x07" * 8, packet_number=0, payload=close, pn_len=1)
    [obs] = analyse_quic_datagrams([up(1, CLIENT_INITIAL_V1), down(2, pkt)])
    assert obs.outcome == "quic/connection_close:crypto_error:handshake_failure"
    assert obs.close_error_code == 0x128


def test_non_quic_udp_makes_no_flow() -> None:
    dns = bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001")
    assert analyse_quic_datagrams([up(1, dns), up(2, b""), up(3, b"\xc0" * 30)]) == []


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        b[pos % len(b)] = val
    return bytes(b[: max(1, len(b) - cut)])


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([CLIENT_INITIAL_V1, CLIENT_INITIAL_V2, SERVER_INITIAL_V1]),
       st.lists(st.tuples(st.integers(0, 1199), st.integers(0, 255)), max_size=6),
       st.integers(0, 1200), st.booleans())
def test_mutated_vectors_never_raise(base: bytes, edits: list[tuple[int, int]], cut: int,
                                     as_server: bool) -> None:
    bad = mutate(base, edits, cut)
    parse_long_headers(bad)
    stream = [up(1, CLIENT_INITIAL_V1), down(2, bad) if as_server else up(2, bad)]
    result = analyse_quic_datagrams(stream)
    assert len(result) <= 2


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_frames_never_raise(data: bytes) -> None:
    frames, _ = parse_frames(data)
    s = CryptoStream(max_bytes=1024)
    for f in frames:
        if isinstance(f, CryptoFrame):
            s.add(f.offset, f.data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400), st.binary(max_size=200))
def test_hostile_decryptable_payloads_never_raise(client: bytes, server: bytes) -> None:
    # Authenticating packets with arbitrary frames: the AEAD is no defence here.
    srv = encrypt_initial(initial_keys(DCID, server=True), version=QUIC_V1, dcid=b"",
                          scid=b"\x07" * 8, packet_number=0, payload=server)
    [obs] = analyse_quic_datagrams([up(1, client_packet(0, client)), down(2, srv)])
    assert obs.outcome.startswith("quic/")


def test_retry_integrity_tag_is_checked() -> None:
    from .vectors import RETRY_V1

    (obs,) = analyse_quic_datagrams([up(0, CLIENT_INITIAL_V1), down(1, RETRY_V1)])
    assert obs.outcome == "quic/retry" and obs.anomalies == []
    forged = RETRY_V1[:-1] + bytes((RETRY_V1[-1] ^ 1,))  # e.g. injected on the path
    (obs,) = analyse_quic_datagrams([up(0, CLIENT_INITIAL_V1), down(1, forged)])
    assert obs.outcome == "quic/retry" and "server:retry_integrity_failed" in obs.anomalies

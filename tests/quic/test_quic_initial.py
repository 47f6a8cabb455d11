"""QUIC Initial decryption against RFC 9001 Appendix A and RFC 9369 Appendix A."""

from __future__ import annotations

import pytest

from tlswatch.quic import (
    QUIC_V1,
    QUIC_V2,
    CryptoFrame,
    PacketType,
    PaddingFrame,
    decode_packet_number,
    decrypt_initial,
    encrypt_initial,
    header_mask,
    initial_keys,
    initial_secrets,
    open_packet,
    packet_keys,
    parse_frames,
    parse_long_header,
    seal_packet,
)
from tlswatch.quic.protection import retry_integrity_tag
from tlswatch.tls import decode_client_hello
from tlswatch.tls.decrypt import TLS_CHACHA20_POLY1305_SHA256

from .vectors import (
    CHACHA_PLAIN_HEADER,
    CHACHA_PN,
    CHACHA_SECRET,
    CHACHA_V1_KEYS,
    CHACHA_V1_MASK,
    CHACHA_V1_PACKET,
    CHACHA_V2_KEYS,
    CHACHA_V2_PACKET,
    CLIENT_CRYPTO_FRAME,
    CLIENT_INITIAL_V1,
    CLIENT_INITIAL_V2,
    CLIENT_PAYLOAD,
    DCID,
    RETRY_V1,
    RETRY_V2,
    SERVER_INITIAL_V1,
    SERVER_INITIAL_V2,
    SERVER_PAYLOAD,
    V2_CLIENT_KEYS,
    V2_CLIENT_SECRET,
    V2_PROTECTED_HEADER,
    V2_SERVER_KEYS,
    V2_SERVER_SECRET,
)


def test_rfc9001_a1_keys() -> None:
    client, server = initial_secrets(DCID)
    assert client.hex() == "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea"
    assert server.hex() == "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b"
    c = initial_keys(DCID)
    assert (c.key.hex(), c.iv.hex(), c.hp.hex()) == (
        "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c",
        "9f50449e04a0e810283a1e9933adedd2")
    s = initial_keys(DCID, server=True)
    assert (s.key.hex(), s.iv.hex(), s.hp.hex()) == (
        "cf3a5331653c364c88f0f379b6067e37", "0ac1493ca1905853b0bba03e",
        "c206b8d9b9f0f37644430b490eeaa314")


def test_rfc9001_a2_client_initial() -> None:
    h = parse_long_header(CLIENT_INITIAL_V1)
    assert h is not None and h.packet_type is PacketType.INITIAL and h.version == QUIC_V1
    assert h.dcid == DCID and h.scid == b"" and h.end == 1200 and h.pn_offset == 18
    pkt = decrypt_initial(CLIENT_INITIAL_V1, h, initial_keys(DCID))
    assert pkt is not None and pkt.packet_number == 2 and pkt.payload == CLIENT_PAYLOAD
    frames, err = parse_frames(pkt.payload)
    assert err is None
    assert isinstance(frames[0], CryptoFrame) and frames[0].offset == 0
    assert frames[0].data == CLIENT_CRYPTO_FRAME[4:]
    assert frames[1] == PaddingFrame(1162 - len(CLIENT_CRYPTO_FRAME))
    hello = decode_client_hello(frames[0].data[4:])
    assert hello.server_name == "example.com"


def test_rfc9001_a2_reencrypt_matches() -> None:
    # encrypt_initial reproduces the RFC's protected bytes exactly (pn 2, 4-byte encoding).
    out = encrypt_initial(initial_keys(DCID), version=QUIC_V1, dcid=DCID, scid=b"",
                          packet_number=2, payload=CLIENT_PAYLOAD)
    assert out == CLIENT_INITIAL_V1


def test_rfc9001_a3_server_initial() -> None:
    h = parse_long_header(SERVER_INITIAL_V1)
    assert h is not None and h.packet_type is PacketType.INITIAL
    assert h.scid.hex() == "f067a5502a4262b5" and h.dcid == b""
    assert decrypt_initial(SERVER_INITIAL_V1, h, initial_keys(DCID)) is None  # wrong side
    pkt = decrypt_initial(SERVER_INITIAL_V1, h, initial_keys(DCID, server=True))
    assert pkt is not None and pkt.packet_number == 1 and pkt.payload == SERVER_PAYLOAD
    out = encrypt_initial(initial_keys(DCID, server=True), version=QUIC_V1, dcid=b"",
                          scid=h.scid, packet_number=1, payload=SERVER_PAYLOAD, pn_len=2)
    assert out == SERVER_INITIAL_V1


def test_rfc9369_a2_v2_client_initial() -> None:
    h = parse_long_header(CLIENT_INITIAL_V2)
    assert h is not None and h.version == QUIC_V2 and h.packet_type is PacketType.INITIAL
    pkt = decrypt_initial(CLIENT_INITIAL_V2, h, initial_keys(DCID, QUIC_V2))
    assert pkt is not None and pkt.packet_number == 2 and pkt.payload == CLIENT_PAYLOAD
    # v1 keys must not open a v2 packet: the labels and salt differ.
    assert decrypt_initial(CLIENT_INITIAL_V2, h, initial_keys(DCID, QUIC_V1)) is None
    out = encrypt_initial(initial_keys(DCID, QUIC_V2), version=QUIC_V2, dcid=DCID, scid=b"",
                          packet_number=2, payload=CLIENT_PAYLOAD)
    assert out[:22] == V2_PROTECTED_HEADER and out == CLIENT_INITIAL_V2


def test_tampered_packet_does_not_authenticate() -> None:
    bad = bytearray(CLIENT_INITIAL_V1)
    bad[500] ^= 1
    h = parse_long_header(bytes(bad))
    assert h is not None and decrypt_initial(bytes(bad), h, initial_keys(DCID)) is None


def test_version_negotiation_and_unknown_version() -> None:
    vn = bytes.fromhex("80" "00000000" "00" "08" "8394c8f03e515708" "6b3343cf" "00000001")
    h = parse_long_header(vn)
    assert h is not None and h.packet_type is PacketType.VERSION_NEGOTIATION
    assert h.supported_versions == (QUIC_V2, QUIC_V1)
    odd = bytes.fromhex("c0" "ff00001d" "00" "00") + bytes(40)
    h2 = parse_long_header(odd)
    assert h2 is not None and h2.packet_type is None


def test_decode_packet_number_rfc9000_a3() -> None:
    # RFC 9000 §A.3 example: largest 0xa82f30ea, truncated 0x9b32 (16 bits) -> 0xa82f9b32.
    assert decode_packet_number(0x9B32, 2, 0xA82F30EA) == 0xA82F9B32
    assert decode_packet_number(2, 4, -1) == 2


def test_rfc9369_a1_v2_keys() -> None:
    client, server = initial_secrets(DCID, QUIC_V2)
    assert (client, server) == (V2_CLIENT_SECRET, V2_SERVER_SECRET)
    for keys, want in ((initial_keys(DCID, QUIC_V2), V2_CLIENT_KEYS),
                       (initial_keys(DCID, QUIC_V2, server=True), V2_SERVER_KEYS)):
        assert (keys.key.hex(), keys.iv.hex(), keys.hp.hex()) == want


def test_rfc9369_a3_v2_server_initial() -> None:
    h = parse_long_header(SERVER_INITIAL_V2)
    assert h is not None and h.version == QUIC_V2 and h.packet_type is PacketType.INITIAL
    assert h.first_byte >> 4 & 0x3 == 0b01  # v2's Initial type bits (v1: 0b00)
    pkt = decrypt_initial(SERVER_INITIAL_V2, h, initial_keys(DCID, QUIC_V2, server=True))
    assert pkt is not None and pkt.packet_number == 1 and pkt.payload == SERVER_PAYLOAD
    out = encrypt_initial(initial_keys(DCID, QUIC_V2, server=True), version=QUIC_V2, dcid=b"",
                          scid=h.scid, packet_number=1, payload=SERVER_PAYLOAD, pn_len=2)
    assert out == SERVER_INITIAL_V2


@pytest.mark.parametrize(("packet", "version", "type_bits"),
                         [(RETRY_V1, QUIC_V1, 0b11), (RETRY_V2, QUIC_V2, 0b00)])
def test_rfc9001_rfc9369_a4_retry(packet: bytes, version: int, type_bits: int) -> None:
    h = parse_long_header(packet)
    assert h is not None and h.packet_type is PacketType.RETRY and h.version == version
    assert h.first_byte >> 4 & 0x3 == type_bits
    assert h.scid.hex() == "f067a5502a4262b5" and h.token[:-16] == b"token"
    assert retry_integrity_tag(DCID, packet[:-16], version) == packet[-16:]
    assert retry_integrity_tag(DCID[::-1], packet[:-16], version) != packet[-16:]
    other = QUIC_V2 if version == QUIC_V1 else QUIC_V1
    assert retry_integrity_tag(DCID, packet[:-16], other) != packet[-16:]


@pytest.mark.parametrize(("version", "keys_hex", "packet", "mask"), [
    (QUIC_V1, CHACHA_V1_KEYS, CHACHA_V1_PACKET, CHACHA_V1_MASK),
    (QUIC_V2, CHACHA_V2_KEYS, CHACHA_V2_PACKET, None),
])
def test_rfc9001_rfc9369_a5_chacha20_short_header(version: int, keys_hex: tuple[str, ...],
                                                  packet: bytes, mask: bytes | None) -> None:
    keys = packet_keys(CHACHA_SECRET, TLS_CHACHA20_POLY1305_SHA256, version)
    assert (keys.key.hex(), keys.iv.hex(), keys.hp.hex()) == keys_hex
    if mask is not None:
        assert header_mask(keys, packet[5:21]) == mask  # the ChaCha20 keystream mask
    got = open_packet(packet, 0, 1, len(packet), keys, CHACHA_PN - 1, long_header=False)
    assert got == (CHACHA_PN, b"\x01")
    # Sealing the RFC's plaintext header and PING gives the RFC's bytes back.
    assert seal_packet(keys, CHACHA_PLAIN_HEADER[:1], CHACHA_PN, 3, b"\x01",
                       long_header=False) == packet


def test_quic_forbids_ccm8_and_unknown_suites() -> None:
    with pytest.raises(ValueError):
        packet_keys(CHACHA_SECRET, 0x1305)
    with pytest.raises(KeyError):
        packet_keys(CHACHA_SECRET, 0x009C)

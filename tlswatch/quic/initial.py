"""QUIC Initial packets: key derivation, header protection and AEAD (RFC 9001 §5, RFC 9369).

Initial keys are public: they derive from the client's first Destination Connection ID, so
any observer can read Initial packets. Nothing here raises on hostile bytes: parsers return
None (or stop early) instead.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass
from hashlib import sha256
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..tls.decrypt import hkdf_expand_label
from .frames import FrameError, read_varint

__all__ = [
    "INITIAL_SALTS",
    "QUIC_V1",
    "QUIC_V2",
    "InitialKeys",
    "InitialPacket",
    "LongHeader",
    "PacketType",
    "decode_packet_number",
    "decrypt_initial",
    "encrypt_initial",
    "initial_keys",
    "initial_secrets",
    "parse_long_header",
    "parse_long_headers",
]

QUIC_V1: Final = 0x00000001
QUIC_V2: Final = 0x6B3343CF

#: initial_salt per version (RFC 9001 §5.2, RFC 9369 §3.3.1).
INITIAL_SALTS: Final[dict[int, bytes]] = {
    QUIC_V1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
    QUIC_V2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
}
_LABEL_PREFIX: Final[dict[int, bytes]] = {QUIC_V1: b"quic ", QUIC_V2: b"quicv2 "}

_SAMPLE_LEN: Final = 16
_TAG_LEN: Final = 16
_MAX_CID_LEN: Final = 20  # RFC 9000 §17.2 for v1/v2
#: Coalesced packets looked at per datagram (RFC 9000 §12.2); a datagram holds a few at most.
MAX_COALESCED: Final = 8


class PacketType(enum.Enum):
    INITIAL = "initial"
    ZERO_RTT = "0rtt"
    HANDSHAKE = "handshake"
    RETRY = "retry"
    VERSION_NEGOTIATION = "version_negotiation"


# The two type bits of the first byte; v2 rotates them (RFC 9369 §3.2).
_TYPES: Final[dict[int, tuple[PacketType, ...]]] = {
    QUIC_V1: (PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE, PacketType.RETRY),
    QUIC_V2: (PacketType.RETRY, PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE),
}


@dataclass(frozen=True, slots=True)
class InitialKeys:
    key: bytes
    iv: bytes
    hp: bytes


def initial_secrets(dcid: bytes, version: int = QUIC_V1) -> tuple[bytes, bytes]:
    """(client_initial_secret, server_initial_secret). KeyError for an unsupported version."""
    initial_secret = hmac.digest(INITIAL_SALTS[version], dcid, sha256)  # HKDF-Extract
    alg = hashes.SHA256()
    return (hkdf_expand_label(alg, initial_secret, b"client in", b"", 32),
            hkdf_expand_label(alg, initial_secret, b"server in", b"", 32))


def initial_keys(dcid: bytes, version: int = QUIC_V1, *, server: bool = False) -> InitialKeys:
    """AES-128-GCM key, IV and header-protection key for one direction's Initial packets."""
    secret = initial_secrets(dcid, version)[1 if server else 0]
    alg = hashes.SHA256()
    prefix = _LABEL_PREFIX[version]
    return InitialKeys(hkdf_expand_label(alg, secret, prefix + b"key", b"", 16),
                       hkdf_expand_label(alg, secret, prefix + b"iv", b"", 12),
                       hkdf_expand_label(alg, secret, prefix + b"hp", b"", 16))


@dataclass(frozen=True, slots=True)
class LongHeader:
    """A long-header packet's clear fields; offsets are into the datagram."""

    first_byte: int
    version: int
    packet_type: PacketType | None  # None: a version we cannot interpret
    dcid: bytes
    scid: bytes
    start: int
    end: int  # one past the packet's last byte
    pn_offset: int = -1  # Initial/0-RTT/Handshake only
    token: bytes = b""
    supported_versions: tuple[int, ...] = ()  # Version Negotiation only


def parse_long_header(datagram: bytes, start: int = 0) -> LongHeader | None:
    """The long header at ``start``, or None (short header, truncated or malformed)."""
    n = len(datagram)
    if start + 7 > n or not datagram[start] & 0x80:
        return None
    first = datagram[start]
    version = int.from_bytes(datagram[start + 1 : start + 5], "big")
    pos = start + 5
    dlen = datagram[pos]
    dcid = datagram[pos + 1 : pos + 1 + dlen]
    pos += 1 + dlen
    if pos >= n:
        return None
    slen = datagram[pos]
    scid = datagram[pos + 1 : pos + 1 + slen]
    pos += 1 + slen
    if pos > n:
        return None
    if version == 0:  # Version Negotiation (RFC 9000 §17.2.1): the rest is a version list
        body = datagram[pos:n]
        versions = tuple(int.from_bytes(body[i : i + 4], "big")
                         for i in range(0, len(body) - len(body) % 4, 4))
        return LongHeader(first, 0, PacketType.VERSION_NEGOTIATION, dcid, scid, start, n,
                          supported_versions=versions)
    types = _TYPES.get(version)
    if types is None:
        return LongHeader(first, version, None, dcid, scid, start, n)
    if dlen > _MAX_CID_LEN or slen > _MAX_CID_LEN or not first & 0x40:
        return None
    ptype = types[(first >> 4) & 0x03]
    if ptype is PacketType.RETRY:
        return LongHeader(first, version, ptype, dcid, scid, start, n, token=datagram[pos:n])
    try:
        token = b""
        if ptype is PacketType.INITIAL:
            tlen, pos = read_varint(datagram, pos)
            if pos + tlen > n:
                return None
            token = datagram[pos : pos + tlen]
            pos += tlen
        length, pos = read_varint(datagram, pos)
    except FrameError:
        return None
    if pos + length > n:
        return None
    return LongHeader(first, version, ptype, dcid, scid, start, pos + length, pos, token)


def parse_long_headers(datagram: bytes) -> list[LongHeader]:
    """The coalesced long-header packets of a datagram, in order (at most MAX_COALESCED)."""
    out: list[LongHeader] = []
    pos = 0
    while pos < len(datagram) and len(out) < MAX_COALESCED:
        h = parse_long_header(datagram, pos)
        if h is None:
            break
        out.append(h)
        if h.end <= pos:
            break
        pos = h.end
    return out


def decode_packet_number(truncated: int, pn_len: int, largest: int) -> int:
    """Full packet number from its truncated encoding (RFC 9000 Appendix A.3)."""
    expected = largest + 1
    win = 1 << (pn_len * 8)
    hwin, mask = win // 2, win - 1
    candidate = (expected & ~mask) | truncated
    if candidate <= expected - hwin and candidate < (1 << 62) - win:
        return candidate + win
    if candidate > expected + hwin and candidate >= win:
        return candidate - win
    return candidate


@dataclass(frozen=True, slots=True)
class InitialPacket:
    header: LongHeader
    packet_number: int
    payload: bytes  # decrypted frames


def _mask(hp: bytes, sample: bytes) -> bytes:
    # One-block AES-ECB of the sample is the mask (RFC 9001 §5.4.3).
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    return enc.update(sample)


def decrypt_initial(datagram: bytes, header: LongHeader, keys: InitialKeys,
                    largest_pn: int = -1) -> InitialPacket | None:
    """Remove header protection and open the AEAD; None if the packet does not authenticate."""
    pn_off, end = header.pn_offset, header.end
    if pn_off < 0 or pn_off + 4 + _SAMPLE_LEN > end or end > len(datagram):
        return None
    mask = _mask(keys.hp, datagram[pn_off + 4 : pn_off + 4 + _SAMPLE_LEN])
    first = datagram[header.start] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    truncated = int.from_bytes(
        bytes(b ^ m for b, m in zip(datagram[pn_off : pn_off + pn_len], mask[1:], strict=False)),
        "big")
    aad = (bytes((first,)) + datagram[header.start + 1 : pn_off]
           + truncated.to_bytes(pn_len, "big"))
    pn = decode_packet_number(truncated, pn_len, largest_pn)
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(len(keys.iv), "big")
    ciphertext = datagram[pn_off + pn_len : end]
    if len(ciphertext) < _TAG_LEN:
        return None
    try:
        payload = AESGCM(keys.key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        return None
    return InitialPacket(header, pn, payload)


def encrypt_initial(keys: InitialKeys, *, version: int, dcid: bytes, scid: bytes,
                    packet_number: int, payload: bytes, token: bytes = b"",
                    pn_len: int = 4) -> bytes:
    """A protected Initial packet (for tests and fixtures; tlswatch never sends).

    The payload is padded with PADDING so the header-protection sample exists.
    """
    if not 1 <= pn_len <= 4:
        raise ValueError("pn_len must be 1..4")
    payload = payload + bytes(max(0, 4 - pn_len - len(payload)))
    type_bits = _TYPES[version].index(PacketType.INITIAL)
    first = 0xC0 | (type_bits << 4) | (pn_len - 1)
    length = pn_len + len(payload) + _TAG_LEN
    header = (bytes((first,)) + version.to_bytes(4, "big") + bytes((len(dcid),)) + dcid
              + bytes((len(scid),)) + scid + _varint(len(token)) + token
              + (0x4000 | length).to_bytes(2, "big"))
    pn_bytes = (packet_number & ((1 << (8 * pn_len)) - 1)).to_bytes(pn_len, "big")
    nonce = (int.from_bytes(keys.iv, "big") ^ packet_number).to_bytes(len(keys.iv), "big")
    sealed = AESGCM(keys.key).encrypt(nonce, payload, header + pn_bytes)
    sample = sealed[4 - pn_len : 4 - pn_len + _SAMPLE_LEN]
    mask = _mask(keys.hp, sample)
    prot_first = bytes((first ^ (mask[0] & 0x0F),))
    prot_pn = bytes(b ^ m for b, m in zip(pn_bytes, mask[1:], strict=False))
    return prot_first + header[1:] + prot_pn + sealed


def _varint(v: int) -> bytes:
    if v < 0x40:
        return bytes((v,))
    if v < 0x4000:
        return (0x4000 | v).to_bytes(2, "big")
    if v < 0x40000000:
        return (0x80000000 | v).to_bytes(4, "big")
    return (0xC000000000000000 | v).to_bytes(8, "big")

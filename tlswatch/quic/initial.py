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

from cryptography.hazmat.primitives import hashes

from ..tls.decrypt import CIPHER_SUITES, hkdf_expand_label
from .frames import FrameError, read_varint
from .protection import (
    QUIC_V1,
    QUIC_V2,
    PacketKeys,
    decode_packet_number,
    open_packet,
    packet_keys,
    seal_packet,
)

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
    "decrypt_long_packet",
    "encrypt_initial",
    "encrypt_long_packet",
    "initial_keys",
    "initial_secrets",
    "parse_long_header",
    "parse_long_headers",
]

#: initial_salt per version (RFC 9001 §5.2, RFC 9369 §3.3.1).
INITIAL_SALTS: Final[dict[int, bytes]] = {
    QUIC_V1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
    QUIC_V2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
}
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


#: Initial packets use AES-128-GCM keys (RFC 9001 §5.2): plain packet keys.
InitialKeys = PacketKeys


def initial_secrets(dcid: bytes, version: int = QUIC_V1) -> tuple[bytes, bytes]:
    """(client_initial_secret, server_initial_secret). KeyError for an unsupported version."""
    initial_secret = hmac.digest(INITIAL_SALTS[version], dcid, sha256)  # HKDF-Extract
    alg = hashes.SHA256()
    return (hkdf_expand_label(alg, initial_secret, b"client in", b"", 32),
            hkdf_expand_label(alg, initial_secret, b"server in", b"", 32))


def initial_keys(dcid: bytes, version: int = QUIC_V1, *, server: bool = False) -> InitialKeys:
    """AES-128-GCM key, IV and header-protection key for one direction's Initial packets."""
    return packet_keys(initial_secrets(dcid, version)[1 if server else 0], version=version)


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


@dataclass(frozen=True, slots=True)
class InitialPacket:
    """A decrypted long-header packet (Initial or Handshake)."""

    header: LongHeader
    packet_number: int
    payload: bytes  # decrypted frames


def decrypt_long_packet(datagram: bytes, header: LongHeader, keys: PacketKeys,
                        largest_pn: int = -1) -> InitialPacket | None:
    """Remove header protection and open the AEAD; None if the packet does not authenticate."""
    if header.pn_offset < 0:
        return None
    got = open_packet(datagram, header.start, header.pn_offset, header.end, keys, largest_pn)
    return None if got is None else InitialPacket(header, got[0], got[1])


#: Initial packets are opened like any other long-header packet.
decrypt_initial = decrypt_long_packet


def encrypt_long_packet(keys: PacketKeys, *, version: int, packet_type: PacketType,
                        dcid: bytes, scid: bytes, packet_number: int, payload: bytes,
                        token: bytes = b"", pn_len: int = 4) -> bytes:
    """A protected Initial, 0-RTT or Handshake packet (for tests and fixtures; tlswatch
    never sends). The payload is padded with PADDING so the header-protection sample exists.
    """
    if not 1 <= pn_len <= 4:
        raise ValueError("pn_len must be 1..4")
    if packet_type not in (PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE):
        raise ValueError(f"not a protected long-header packet type: {packet_type}")
    payload = payload + bytes(max(0, 4 - pn_len - len(payload)))
    type_bits = _TYPES[version].index(packet_type)
    first = 0xC0 | (type_bits << 4) | (pn_len - 1)
    length = pn_len + len(payload) + CIPHER_SUITES[keys.cipher_suite].tag_length
    header = (bytes((first,)) + version.to_bytes(4, "big") + bytes((len(dcid),)) + dcid
              + bytes((len(scid),)) + scid
              + (_varint(len(token)) + token if packet_type is PacketType.INITIAL else b"")
              + (0x4000 | length).to_bytes(2, "big"))
    return seal_packet(keys, header, packet_number, pn_len, payload)


def encrypt_initial(keys: PacketKeys, *, version: int, dcid: bytes, scid: bytes,
                    packet_number: int, payload: bytes, token: bytes = b"",
                    pn_len: int = 4) -> bytes:
    """A protected Initial packet (for tests and fixtures; tlswatch never sends)."""
    return encrypt_long_packet(keys, version=version, packet_type=PacketType.INITIAL,
                               dcid=dcid, scid=scid, packet_number=packet_number,
                               payload=payload, token=token, pn_len=pn_len)


def _varint(v: int) -> bytes:
    if v < 0x40:
        return bytes((v,))
    if v < 0x4000:
        return (0x4000 | v).to_bytes(2, "big")
    if v < 0x40000000:
        return (0x80000000 | v).to_bytes(4, "big")
    return (0xC000000000000000 | v).to_bytes(8, "big")

"""QUIC packet protection (RFC 9001 §5): keys from a secret, header protection, AEAD.

One implementation for every packet number space: Initial keys come from the public
Initial secrets, Handshake keys from the key log's ``*_HANDSHAKE_TRAFFIC_SECRET``. The AEAD
and hash are the TLS 1.3 cipher suite's (:data:`tlswatch.tls.decrypt.CIPHER_SUITES`); the
header-protection mask is AES-ECB of the sample for AES suites and the ChaCha20 keystream
for ChaCha20-Poly1305 (RFC 9001 §5.4.3, §5.4.4). QUIC v2 only changes the labels
(RFC 9369 §3.3.2). Opening never raises on hostile bytes: it returns None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..tls.decrypt import (
    CIPHER_SUITES,
    TLS_AES_128_CCM_8_SHA256,
    TLS_AES_128_GCM_SHA256,
    TLS_CHACHA20_POLY1305_SHA256,
    hkdf_expand_label,
)

__all__ = [
    "LABEL_PREFIXES",
    "QUIC_V1",
    "QUIC_V2",
    "SAMPLE_LENGTH",
    "PacketKeys",
    "decode_packet_number",
    "header_mask",
    "open_packet",
    "packet_keys",
    "retry_integrity_tag",
    "seal_packet",
]

QUIC_V1: Final = 0x00000001
QUIC_V2: Final = 0x6B3343CF
#: Prefix of the "key", "iv", "hp" labels per version (RFC 9001 §5.1, RFC 9369 §3.3.2).
LABEL_PREFIXES: Final[dict[int, bytes]] = {QUIC_V1: b"quic ", QUIC_V2: b"quicv2 "}
SAMPLE_LENGTH: Final = 16
#: Fixed AES-128-GCM key and nonce of the Retry Integrity Tag (RFC 9001 §5.8, RFC 9369 §3.3.3).
_RETRY_INTEGRITY: Final[dict[int, tuple[bytes, bytes]]] = {
    QUIC_V1: (bytes.fromhex("be0c690b9f66575a1d766b54e368c84e"),
              bytes.fromhex("461599d35d632bf2239825bb")),
    QUIC_V2: (bytes.fromhex("8fb4b01b56ac48e260fbcbcead7ccc92"),
              bytes.fromhex("d86969bc2d7c6d9990efb04a")),
}
_IV_LENGTH: Final = 12
_MAX_PN_LENGTH: Final = 4


@dataclass(frozen=True, slots=True)
class PacketKeys:
    """One direction's packet protection keys in one packet number space."""

    key: bytes
    iv: bytes
    hp: bytes
    cipher_suite: int = TLS_AES_128_GCM_SHA256


def packet_keys(secret: bytes, cipher_suite: int = TLS_AES_128_GCM_SHA256,
                version: int = QUIC_V1) -> PacketKeys:
    """Key, IV and header-protection key of a traffic secret.

    ``KeyError`` for a cipher suite that is not TLS 1.3's or an unknown QUIC version;
    ``ValueError`` for TLS_AES_128_CCM_8_SHA256, which QUIC forbids (RFC 9001 §5.3).
    """
    suite = CIPHER_SUITES[cipher_suite]
    prefix = LABEL_PREFIXES[version]
    if cipher_suite == TLS_AES_128_CCM_8_SHA256:
        raise ValueError("TLS_AES_128_CCM_8_SHA256 is not used with QUIC (RFC 9001 §5.3)")
    alg = suite.hash()
    return PacketKeys(hkdf_expand_label(alg, secret, prefix + b"key", b"", suite.key_length),
                      hkdf_expand_label(alg, secret, prefix + b"iv", b"", _IV_LENGTH),
                      hkdf_expand_label(alg, secret, prefix + b"hp", b"", suite.key_length),
                      cipher_suite)


def header_mask(keys: PacketKeys, sample: bytes) -> bytes:
    """The 5-byte header protection mask for a 16-byte ciphertext sample."""
    if keys.cipher_suite == TLS_CHACHA20_POLY1305_SHA256:
        # cryptography's ChaCha20 "nonce" is counter (4 bytes, little-endian) || nonce:
        # exactly the sample's layout in RFC 9001 §5.4.4.
        cipher = Cipher(algorithms.ChaCha20(keys.hp, sample), mode=None)
        return cipher.encryptor().update(bytes(5))
    return Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor().update(sample)[:5]


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


def _nonce(iv: bytes, pn: int) -> bytes:
    return (int.from_bytes(iv, "big") ^ pn).to_bytes(len(iv), "big")


def open_packet(datagram: bytes, start: int, pn_offset: int, end: int, keys: PacketKeys,
                largest_pn: int = -1, *, long_header: bool = True) -> tuple[int, bytes] | None:
    """(packet number, plaintext) of the packet ``datagram[start:end]`` whose packet number
    starts at ``pn_offset``; None when it is too short or does not authenticate."""
    if start < 0 or pn_offset <= start or pn_offset + _MAX_PN_LENGTH + SAMPLE_LENGTH > end \
            or end > len(datagram):
        return None
    suite = CIPHER_SUITES.get(keys.cipher_suite)
    if suite is None:
        return None
    sample_at = pn_offset + _MAX_PN_LENGTH
    mask = header_mask(keys, datagram[sample_at : sample_at + SAMPLE_LENGTH])
    first = datagram[start] ^ (mask[0] & (0x0F if long_header else 0x1F))
    pn_len = (first & 0x03) + 1
    truncated = int.from_bytes(
        bytes(b ^ m for b, m in zip(datagram[pn_offset : pn_offset + pn_len], mask[1:],
                                    strict=False)), "big")
    aad = (bytes((first,)) + datagram[start + 1 : pn_offset]
           + truncated.to_bytes(pn_len, "big"))
    pn = decode_packet_number(truncated, pn_len, largest_pn)
    ciphertext = datagram[pn_offset + pn_len : end]
    if len(ciphertext) < suite.tag_length:
        return None
    try:
        payload = suite.aead(keys.key).decrypt(_nonce(keys.iv, pn), ciphertext, aad)
    except (InvalidTag, ValueError):  # (ValueError: a key of the wrong length)
        return None
    return pn, payload


def seal_packet(keys: PacketKeys, header: bytes, packet_number: int, pn_len: int,
                payload: bytes, *, long_header: bool = True) -> bytes:
    """Protect a packet: ``header`` ends just before the packet number (its first byte holds
    the unprotected pn length bits). For tests and fixtures: tlswatch never sends."""
    if not 1 <= pn_len <= _MAX_PN_LENGTH:
        raise ValueError("pn_len must be 1..4")
    if len(payload) + pn_len < _MAX_PN_LENGTH:
        raise ValueError("payload too short for a header protection sample; pad it")
    suite = CIPHER_SUITES[keys.cipher_suite]
    pn_bytes = (packet_number & ((1 << (8 * pn_len)) - 1)).to_bytes(pn_len, "big")
    sealed = suite.aead(keys.key).encrypt(_nonce(keys.iv, packet_number), payload,
                                          header + pn_bytes)
    sample = sealed[_MAX_PN_LENGTH - pn_len : _MAX_PN_LENGTH - pn_len + SAMPLE_LENGTH]
    mask = header_mask(keys, sample)
    first = header[0] ^ (mask[0] & (0x0F if long_header else 0x1F))
    prot_pn = bytes(b ^ m for b, m in zip(pn_bytes, mask[1:], strict=False))
    return bytes((first,)) + header[1:] + prot_pn + sealed


def retry_integrity_tag(original_dcid: bytes, retry_without_tag: bytes, version: int) -> bytes:
    """The 16-byte tag that ends a Retry packet: AES-GCM over the Retry pseudo-packet (the
    client's original DCID, length-prefixed, then the Retry up to its tag). KeyError for an
    unknown version."""
    key, nonce = _RETRY_INTEGRITY[version]
    pseudo = bytes((len(original_dcid),)) + original_dcid + retry_without_tag
    return AESGCM(key).encrypt(nonce, b"", pseudo)

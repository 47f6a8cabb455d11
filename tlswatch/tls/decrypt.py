"""TLS 1.3 handshake decryption from a key log's traffic secret (RFC 8446 §5.2, §7.1, §7.3).

Only what a passive observer needs to read the server's encrypted flight
(EncryptedExtensions, Certificate, CertificateVerify, Finished):

* :func:`hkdf_expand_label` (RFC 8446 §7.1) and :func:`traffic_key_iv` (§7.3) for the five
  TLS 1.3 cipher suites of :data:`CIPHER_SUITES`;
* :func:`record_nonce` (§5.3) and :func:`open_record` (§5.2): AEAD open of one TLSCiphertext
  with its 5-byte header as additional data, and the inner content type stripped;
* :class:`HandshakeDecryptor`: the server's byte stream in (cleartext records are passed
  over), handshake events out, until the server's Finished.

Nothing here raises on what a peer or a key log supplies: a wrong secret ends in the
``decrypt_failed`` state. Uses ``cryptography``'s AEAD primitives; sans-IO.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from .alerts import alert_name
from .events import CertificateEvent, CompressedCertificateErrorEvent, Event, InvalidEvent
from .handshake import (
    DEFAULT_MAX_MESSAGE_SIZE,
    HandshakeReassembler,
    HandshakeType,
    OversizedMessage,
)
from .parser import decode_handshake_message
from .records import RECORD_HEADER_LENGTH

__all__ = [
    "CIPHER_SUITES",
    "DEFAULT_MAX_HANDSHAKE_BYTES",
    "TLS_AES_128_CCM_8_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "CipherSuite",
    "DecryptError",
    "DecryptState",
    "HandshakeDecryptor",
    "hkdf_expand_label",
    "open_record",
    "record_nonce",
    "traffic_key_iv",
]

TLS_AES_128_GCM_SHA256: Final = 0x1301
TLS_AES_256_GCM_SHA384: Final = 0x1302
TLS_CHACHA20_POLY1305_SHA256: Final = 0x1303
TLS_AES_128_CCM_SHA256: Final = 0x1304
TLS_AES_128_CCM_8_SHA256: Final = 0x1305

#: Bytes of the server's stream a :class:`HandshakeDecryptor` reads before giving up.
DEFAULT_MAX_HANDSHAKE_BYTES: Final = 256 * 1024

_HEADER: Final = struct.Struct(">BHH")
_CCS: Final = 20
_ALERT: Final = 21
_HANDSHAKE: Final = 22
_APPLICATION_DATA: Final = 23
_MAX_CIPHERTEXT: Final = 2**14 + 256  # RFC 8446 §5.2
_IV_LENGTH: Final = 12
_MAX_ANOMALIES: Final = 4  # a server sends one certificate message; a few notes are plenty

Aead = AESGCM | AESCCM | ChaCha20Poly1305


class DecryptError(Exception):
    """A record did not open (wrong key, damaged record) or cannot be opened at all."""


@dataclass(frozen=True, slots=True)
class CipherSuite:
    """A TLS 1.3 cipher suite: its hash (key schedule) and AEAD (record protection)."""

    code: int
    name: str
    hash_name: str  # "sha256" | "sha384"
    key_length: int
    tag_length: int

    def hash(self) -> hashes.HashAlgorithm:
        return hashes.SHA384() if self.hash_name == "sha384" else hashes.SHA256()

    def aead(self, key: bytes) -> Aead:
        if self.code == TLS_CHACHA20_POLY1305_SHA256:
            return ChaCha20Poly1305(key)
        if self.code in (TLS_AES_128_CCM_SHA256, TLS_AES_128_CCM_8_SHA256):
            return AESCCM(key, tag_length=self.tag_length)
        return AESGCM(key)


#: The TLS 1.3 cipher suites (RFC 8446 §B.4), by code.
CIPHER_SUITES: Final[dict[int, CipherSuite]] = {
    s.code: s for s in (
        CipherSuite(TLS_AES_128_GCM_SHA256, "TLS_AES_128_GCM_SHA256", "sha256", 16, 16),
        CipherSuite(TLS_AES_256_GCM_SHA384, "TLS_AES_256_GCM_SHA384", "sha384", 32, 16),
        CipherSuite(TLS_CHACHA20_POLY1305_SHA256, "TLS_CHACHA20_POLY1305_SHA256", "sha256",
                    32, 16),
        CipherSuite(TLS_AES_128_CCM_SHA256, "TLS_AES_128_CCM_SHA256", "sha256", 16, 16),
        CipherSuite(TLS_AES_128_CCM_8_SHA256, "TLS_AES_128_CCM_8_SHA256", "sha256", 16, 8),
    )
}


def hkdf_expand_label(algorithm: hashes.HashAlgorithm, secret: bytes, label: bytes,
                      context: bytes, length: int) -> bytes:
    """HKDF-Expand-Label (RFC 8446 §7.1): ``HkdfLabel`` = length, "tls13 " + label, context."""
    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + bytes((len(context),)) + context
    return HKDFExpand(algorithm, length, info).derive(secret)


def traffic_key_iv(cipher_suite: int, secret: bytes) -> tuple[bytes, bytes]:
    """The write key and IV of a traffic secret (RFC 8446 §7.3). KeyError: not TLS 1.3."""
    suite = CIPHER_SUITES[cipher_suite]
    alg = suite.hash()
    return (hkdf_expand_label(alg, secret, b"key", b"", suite.key_length),
            hkdf_expand_label(alg, secret, b"iv", b"", _IV_LENGTH))


def record_nonce(iv: bytes, seq: int) -> bytes:
    """The per-record nonce: the 64-bit sequence number, left-padded, XORed with the IV."""
    return (int.from_bytes(iv, "big") ^ seq).to_bytes(len(iv), "big")


def _strip(plaintext: bytes) -> tuple[int, bytes]:
    """TLSInnerPlaintext -> (content type, content): the last non-zero byte is the type."""
    end = len(plaintext.rstrip(b"\x00"))
    if end == 0:
        raise DecryptError("the record's plaintext has no content type (all zeros)")
    return plaintext[end - 1], plaintext[: end - 1]


def _open(aead: Aead, iv: bytes, seq: int, record: bytes | memoryview) -> tuple[int, bytes]:
    header = bytes(record[:RECORD_HEADER_LENGTH])
    try:
        plaintext = aead.decrypt(record_nonce(iv, seq), bytes(record[RECORD_HEADER_LENGTH:]),
                                 header)
    except InvalidTag:
        raise DecryptError(f"record {seq} did not authenticate") from None
    return _strip(plaintext)


def open_record(cipher_suite: int, key: bytes, iv: bytes, seq: int,
                record: bytes) -> tuple[int, bytes]:
    """Open one whole TLSCiphertext record (header included) -> (inner type, content).

    Raises :class:`DecryptError` when it does not authenticate (or is not a record), and
    ``KeyError`` for a cipher suite that is not TLS 1.3's.
    """
    suite = CIPHER_SUITES[cipher_suite]
    if len(record) < RECORD_HEADER_LENGTH + suite.tag_length:
        raise DecryptError("record shorter than its header and tag")
    if len(key) != suite.key_length or len(iv) != _IV_LENGTH:
        raise DecryptError("key or IV of the wrong length for the cipher suite")
    return _open(suite.aead(key), iv, seq, record)


class DecryptState(enum.Enum):
    READING = "reading"  # more of the server's flight is needed
    DONE = "done"  # the server's Finished was decrypted
    DECRYPT_FAILED = "decrypt_failed"  # a record did not authenticate: wrong secret
    UNSUPPORTED = "unsupported"  # not a TLS 1.3 cipher suite (or a secret of no use)
    ALERT = "alert"  # the server sent an alert (encrypted or not) before its Finished
    INVALID = "invalid"  # decrypted, but not a well-formed handshake
    OVERFLOW = "overflow"  # over the byte limit before the Finished


class HandshakeDecryptor:
    """Decrypt the server's TLS 1.3 handshake flight with its handshake traffic secret.

    Feed the server's stream bytes (from its first byte, or from any record boundary; any
    chunking): cleartext handshake (ServerHello, HelloRetryRequest) and ChangeCipherSpec
    records are passed over, application_data records are opened with the keys of
    ``SERVER_HANDSHAKE_TRAFFIC_SECRET`` (sequence numbers from 0), their handshake messages
    reassembled and decoded (TLS 1.3 layouts). Stops after the server's Finished
    (:attr:`state` ``DONE``). ``feed`` never raises: failures are a :class:`DecryptState`
    with :attr:`detail`. A CompressedCertificate (RFC 8879) is inflated like any other
    certificate; :attr:`anomalies` notes it (``certificate_compressed:brotli``, or
    ``certificate_compressed:<algorithm>:<problem>`` when its chain could not be recovered).
    """

    __slots__ = ("_aead", "_buf", "_hs", "_iv", "_suite", "alert", "anomalies", "certificates",
                 "detail", "events", "max_bytes", "read", "records", "state")

    def __init__(self, cipher_suite: int, server_handshake_secret: bytes, *,
                 max_bytes: int = DEFAULT_MAX_HANDSHAKE_BYTES,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_bytes = max_bytes
        self.state = DecryptState.READING
        self.detail = ""
        self.records = 0  # encrypted records opened
        self.read = 0  # stream bytes fed
        self.events: list[Event] = []  # every decoded handshake event so far
        self.certificates: tuple[bytes, ...] | None = None  # the server's, leaf first
        self.alert: str | None = None
        self.anomalies: list[str] = []  # notes about the flight, at most _MAX_ANOMALIES
        self._buf = bytearray()
        self._hs = HandshakeReassembler(max_message_size)
        self._aead: Aead | None = None
        self._iv = b""
        suite = CIPHER_SUITES.get(cipher_suite)
        self._suite = suite
        if suite is None:
            self._stop(DecryptState.UNSUPPORTED, f"cipher suite 0x{cipher_suite:04x} is not "
                       "a TLS 1.3 suite")
            return
        if len(server_handshake_secret) != suite.hash().digest_size:
            self._stop(DecryptState.DECRYPT_FAILED, f"the secret has "
                       f"{len(server_handshake_secret)} bytes, {suite.name} needs "
                       f"{suite.hash().digest_size}")
            return
        key, self._iv = traffic_key_iv(cipher_suite, server_handshake_secret)
        self._aead = suite.aead(key)

    @property
    def reading(self) -> bool:
        return self.state is DecryptState.READING

    def _stop(self, state: DecryptState, detail: str) -> None:
        self.state = state
        self.detail = detail
        self._buf = bytearray()
        self._hs.reset()

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Consume server stream bytes; return the handshake events they completed."""
        if self.state is not DecryptState.READING or not data:
            return []
        self.read += len(data)
        if self.read > self.max_bytes:
            self._stop(DecryptState.OVERFLOW, f"no server Finished in the first "
                       f"{self.max_bytes} bytes")
            return []
        buf = self._buf
        buf += data
        out: list[Event] = []
        pos = 0
        while self.state is DecryptState.READING and len(buf) - pos >= RECORD_HEADER_LENGTH:
            ctype, _version, length = _HEADER.unpack_from(buf, pos)
            if length > _MAX_CIPHERTEXT or ctype not in (_CCS, _ALERT, _HANDSHAKE,
                                                         _APPLICATION_DATA):
                self._stop(DecryptState.INVALID, f"not a TLS record at stream byte "
                           f"{self.read - len(buf) + pos}")
                return out
            end = pos + RECORD_HEADER_LENGTH + length
            if end > len(buf):
                break
            if ctype == _APPLICATION_DATA:
                self._record(bytes(buf[pos:end]), out)
            elif ctype == _ALERT:
                desc = buf[pos + 6] if length >= 2 else -1
                self.alert = alert_name(desc) if desc >= 0 else "truncated"
                self._stop(DecryptState.ALERT, f"cleartext alert {self.alert}")
                return out
            pos = end  # (handshake and CCS records before encryption: passed over)
        if self.state is DecryptState.READING:
            del self._buf[:pos]
        return out

    def _record(self, record: bytes, out: list[Event]) -> None:
        assert self._aead is not None
        try:
            ctype, content = _open(self._aead, self._iv, self.records, record)
        except DecryptError as exc:
            self._stop(DecryptState.DECRYPT_FAILED, str(exc))
            return
        self.records += 1
        if ctype == _ALERT:
            self.alert = alert_name(content[1]) if len(content) >= 2 else "truncated"
            self._stop(DecryptState.ALERT, f"encrypted alert {self.alert}")
            return
        if ctype != _HANDSHAKE:
            self._stop(DecryptState.INVALID, f"content type {ctype} before the server "
                       "Finished")
            return
        for msg in self._hs.feed(content):
            if isinstance(msg, OversizedMessage):
                self._stop(DecryptState.INVALID, f"handshake message type {msg.msg_type} "
                           "over the size cap")
                return
            ev = decode_handshake_message(msg, tls13=True,
                                          max_certificate_size=self._hs.max_message_size)
            if isinstance(ev, InvalidEvent):
                self._stop(DecryptState.INVALID, f"{ev.reason}: {ev.detail}")
                return
            out.append(ev)
            self.events.append(ev)
            if isinstance(ev, CertificateEvent) and self.certificates is None:
                self.certificates = ev.certificates
            if isinstance(ev, CertificateEvent | CompressedCertificateErrorEvent) \
                    and ev.note is not None and len(self.anomalies) < _MAX_ANOMALIES:
                self.anomalies.append(ev.note)
            if msg.msg_type == HandshakeType.FINISHED:
                self.state = DecryptState.DONE
                self._buf = bytearray()
                return


"""The Handshake packet number space of one direction, opened with a key log's secret.

With ``SERVER_HANDSHAKE_TRAFFIC_SECRET`` (or the client's) for a session's ClientHello
random and the ServerHello's cipher suite, Handshake packets (RFC 9001 §4.1.4) are opened,
their CRYPTO frames reassembled (out of order, duplicated, split across packets) and the
TLS handshake messages decoded: EncryptedExtensions (the server's ALPN), Certificate (the
chain, TLS 1.3 layout) or CompressedCertificate (RFC 8879, inflated with a bounded output;
:attr:`HandshakeSpace.anomalies` notes it), CertificateVerify and Finished. Packets that
arrive before the keys are known (reordered datagrams) wait in a small bounded queue.

:attr:`HandshakeSpace.state` uses the TCP key-log vocabulary
(:data:`tlswatch.capture.observe.KEYLOG_STATES`): ``decrypted`` once Finished was read,
``decrypt_failed`` when packets came but none authenticated, ``incomplete`` when some did
but Finished never came, ``unsupported`` / ``invalid`` otherwise. Never raises on bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ..tls._reader import Reader
from ..tls.decrypt import CIPHER_SUITES
from ..tls.events import CertificateEvent, CompressedCertificateErrorEvent, InvalidEvent
from ..tls.handshake import (
    DEFAULT_MAX_MESSAGE_SIZE,
    HandshakeMessage,
    HandshakeType,
    OversizedMessage,
)
from ..tls.hello import DecodeError
from ..tls.parser import decode_handshake_message
from .crypto_stream import DEFAULT_MAX_CRYPTO_BYTES, CryptoStream
from .frames import ConnectionCloseFrame, CryptoFrame, Frame, parse_frames
from .initial import LongHeader, decrypt_long_packet
from .protection import PacketKeys, packet_keys

__all__ = [
    "MAX_PENDING_PACKETS",
    "HandshakeSpace",
    "encrypted_extensions_alpn",
]

#: Handshake packets held per direction while their keys are not known yet.
MAX_PENDING_PACKETS: Final = 16
#: ALPN protocols are at most 255 bytes (RFC 7301); this is what a record keeps of one.
_MAX_ALPN: Final = 255
_ALPN_EXTENSION: Final = 16
_MAX_ANOMALIES: Final = 4


def encrypted_extensions_alpn(body: bytes) -> str | None:
    """The protocol the server selected in EncryptedExtensions (None: no ALPN extension).

    ``DecodeError`` when the message is malformed.
    """
    r = Reader(body)
    block = r.sub16()
    r.expect_end()
    for etype, data in block.u16_vec16_items():
        if etype == _ALPN_EXTENSION:
            inner = Reader(data)
            protos = inner.sub16()
            inner.expect_end()
            proto = protos.vec8()
            return proto[:_MAX_ALPN].decode("ascii", "backslashreplace")
    return None


@dataclass(slots=True)
class HandshakeSpace:
    """One direction's Handshake packets: keys, CRYPTO stream and what it revealed."""

    server: bool
    max_crypto_bytes: int = DEFAULT_MAX_CRYPTO_BYTES
    keys: PacketKeys | None = None
    state: str | None = None  # None: no keys tried yet (see the module doc)
    detail: str = ""
    largest: int = -1
    opened: int = 0  # packets that authenticated
    failed: int = 0  # packets that did not
    finished: bool = False
    alpn: str | None = None
    chain: tuple[bytes, ...] | None = None
    close: ConnectionCloseFrame | None = None
    # certificate_compressed:<algorithm>[:<problem>] when the chain came compressed
    anomalies: list[str] = field(default_factory=list)
    frame_error: str | None = None
    _pending: list[tuple[bytes, LongHeader]] = field(default_factory=list, init=False,
                                                     repr=False)
    _stream: CryptoStream = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._stream = CryptoStream(self.max_crypto_bytes)

    @property
    def side(self) -> str:
        return "server" if self.server else "client"

    def set_secret(self, secret: bytes, cipher_suite: int, version: int) -> None:
        """Derive the keys from a traffic secret, then open any packets that were waiting."""
        suite = CIPHER_SUITES.get(cipher_suite)
        label = f"{self.side.upper()}_HANDSHAKE_TRAFFIC_SECRET"
        if suite is None:
            self._stop("unsupported", f"cipher suite 0x{cipher_suite:04x} is not a TLS 1.3 "
                       "suite")
            return
        if len(secret) != suite.hash().digest_size:
            self._stop("decrypt_failed", f"the key log's {label} has {len(secret)} bytes, "
                       f"{suite.name} needs {suite.hash().digest_size}")
            return
        try:
            self.keys = packet_keys(secret, cipher_suite, version)
        except (KeyError, ValueError) as exc:
            self._stop("unsupported", f"no QUIC packet protection for {suite.name} "
                       f"in version 0x{version:08x} ({exc})")
            return
        pending, self._pending = self._pending, []
        for datagram, header in pending:
            self.add_packet(datagram, header)

    def _stop(self, state: str, detail: str) -> None:
        self.state, self.detail = state, detail
        self._pending = []

    def add_packet(self, datagram: bytes, header: LongHeader) -> list[Frame]:
        """Open one Handshake packet (or queue it until the keys are known): its frames."""
        if self.state in ("unsupported", "invalid"):
            return []
        if self.keys is None:
            if self.state is None and len(self._pending) < MAX_PENDING_PACKETS:
                self._pending.append((datagram, header))
            return []
        pkt = decrypt_long_packet(datagram, header, self.keys, self.largest)
        if pkt is None:
            self.failed += 1
            if not self.opened:
                self.state = "decrypt_failed"
                self.detail = (f"{self.failed} {self.side} Handshake packet(s) did not "
                               f"authenticate with the key log's "
                               f"{self.side.upper()}_HANDSHAKE_TRAFFIC_SECRET")
            return []
        self.opened += 1
        self.largest = max(self.largest, pkt.packet_number)
        if self.state in (None, "decrypt_failed"):
            self.state, self.detail = "incomplete", ""
        frames, err = parse_frames(pkt.payload)
        if err is not None and self.frame_error is None:
            self.frame_error = err
        for fr in frames:
            if isinstance(fr, CryptoFrame):
                for msg in self._stream.add(fr.offset, fr.data):
                    self._message(msg)
            elif isinstance(fr, ConnectionCloseFrame):
                self.close = fr
        if self.state == "incomplete":
            self.detail = self._progress()
        return frames

    def _progress(self) -> str:
        what = f"{self.opened} {self.side} Handshake packet(s) decrypted, no Finished"
        if self._stream.truncated:
            what += f"; over {self.max_crypto_bytes} CRYPTO bytes"
        return what

    @property
    def waiting(self) -> int:
        """Packets queued until the keys are known."""
        return len(self._pending)

    def _message(self, msg: HandshakeMessage | OversizedMessage) -> None:
        if self.state != "incomplete":
            return
        if isinstance(msg, OversizedMessage):
            self._stop("invalid", f"handshake message type {msg.msg_type} over "
                       f"{self.max_crypto_bytes} bytes")
            return
        t = msg.msg_type
        if t == HandshakeType.ENCRYPTED_EXTENSIONS and self.server:
            try:
                self.alpn = encrypted_extensions_alpn(msg.body)
            except DecodeError as exc:
                self._stop("invalid", f"EncryptedExtensions: {exc}")
        elif t in (HandshakeType.CERTIFICATE, HandshakeType.COMPRESSED_CERTIFICATE) \
                and self.server:
            # The decompressed size is capped like a reassembled message, not by CRYPTO bytes.
            ev = decode_handshake_message(msg, tls13=True,
                                          max_certificate_size=DEFAULT_MAX_MESSAGE_SIZE)
            if isinstance(ev, InvalidEvent):
                self._stop("invalid", f"{ev.reason}: {ev.detail}")
                return
            if isinstance(ev, CertificateEvent) and self.chain is None:
                self.chain = ev.certificates
            if isinstance(ev, CertificateEvent | CompressedCertificateErrorEvent) \
                    and ev.note is not None and len(self.anomalies) < _MAX_ANOMALIES:
                self.anomalies.append(ev.note)
        elif t == HandshakeType.FINISHED:
            self.finished = True
            self.state, self.detail = "decrypted", ""

"""Sans-IO TLS parser for one direction of a connection: bytes in, events out.

States (:class:`Status`):

* ``INCOMPLETE`` - the cleartext handshake is still being read; more bytes are needed
  (``buffered`` says how many bytes of a partial record/message are held).
* ``DONE`` - encryption began (after ChangeCipherSpec in TLS <= 1.2, after a TLS 1.3
  ServerHello) or a fatal alert was seen. Records are still framed and reported, but their
  payloads are skipped without buffering.
* ``INVALID`` - the stream is not (or no longer) parseable TLS; ``invalid_reason`` says why.
  An :class:`InvalidEvent` is emitted once and later input is ignored. Never raised.
"""

from __future__ import annotations

import enum
import struct
from typing import Final, Literal

from .alerts import alert_name
from .certificate import decode_certificate
from .compressed_certificate import (
    DecompressionError,
    algorithm_name,
    decode_compressed_certificate,
    decompress_certificate,
)
from .events import (
    AlertEvent,
    CertificateEvent,
    ChangeCipherSpecEvent,
    ClientHelloEvent,
    CompressedCertificateErrorEvent,
    EncryptedRecordEvent,
    EndOfStreamEvent,
    Event,
    HandshakeMessageEvent,
    HelloRetryRequestEvent,
    InvalidEvent,
    ServerHelloEvent,
)
from .handshake import (
    DEFAULT_MAX_MESSAGE_SIZE,
    HandshakeMessage,
    HandshakeReassembler,
    HandshakeType,
    OversizedMessage,
)
from .hello import DecodeError, decode_client_hello, decode_server_hello, decode_sslv2_client_hello
from .records import RECORD_HEADER_LENGTH, check_record_header

__all__ = ["Role", "Status", "TLSParser", "decode_handshake_message"]

Role = Literal["client", "server"]

_HEADER: Final = struct.Struct(">BHH")
_CCS: Final = 20
_ALERT: Final = 21
_HANDSHAKE: Final = 22
_TLS13: Final = 0x0304


class Status(enum.Enum):
    INCOMPLETE = "incomplete"
    DONE = "done"
    INVALID = "invalid"


_MALFORMED: Final[dict[int, str]] = {
    HandshakeType.CLIENT_HELLO: "malformed_client_hello",
    HandshakeType.SERVER_HELLO: "malformed_server_hello",
    HandshakeType.CERTIFICATE: "malformed_certificate",
}


def decode_handshake_message(
    msg: HandshakeMessage,
    *,
    tls13: bool = False,
    offset: int = 0,
    max_certificate_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> Event:
    """Decode one complete handshake message into an event (never raises on bad input).

    ``tls13`` selects the TLS 1.3 Certificate layout (for decrypted TLS 1.3 handshakes).
    A CompressedCertificate (RFC 8879, TLS 1.3 only) is inflated to at most
    ``max_certificate_size`` bytes: a :class:`CertificateEvent` with ``compression`` set, or
    a :class:`CompressedCertificateErrorEvent` (not fatal: the stream's framing is intact).
    """
    body = msg.body
    try:
        if msg.msg_type == HandshakeType.CLIENT_HELLO:
            return ClientHelloEvent(decode_client_hello(body))
        if msg.msg_type == HandshakeType.SERVER_HELLO:
            hello = decode_server_hello(body)
            return HelloRetryRequestEvent(hello) if hello.is_hrr else ServerHelloEvent(hello)
        if msg.msg_type == HandshakeType.CERTIFICATE:
            cert = decode_certificate(body, tls13=tls13)
            return CertificateEvent(cert.certificates, cert.request_context, cert.tls13)
    except DecodeError as exc:
        return InvalidEvent(_MALFORMED[msg.msg_type], offset, str(exc))
    if msg.msg_type == HandshakeType.COMPRESSED_CERTIFICATE:
        return _compressed_certificate(body, max_certificate_size)
    return HandshakeMessageEvent(msg.msg_type, len(body))


def _compressed_certificate(body: bytes, cap: int) -> CertificateEvent | \
        CompressedCertificateErrorEvent:
    try:
        msg = decode_compressed_certificate(body)
    except DecodeError as exc:
        algorithm = algorithm_name(int.from_bytes(body[:2], "big")) if len(body) >= 2 \
            else "unknown"
        return CompressedCertificateErrorEvent(algorithm, 0, len(body), "malformed", str(exc))
    name = msg.algorithm_name
    try:
        plain = decompress_certificate(msg, max_length=cap)
        cert = decode_certificate(plain, tls13=True)  # RFC 8879 exists for TLS 1.3 only
    except DecompressionError as exc:
        return CompressedCertificateErrorEvent(name, msg.uncompressed_length, len(msg.data),
                                               exc.problem, exc.detail)
    except DecodeError as exc:
        return CompressedCertificateErrorEvent(name, msg.uncompressed_length, len(msg.data),
                                               "malformed_certificate", str(exc))
    return CertificateEvent(cert.certificates, cert.request_context, True, name)


class TLSParser:
    """Parse one direction of a TLS connection.

    ``role`` ("client"/"server"/None) only matters for the first byte: an SSLv2-compatible
    hello is accepted from a client or unknown role. ``ccs_starts_encryption`` is cleared by
    :class:`~tlswatch.tls.connection.TLSConnection` in TLS 1.3 (where CCS is a no-op for
    middlebox compatibility, and a second ClientHello may follow it after an HRR).
    """

    __slots__ = (
        "_alert_pending",
        "_encrypted",
        "_eof",
        "_hs",
        "_offset",
        "_out",
        "_pending",
        "_pending_start",
        "_reason",
        "_records",
        "_skip",
        "_sslv2",
        "_started",
        "_status",
        "ccs_starts_encryption",
        "role",
    )

    def __init__(
        self, role: Role | None = None, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ) -> None:
        self.role = role
        self.ccs_starts_encryption = True
        self._hs = HandshakeReassembler(max_message_size)
        self._pending = bytearray()  # a partial record (header + payload), <= 5 + 18432 bytes
        self._pending_start = 0
        self._skip = 0  # payload bytes of an opaque record still to pass over
        self._offset = 0
        self._status = Status.INCOMPLETE
        self._reason: str | None = None
        self._encrypted = False
        self._records = 0
        self._started = False
        self._sslv2 = False
        self._alert_pending = b""
        self._eof = False
        self._out: list[Event] = []

    # -- state -------------------------------------------------------------------------------
    @property
    def status(self) -> Status:
        return self._status

    @property
    def invalid_reason(self) -> str | None:
        return self._reason

    @property
    def encrypted(self) -> bool:
        return self._encrypted

    @property
    def offset(self) -> int:
        """Total bytes fed so far."""
        return self._offset

    @property
    def buffered(self) -> int:
        """Bytes held for a partial record or handshake message."""
        return len(self._pending) + self._hs.buffered + len(self._alert_pending)

    @property
    def max_message_size(self) -> int:
        return self._hs.max_message_size

    def start_encryption(self) -> None:
        """From now on, records other than ChangeCipherSpec are opaque."""
        self._encrypted = True
        self._hs.reset()
        self._alert_pending = b""
        if self._status is Status.INCOMPLETE:
            self._status = Status.DONE

    # -- input -------------------------------------------------------------------------------
    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Consume bytes; return the events they completed. Never raises on bad input."""
        if self._status is Status.INVALID or self._eof or not data:
            self._offset += len(data)
            return []
        out: list[Event] = []
        self._out = out
        mv = memoryview(data).cast("B")
        n = len(mv)
        base = self._offset
        self._offset += n
        pos = 0
        if not self._started:
            self._started = True
            if mv[0] & 0x80 and self.role != "server":
                self._sslv2 = True
                self._pending_start = base
        unpack = _HEADER.unpack_from
        while pos < n and not self._invalid():
            if self._skip:
                take = min(self._skip, n - pos)
                self._skip -= take
                pos += take
                continue
            if self._sslv2:
                pos = self._feed_sslv2(mv, pos)
                continue
            pend = self._pending
            if pend:
                if len(pend) < RECORD_HEADER_LENGTH:
                    take = min(RECORD_HEADER_LENGTH - len(pend), n - pos)
                    pend += mv[pos : pos + take]
                    pos += take
                    if len(pend) < RECORD_HEADER_LENGTH:
                        break
                    ctype, version, length = unpack(pend)
                    if not self._header_ok(ctype, version, length, self._pending_start):
                        break
                    if self._is_opaque(ctype):
                        self._opaque(ctype, length)
                        pend.clear()
                        continue
                else:
                    ctype, version, length = unpack(pend)
                need = RECORD_HEADER_LENGTH + length - len(pend)
                take = min(need, n - pos)
                pend += mv[pos : pos + take]
                pos += take
                if take < need:
                    break
                # A fresh buffer: the old one stays exported by the payload view below.
                self._pending = bytearray()
                self._record(ctype, memoryview(pend)[RECORD_HEADER_LENGTH:], self._pending_start)
                continue
            if n - pos < RECORD_HEADER_LENGTH:
                self._pending_start = base + pos
                pend += mv[pos:]
                break
            ctype, version, length = unpack(mv, pos)
            if not self._header_ok(ctype, version, length, base + pos):
                break
            if self._is_opaque(ctype):
                self._opaque(ctype, length)
                pos += RECORD_HEADER_LENGTH
                continue
            end = pos + RECORD_HEADER_LENGTH + length
            if end <= n:
                self._record(ctype, mv[pos + RECORD_HEADER_LENGTH : end], base + pos)
                pos = end
            else:
                self._pending_start = base + pos
                pend += mv[pos:]
                break
        self._out = []
        return out

    def eof(self) -> list[Event]:
        """The peer closed its direction. Truncation during the cleartext handshake is invalid."""
        if self._eof:
            return []
        self._eof = True
        buffered = self.buffered + self._skip
        truncated = buffered > 0 and self._status is not Status.INVALID
        out: list[Event] = []
        if truncated and self._status is Status.INCOMPLETE:
            out.append(self._fail("truncated", self._pending_start, f"{buffered} bytes pending"))
        out.append(EndOfStreamEvent(truncated, buffered))
        return out

    # -- internals ---------------------------------------------------------------------------
    def _invalid(self) -> bool:
        # A method, not an inline check: _record() may change the status mid-loop.
        return self._status is Status.INVALID

    def _fail(self, reason: str, offset: int, detail: str = "") -> InvalidEvent:
        self._status = Status.INVALID
        self._reason = reason
        # Drop everything held: an invalid stream must not pin memory.
        self._pending = bytearray()
        self._hs.reset()
        self._skip = 0
        ev = InvalidEvent(reason, offset, detail)
        self._out.append(ev)
        return ev

    def _header_ok(self, ctype: int, version: int, length: int, offset: int) -> bool:
        reason = check_record_header(ctype, version, length)
        if reason is None:
            return True
        if self._records == 0:
            reason = "not_tls"
        self._fail(reason, offset, f"type={ctype} version=0x{version:04x} length={length}")
        return False

    def _is_opaque(self, ctype: int) -> bool:
        if ctype == _CCS:
            return False
        return self._encrypted or ctype > _HANDSHAKE

    def _opaque(self, ctype: int, length: int) -> None:
        self._records += 1
        self._out.append(EncryptedRecordEvent(ctype, length))
        self._skip = length

    def _feed_sslv2(self, mv: memoryview, pos: int) -> int:
        n = len(mv)
        pend = self._pending
        if len(pend) < 3:
            take = min(3 - len(pend), n - pos)
            pend += mv[pos : pos + take]
            pos += take
            if len(pend) < 3:
                return n
            length = ((pend[0] & 0x7F) << 8) | pend[1]
            if pend[2] != 1 or length < 9:
                self._fail("not_tls", self._pending_start, "high bit set but no SSLv2 CLIENT-HELLO")
                return n
        total = 2 + (((pend[0] & 0x7F) << 8) | pend[1])
        take = min(total - len(pend), n - pos)
        pend += mv[pos : pos + take]
        pos += take
        if len(pend) < total:
            return n
        self._sslv2 = False
        self._pending = bytearray()
        self._records += 1
        try:
            hello = decode_sslv2_client_hello(bytes(pend[2:]))
        except DecodeError as exc:
            self._fail("malformed_client_hello", self._pending_start, f"sslv2: {exc}")
            return n
        self._out.append(ClientHelloEvent(hello))
        return pos

    def _record(self, ctype: int, payload: memoryview, offset: int) -> None:
        self._records += 1
        out = self._out
        if ctype == _HANDSHAKE:
            for msg in self._hs.feed(payload):
                if isinstance(msg, OversizedMessage):
                    self._fail(
                        "oversized_message",
                        offset,
                        f"type={msg.msg_type} declared={msg.declared_length} "
                        f"cap={self._hs.max_message_size}",
                    )
                    return
                ev = decode_handshake_message(
                    msg, offset=offset, max_certificate_size=self._hs.max_message_size
                )
                if isinstance(ev, InvalidEvent):
                    self._fail(ev.reason, ev.offset, ev.detail)
                    return
                out.append(ev)
                if isinstance(ev, HelloRetryRequestEvent):
                    self.ccs_starts_encryption = False
                elif isinstance(ev, ServerHelloEvent) and ev.hello.version >= _TLS13:
                    self.ccs_starts_encryption = False
                    self.start_encryption()
        elif ctype == _ALERT:
            data = self._alert_pending + bytes(payload)
            usable = len(data) & ~1
            self._alert_pending = data[usable:]  # an alert split over records: keep 1 byte
            for i in range(0, usable, 2):
                level, desc = data[i], data[i + 1]
                out.append(AlertEvent(level, desc, alert_name(desc)))
                if level == 2 and self._status is Status.INCOMPLETE:
                    self._status = Status.DONE
        else:  # change_cipher_spec (other types are opaque and never get here)
            out.append(ChangeCipherSpecEvent(len(payload)))
            if self.ccs_starts_encryption:
                self.start_encryption()

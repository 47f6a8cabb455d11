"""Events produced by the parser. All frozen and slotted: safe to share and to keep as evidence."""

from __future__ import annotations

from dataclasses import dataclass

from .hello import ClientHello, ServerHello

__all__ = [
    "AlertEvent",
    "CertificateEvent",
    "ChangeCipherSpecEvent",
    "ClientHelloEvent",
    "CompressedCertificateErrorEvent",
    "EncryptedRecordEvent",
    "EndOfStreamEvent",
    "Event",
    "HandshakeMessageEvent",
    "HelloRetryRequestEvent",
    "InvalidEvent",
    "ServerHelloEvent",
]


@dataclass(frozen=True, slots=True)
class ClientHelloEvent:
    hello: ClientHello


@dataclass(frozen=True, slots=True)
class ServerHelloEvent:
    hello: ServerHello


@dataclass(frozen=True, slots=True)
class HelloRetryRequestEvent:
    """A ServerHello whose random is the RFC 8446 HRR value; the client will send a new hello."""

    hello: ServerHello


@dataclass(frozen=True, slots=True)
class CertificateEvent:
    """DER certificates as presented, leaf first. ``compression`` names the RFC 8879
    algorithm (``zlib``/``brotli``/``zstd``) when they came in a CompressedCertificate."""

    certificates: tuple[bytes, ...]
    request_context: bytes = b""
    tls13: bool = False
    compression: str | None = None

    @property
    def note(self) -> str | None:
        """The anomaly note a record carries for a compressed chain, else None."""
        return None if self.compression is None else f"certificate_compressed:{self.compression}"


@dataclass(frozen=True, slots=True)
class CompressedCertificateErrorEvent:
    """A CompressedCertificate (RFC 8879) whose chain could not be recovered; the stream
    goes on. ``problem``: ``malformed``, ``unknown_algorithm``, ``not_supported``,
    ``over_cap``, ``corrupt``, ``length_mismatch`` or ``malformed_certificate``."""

    algorithm: str  # zlib | brotli | zstd | the code in hex
    uncompressed_length: int
    compressed_length: int
    problem: str
    detail: str = ""

    @property
    def note(self) -> str:
        return f"certificate_compressed:{self.algorithm}:{self.problem}"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A cleartext alert. Encrypted alerts are :class:`EncryptedRecordEvent` (type 21)."""

    level: int
    description: int
    name: str

    @property
    def fatal(self) -> bool:
        return self.level == 2


@dataclass(frozen=True, slots=True)
class ChangeCipherSpecEvent:
    length: int = 1


@dataclass(frozen=True, slots=True)
class EncryptedRecordEvent:
    """A record seen but not decoded: application data, or anything after encryption began."""

    content_type: int
    length: int


@dataclass(frozen=True, slots=True)
class HandshakeMessageEvent:
    """A complete cleartext handshake message this package does not decode (or not yet)."""

    msg_type: int
    length: int


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """The stream stopped being parseable. ``offset`` is the stream offset (bytes fed to this
    direction) of the record in which the problem was found; ``detail`` is free text."""

    reason: str
    offset: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class EndOfStreamEvent:
    """Emitted by ``eof()``; ``truncated`` when a partial record or message was pending."""

    truncated: bool
    buffered_bytes: int


Event = (
    ClientHelloEvent
    | ServerHelloEvent
    | HelloRetryRequestEvent
    | CertificateEvent
    | CompressedCertificateErrorEvent
    | AlertEvent
    | ChangeCipherSpecEvent
    | EncryptedRecordEvent
    | HandshakeMessageEvent
    | InvalidEvent
    | EndOfStreamEvent
)

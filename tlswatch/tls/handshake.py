"""Handshake message reassembly: messages split over records and several messages per record."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HANDSHAKE_HEADER_LENGTH",
    "HandshakeMessage",
    "HandshakeReassembler",
    "HandshakeType",
    "OversizedMessage",
]

HANDSHAKE_HEADER_LENGTH: Final = 4
DEFAULT_MAX_MESSAGE_SIZE: Final = 1_048_576


class HandshakeType(enum.IntEnum):
    HELLO_REQUEST = 0
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    HELLO_VERIFY_REQUEST = 3
    NEW_SESSION_TICKET = 4
    END_OF_EARLY_DATA = 5
    ENCRYPTED_EXTENSIONS = 8
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_VERIFY = 15
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20
    CERTIFICATE_URL = 21
    CERTIFICATE_STATUS = 22
    SUPPLEMENTAL_DATA = 23
    KEY_UPDATE = 24
    COMPRESSED_CERTIFICATE = 25
    MESSAGE_HASH = 254


@dataclass(frozen=True, slots=True)
class HandshakeMessage:
    """One complete handshake message; ``body`` excludes the 4-byte header."""

    msg_type: int
    body: bytes

    @property
    def raw(self) -> bytes:
        """Header + body, as hashed into the TLS transcript."""
        return bytes((self.msg_type,)) + len(self.body).to_bytes(3, "big") + self.body


@dataclass(frozen=True, slots=True)
class OversizedMessage:
    """A message declared longer than the cap; nothing of it was buffered."""

    msg_type: int
    declared_length: int


class HandshakeReassembler:
    """Turns a stream of handshake-record payloads into whole messages.

    Bodies are collected as a list of chunks and joined once, so a message split over many
    records costs linear time. Declared lengths above ``max_message_size`` stop the
    reassembler (it returns :class:`OversizedMessage` and ignores further input).
    """

    __slots__ = (
        "_chunks",
        "_failed",
        "_have",
        "_header",
        "_length",
        "_msg_type",
        "max_message_size",
    )

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 0:
            raise ValueError("max_message_size must be >= 0")
        self.max_message_size = max_message_size
        self._header = bytearray()  # partial 4-byte header (a header may straddle records)
        self._msg_type = -1  # -1: no header parsed yet
        self._length = 0
        self._chunks: list[bytes] = []
        self._have = 0
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes held for a message not yet complete."""
        return len(self._header) + self._have

    @property
    def in_message(self) -> bool:
        return bool(self._header) or self._msg_type >= 0

    def reset(self) -> None:
        self._header.clear()
        self._msg_type = -1
        self._chunks = []
        self._have = 0

    def feed(self, payload: bytes | memoryview) -> list[HandshakeMessage | OversizedMessage]:
        out: list[HandshakeMessage | OversizedMessage] = []
        if self._failed:
            return out
        mv = memoryview(payload)
        n = len(mv)
        pos = 0
        while pos < n:
            if self._msg_type < 0:
                if not self._header and n - pos >= HANDSHAKE_HEADER_LENGTH:
                    # Fast path: whole header in this payload.
                    msg_type = mv[pos]
                    length = int.from_bytes(mv[pos + 1 : pos + 4], "big")
                    pos += HANDSHAKE_HEADER_LENGTH
                else:
                    take = min(HANDSHAKE_HEADER_LENGTH - len(self._header), n - pos)
                    self._header += mv[pos : pos + take]
                    pos += take
                    if len(self._header) < HANDSHAKE_HEADER_LENGTH:
                        break
                    msg_type = self._header[0]
                    length = int.from_bytes(self._header[1:4], "big")
                    self._header.clear()
                if length > self.max_message_size:
                    self._failed = True
                    out.append(OversizedMessage(msg_type, length))
                    return out
                if n - pos >= length:
                    # Fast path: whole body in this payload, one copy.
                    out.append(HandshakeMessage(msg_type, bytes(mv[pos : pos + length])))
                    pos += length
                    continue
                self._msg_type = msg_type
                self._length = length
            take = min(self._length - self._have, n - pos)
            self._chunks.append(bytes(mv[pos : pos + take]))
            self._have += take
            pos += take
            if self._have == self._length:
                out.append(HandshakeMessage(self._msg_type, b"".join(self._chunks)))
                self._chunks = []
                self._have = 0
                self._msg_type = -1
        return out

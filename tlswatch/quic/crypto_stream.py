"""Bounded reassembly of one CRYPTO stream (RFC 9000 §19.6) into TLS handshake messages.

CRYPTO frames may arrive out of order, overlap and repeat across packets (retransmissions,
clients such as Chrome deliberately shuffle and split the ClientHello). Only bytes below
``max_bytes`` are kept; later bytes are dropped and ``truncated`` is set.
"""

from __future__ import annotations

from typing import Final

from ..tls.handshake import HandshakeMessage, HandshakeReassembler, OversizedMessage

__all__ = ["DEFAULT_MAX_CRYPTO_BYTES", "CryptoStream"]

DEFAULT_MAX_CRYPTO_BYTES: Final = 64 * 1024
#: Disjoint byte ranges held at once; many tiny non-adjacent frames are a hostile pattern.
MAX_RANGES: Final = 256


class CryptoStream:
    """Feed CRYPTO frame (offset, data); read whole handshake messages as they complete."""

    __slots__ = ("_buf", "_delivered", "_handshake", "_ranges", "max_bytes", "truncated")

    def __init__(self, max_bytes: int = DEFAULT_MAX_CRYPTO_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._ranges: list[tuple[int, int]] = []  # sorted, disjoint, non-adjacent [start, end)
        self._delivered = 0  # bytes already handed to the handshake reassembler
        self._handshake = HandshakeReassembler(max_message_size=max_bytes)
        self.truncated = False

    @property
    def contiguous(self) -> int:
        """Length of the gap-free prefix received so far."""
        return self._ranges[0][1] if self._ranges and self._ranges[0][0] == 0 else 0

    def data(self) -> bytes:
        """The gap-free prefix of the stream."""
        return bytes(self._buf[: self.contiguous])

    def add(self, offset: int, data: bytes) -> list[HandshakeMessage | OversizedMessage]:
        """Store a frame's bytes; returns the handshake messages this completes."""
        end = offset + len(data)
        if end > self.max_bytes:
            self.truncated = True
            end = self.max_bytes
        if offset >= end:
            return []
        if len(self._buf) < end:
            self._buf.extend(bytes(end - len(self._buf)))
        # Retransmitted bytes should be identical; if a peer sends conflicting ones the last
        # copy wins, which only affects that peer's own (already anomalous) hello.
        self._buf[offset:end] = data[: end - offset]
        if not self._merge(offset, end):
            self.truncated = True
            return []
        avail = self.contiguous
        if avail <= self._delivered:
            return []
        chunk = bytes(self._buf[self._delivered : avail])
        self._delivered = avail
        return self._handshake.feed(chunk)

    def _merge(self, start: int, end: int) -> bool:
        merged: list[tuple[int, int]] = []
        placed = False
        for s, e in self._ranges:
            if e < start:
                merged.append((s, e))
            elif s > end:
                if not placed:
                    merged.append((start, end))
                    placed = True
                merged.append((s, e))
            else:
                start, end = min(s, start), max(e, end)
        if not placed:
            merged.append((start, end))
        merged.sort()
        if len(merged) > MAX_RANGES:
            return False
        self._ranges = merged
        return True

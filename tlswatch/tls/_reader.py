"""Bounds-checked reader over a handshake message body (private helper)."""

from __future__ import annotations

import struct


class DecodeError(ValueError):
    """A structure did not fit its declared lengths. Internal: decoders turn it into data."""


class Reader:
    """Sequential big-endian reader; every read is checked against the end of the buffer."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def _take(self, n: int) -> int:
        pos = self._pos
        if n < 0 or pos + n > self._end:
            raise DecodeError(f"need {n} bytes at {pos}, have {self._end - pos}")
        self._pos = pos + n
        return pos

    # u8/u16 are the hottest reads (every extension header): bounds-checked inline, with
    # _take() only on the failing path so the error stays the same.
    def u8(self) -> int:
        pos = self._pos
        if pos < self._end:
            self._pos = pos + 1
            return self._data[pos]
        return self._data[self._take(1)]

    def u16(self) -> int:
        pos = self._pos
        if pos + 2 <= self._end:
            self._pos = pos + 2
            data = self._data
            return (data[pos] << 8) | data[pos + 1]
        p = self._take(2)
        return int.from_bytes(self._data[p : p + 2], "big")

    def u24(self) -> int:
        p = self._take(3)
        return int.from_bytes(self._data[p : p + 3], "big")

    def raw(self, n: int) -> bytes:
        p = self._take(n)
        return self._data[p : p + n]

    def vec8(self) -> bytes:
        return self.raw(self.u8())

    def vec16(self) -> bytes:
        return self.raw(self.u16())

    def vec24(self) -> bytes:
        return self.raw(self.u24())

    def sub16(self) -> Reader:
        """A reader limited to a u16-length-prefixed block; this reader skips past it."""
        n = self.u16()
        p = self._take(n)
        return Reader(self._data, p, p + n)

    def u16_vec16_items(self) -> list[tuple[int, bytes]]:
        """``(u16, vec16)`` pairs up to the end (an extension list), read in one pass."""
        data, pos, end = self._data, self._pos, self._end
        out: list[tuple[int, bytes]] = []
        while pos + 4 <= end:
            start = pos + 4
            stop = start + ((data[pos + 2] << 8) | data[pos + 3])
            if stop > end:
                break
            out.append(((data[pos] << 8) | data[pos + 1], data[start:stop]))
            pos = stop
        self._pos = pos
        while self.remaining:  # a malformed tail: read it field by field for the exact error
            out.append((self.u16(), self.vec16()))
        return out

    def expect_end(self) -> None:
        if self._pos != self._end:
            raise DecodeError(f"{self._end - self._pos} trailing bytes")


def u16_list(data: bytes) -> tuple[int, ...]:
    """Decode a flat list of u16 values (the contents of a vector)."""
    n = len(data)
    if n % 2:
        raise DecodeError("odd length for a list of u16")
    return struct.unpack(f">{n >> 1}H", data)

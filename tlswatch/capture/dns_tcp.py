"""DNS over TCP (RFC 1035 §4.2.2, RFC 7766): each message behind a two-byte length.

:class:`DnsTcpStream` cuts one direction of a connection's reassembled bytes into messages.
A message is at most 65535 bytes (the prefix's range), so at most one partial message
(≤ 64 KiB + 2) is ever buffered per direction. Bytes the capture missed (a TCP gap) lose the
framing for good: the stream stops (``broken``) rather than guess where the next message
starts. The caller bounds the messages read per connection.
"""

from __future__ import annotations

__all__ = ["DnsTcpStream"]


class DnsTcpStream:
    """One direction of a DNS-over-TCP connection: feed its bytes in stream order."""

    __slots__ = ("_buf", "_next", "broken", "messages")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._next = 0  # the stream offset the next bytes must start at
        self.broken = False  # bytes went missing: no more messages can be framed
        self.messages = 0

    def feed(self, offset: int, data: bytes) -> list[bytes]:
        """The messages completed by ``data`` (which starts at stream ``offset``)."""
        if self.broken:
            return []
        if offset != self._next:  # (a gap, or bytes not handed out in order)
            self.stop()
            return []
        self._next = offset + len(data)
        buf = self._buf
        buf += data
        out: list[bytes] = []
        i, n = 0, len(buf)
        while n - i >= 2:
            size = buf[i] << 8 | buf[i + 1]
            if n - i - 2 < size:
                break
            out.append(bytes(buf[i + 2 : i + 2 + size]))
            i += 2 + size
        if i:
            del buf[:i]
        self.messages += len(out)
        return out

    def stop(self) -> None:
        """Framing is lost (a gap) or no more is wanted: drop the buffer, read no more."""
        self.broken = True
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held (< 65537)."""
        return len(self._buf)

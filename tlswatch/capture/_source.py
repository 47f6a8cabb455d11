"""The byte source under both readers: bounded chunked reads, anomaly counting, warnings.

Not public: :mod:`tlswatch.capture.open` builds one per file and hands it to the format reader.
"""

from __future__ import annotations

import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Final, Protocol

from .anomalies import Anomaly
from .errors import CaptureWarning

__all__ = [
    "CHUNK_SIZE",
    "MAX_BLOCK_LEN",
    "MAX_PACKET_LEN",
    "FastPath",
    "RawPacket",
    "Readable",
    "SecretsCallback",
    "Source",
]

CHUNK_SIZE: Final = 4 << 20  # 4 MiB reads: few syscalls, slicing stays in one buffer
MAX_PACKET_LEN: Final = 16 << 20  # a captured length above this is corruption, not a packet
MAX_BLOCK_LEN: Final = 256 << 20  # a pcapng block above this is corruption (never allocated)

# (timestamp ns, link type, captured length, original length, packet bytes)
RawPacket = tuple[int, int, int, int, bytes]
SecretsCallback = Callable[[int, bytes], None]


class FastPath(Protocol):
    """The C fast path as the file readers see it (``_bulkbook.BulkTable``): it consumes
    the records from ``pos`` on that it can book itself; the reader yields the rest."""

    def walk_pcap(self, buf: bytes, pos: int, swap: bool, ns_per_unit: int, extra: int,
                  link: int, /) -> int: ...
    def walk_pcapng(self, buf: bytes, pos: int, swap: bool, /) -> tuple[int, int | None]: ...
    def set_interfaces(self, ifaces: list[tuple[int, int, int] | None], /) -> None: ...


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...

# What a damaged compressed stream raises: EOFError (cut short), zlib.error, gzip's
# BadGzipFile (an OSError), lzma.LZMAError and bz2's OSError.
_STREAM_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error)
try:
    import lzma

    _STREAM_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover - Python built without lzma
    pass


class Source:
    """A binary stream read in large chunks; records anomalies and stop-warnings."""

    __slots__ = ("_f", "anomalies", "compressed", "fast_path", "name", "on_secrets", "stopped",
                 "warnings")

    def __init__(self, f: Readable, name: str, *, compressed: bool = False,
                 on_secrets: SecretsCallback | None = None) -> None:
        self._f = f
        self.name = name
        self.compressed = compressed
        self.anomalies: Counter[str] = Counter()
        self.warnings: list[str] = []
        self.on_secrets = on_secrets
        self.stopped = False
        self.fast_path: FastPath | None = None

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end). Grows piecewise, so a corrupt length
        field asking for gigabytes never allocates more than the file really holds; from a
        damaged compressed stream, the bytes before the damage are still returned."""
        if n <= CHUNK_SIZE and not self.compressed:
            return self._f.read(n)
        # Compressed streams: read1() hands out what one step decompressed, so an error
        # loses nothing that came before it.
        step = getattr(self._f, "read1", self._f.read)
        parts: list[bytes] = []
        left = n
        try:
            while left > 0:
                part = step(min(left, CHUNK_SIZE))
                if not part:
                    break
                parts.append(part)
                left -= len(part)
        except _STREAM_ERRORS as e:
            if not self.compressed:
                raise
            self.stop(Anomaly.COMPRESSED_STREAM_ERROR, f"compressed data damaged ({e})")
        return b"".join(parts)

    def extend(self, left: bytes, need: int) -> bytes:
        """``left`` (the unread tail of a chunk) completed to ``need`` bytes when the file has
        them. Only the straddling record is assembled: the next big chunk is read afresh, so
        chunks are never copied as a whole."""
        return left + self.read(need - len(left)) if len(left) < need else left

    def count(self, anomaly: Anomaly) -> None:
        self.anomalies[anomaly] += 1

    def stop(self, anomaly: Anomaly, detail: str) -> None:
        """Count a file-level anomaly and warn that reading stops here (results are partial).
        Only the first reason counts: a damaged gzip stream also looks truncated afterwards."""
        if self.stopped:
            return
        self.stopped = True
        self.anomalies[anomaly] += 1
        msg = f"{self.name}: {detail}; stopped reading, results are partial"
        self.warnings.append(msg)
        warnings.warn(msg, CaptureWarning, stacklevel=3)

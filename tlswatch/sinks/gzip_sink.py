"""Compressed JSON Lines (``.jsonl.gz``): one gzip member appended per batch.

A gzip file may hold many members one after another; ``gzip -dc``, ``zcat``, Python's
``gzip`` and pandas read them as one stream. Each batch of lines becomes one complete member
written with one ``write``, so a process killed mid-write leaves complete members plus at
most one torn member at the end. :func:`repair_gzip_tail` (run on reopen) cuts that member
and re-appends its complete lines as a fresh member: only the torn last line is lost, as
with plain JSONL. Members are fsync-ed at checkpoints.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

from tlswatch.sinks.append_file import AppendFile
from tlswatch.sinks.base import SinkError, record_json

__all__ = ["MEMBER_HEADER", "GzipJsonlSink", "gzip_member", "repair_gzip_tail"]

#: The 10-byte header of every member we write (no name, mtime 0, OS unknown): fixed, so
#: the start of the last member can be found by scanning backwards.
MEMBER_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_MAX_MEMBER = 1 << 20  # uncompressed bytes buffered before a member is written anyway
_MAX_SALVAGE = 256 << 20  # a torn member larger than this (not ours) is not repaired
_CHUNK = 1 << 16


def gzip_member(data: bytes, level: int = 6) -> bytes:
    """One complete gzip member holding ``data``."""
    c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = c.compress(data) + c.flush()
    return MEMBER_HEADER + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def _last_header(f: Any, size: int) -> int:
    """Offset of the last :data:`MEMBER_HEADER` in the file, or 0 (scan from the start)."""
    end = size
    overlap = len(MEMBER_HEADER) - 1
    while end > 0:
        start = max(0, end - _CHUNK)
        f.seek(start)
        chunk = f.read(min(end + overlap, size) - start)
        at = chunk.rfind(MEMBER_HEADER)
        if at >= 0:
            return int(start + at)
        end = start
    return 0


def repair_gzip_tail(path: Path) -> int:
    """Cut a torn last member, re-appending its complete lines; return the bytes cut.

    Raises :class:`SinkError` when the file is not gzip or is corrupt before its end (that
    is damage, not a torn write: nothing is cut then).
    """
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        pos = _last_header(f, size)
        f.seek(pos)
        member_start = pos
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        out: list[bytes] = []
        out_len = 0
        pending = b""
        while True:
            data = pending or f.read(_CHUNK)
            pending = b""
            if not data:
                break
            try:
                piece = d.decompress(data)
            except zlib.error as e:
                raise SinkError(f"{path}: corrupt gzip data after byte {member_start} "
                                f"({e}): not appending to it") from None
            out.append(piece)
            out_len += len(piece)
            if out_len > _MAX_SALVAGE:
                raise SinkError(f"{path}: gzip member at byte {member_start} is too large to "
                                "check: not appending to it")
            if d.eof:
                # A complete member; whatever follows starts the next one.
                member_start = pos + len(data) - len(d.unused_data)
                pending = d.unused_data
                pos = member_start
                d = zlib.decompressobj(zlib.MAX_WBITS | 16)
                out, out_len = [], 0
                continue
            pos += len(data)
        if member_start == size:
            return 0  # every member complete
        text = b"".join(out)
        keep = text[: text.rfind(b"\n") + 1]
        f.truncate(member_start)
        f.seek(member_start)
        if keep:
            f.write(gzip_member(keep))
        f.flush()
        os.fsync(f.fileno())
        return size - member_start


class GzipJsonlSink(AppendFile):
    """Append records to a ``.jsonl.gz`` file (a torn tail left by a kill is repaired first).

    ``batch``: records per member (a member is also written once 1 MiB of lines is buffered).
    """

    def __init__(self, path: Path, *, batch: int = 32, level: int = 6) -> None:
        self._batch = max(1, batch)
        self._level = level
        self._buf: list[bytes] = []
        self._size = 0
        self.repaired_bytes = repair_gzip_tail(path) if path.exists() else 0
        super().__init__(path)

    def write(self, record: Any) -> None:
        line = record_json(record).encode() + b"\n"
        self._buf.append(line)
        self._size += len(line)
        if len(self._buf) >= self._batch or self._size >= _MAX_MEMBER:
            self.flush()

    def flush(self) -> None:
        if not self._buf or self._fd is None:
            return
        member = gzip_member(b"".join(self._buf), self._level)
        self._buf.clear()
        self._size = 0
        self._write_all(member)

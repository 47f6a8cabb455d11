"""Append-only, crash-safe JSON Lines: the one writer every feature writes through.

A record is only ever appended as a whole line. Lines are batched into one ``write``
per batch (flush per batch) and ``fsync``-ed at checkpoints. A process killed mid-write
leaves at most one torn last line (no trailing newline); :func:`repair_tail` cuts it on
reopen so the file is again a sequence of complete records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tlswatch.sinks.base import record_json

__all__ = ["JsonlError", "JsonlWriter", "read_jsonl", "repair_tail"]

_TAIL_SCAN = 1 << 20  # bytes read backwards per step when looking for the last newline


class JsonlError(ValueError):
    """A JSONL file that cannot be read at all (one-line message with file and line)."""


def repair_tail(path: Path) -> int:
    """Cut a torn last line left by a killed writer; return how many bytes were cut."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        end = size
        while end > 0:
            start = max(0, end - _TAIL_SCAN)
            f.seek(start)
            chunk = f.read(end - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            end = start
        else:
            keep = 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep


def _encode(record: Any) -> bytes:
    # One encoding for every record sink; it refuses flat rows (CSV/Parquet projections).
    return record_json(record).encode() + b"\n"


class JsonlWriter:
    """Append records to a file (or a text stream such as stdout).

    ``batch``: records buffered before one write+flush. ``checkpoint()`` also fsyncs.
    """

    def __init__(self, target: Path | IO[str], *, batch: int = 32) -> None:
        self._batch = max(1, batch)
        self._buf: list[bytes] = []
        self._stream: IO[str] | None = None
        self._fd: int | None = None
        self.path: Path | None = None
        self.repaired_bytes = 0
        if isinstance(target, Path):
            self.path = target
            if target.exists():
                self.repaired_bytes = repair_tail(target)
            self._fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        else:
            self._stream = target

    def write(self, record: Any) -> None:
        self._buf.append(_encode(record))
        if len(self._buf) >= self._batch:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        if self._fd is not None:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        elif self._stream is not None:
            self._stream.write(data.decode())
            self._stream.flush()

    def checkpoint(self) -> None:
        """Flush and make what was written durable."""
        self.flush()
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        self.checkpoint()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: Path, *, strict: bool = False) -> Iterator[dict[str, Any]]:
    """Yield each record of a JSONL file.

    A line that is not a JSON object raises :class:`JsonlError` naming file and line when
    ``strict``; otherwise it is skipped (a torn last line from a crash is expected).
    """
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                if strict:
                    raise JsonlError(f"{path}: line {lineno}: not JSON ({e.msg})") from None
                continue
            except UnicodeDecodeError:
                if strict:
                    raise JsonlError(f"{path}: line {lineno}: not UTF-8") from None
                continue
            if not isinstance(obj, dict):
                if strict:
                    raise JsonlError(f"{path}: line {lineno}: not a JSON object")
                continue
            yield obj

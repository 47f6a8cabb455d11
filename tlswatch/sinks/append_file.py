"""The mechanics every append-only file sink shares: an O_APPEND descriptor, whole writes,
fsync at checkpoints, idempotent close. Subclasses decide what one flush writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Self

__all__ = ["AppendFile"]


class AppendFile:
    """Base of the file sinks; :meth:`flush` (write what is buffered) is the subclass's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _write_all(self, data: bytes) -> None:
        """One buffer, fully written (os.write may write less than asked)."""
        assert self._fd is not None
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def flush(self) -> None:
        raise NotImplementedError

    def checkpoint(self) -> None:
        """Flush and make what was written durable."""
        self.flush()
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is None:
            return
        self.checkpoint()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Hashing a capture while the command loads.

``tlswatch analyse`` needs each capture's SHA-256 (records and ``--resume`` name the file by
it). Loading the command takes ~0.1-0.2 s of one core while the other sits idle, so
:func:`start` (called by ``tlswatch.cli.main`` before the command is imported) hashes the
first capture named on the command line in a thread (hashlib releases the GIL) and
:func:`sha256` hands the result to whoever asks first, or computes it as before. The file is
identified by device, inode, size and modification time: a file changed in between is hashed
again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

__all__ = ["sha256", "start"]

_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
           b"\x0a\x0d\x0d\x0a", b"\x1f\x8b")
_MIN_SIZE = 1 << 20  # smaller files hash in a few ms: not worth a thread

_lock = threading.Lock()
_pending: dict[tuple[int, int, int, int], tuple[threading.Thread, list[str | OSError]]] = {}


def _identity(path: str | os.PathLike[str]) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _digest(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def start(args: list[str]) -> None:
    """Start hashing the first argument that is a capture file of 1 MiB or more."""
    for arg in args:
        try:
            if not os.path.isfile(arg) or os.path.getsize(arg) < _MIN_SIZE:
                continue
            with open(arg, "rb") as f:
                head = f.read(4)
            if not head.startswith(_MAGICS):
                continue
            key = _identity(arg)
        except OSError:
            continue
        box: list[str | OSError] = []

        def work(path: str = arg, box: list[str | OSError] = box) -> None:
            try:
                box.append(_digest(path))
            except OSError as e:
                box.append(e)

        t = threading.Thread(target=work, name="sha256-early", daemon=True)
        with _lock:
            _pending[key] = (t, box)
        t.start()
        return


def sha256(path: Path) -> str:
    """The file's SHA-256: from the early hash if it was this very file, else computed."""
    try:
        key = _identity(path)
    except OSError:
        key = None
    with _lock:
        hit = _pending.pop(key, None) if key is not None else None
    if hit is not None:
        t, box = hit
        t.join()
        if box and isinstance(box[0], str) and _identity(path) == key:
            return box[0]
    return _digest(path)

"""Hashing a capture while the command loads.

``tlswatch analyse`` needs each capture's SHA-256 (records and ``--resume`` name the file by
it). Loading the command takes ~0.1-0.2 s of one core while the other sits idle, so
:func:`start` (called by ``tlswatch.cli.main`` before the command is imported) forks a small
process that hashes the first capture named on the command line (a process, not a thread:
a thread would wait for the interpreter lock between chunks while the imports hold it), and
:func:`sha256` reads the result, or computes it as before. The file is identified by device,
inode, size and modification time: a file changed in between is hashed again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tlswatch.capture.magic import looks_like_capture

__all__ = ["sha256", "start"]

_MIN_SIZE = 1 << 20  # smaller files hash in a few ms: not worth a process

Identity = tuple[int, int, int, int]
_pending: dict[Identity, tuple[int, int]] = {}  # file -> (hashing process, its pipe)


def _identity(path: str | os.PathLike[str]) -> Identity:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _digest(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def start(args: list[str]) -> None:
    """Start hashing the first argument that is a capture file of 1 MiB or more (POSIX)."""
    if not hasattr(os, "fork"):
        return
    for arg in args:
        try:
            if not os.path.isfile(arg) or os.path.getsize(arg) < _MIN_SIZE \
                    or not looks_like_capture(arg):
                continue
            key = _identity(arg)
        except OSError:
            continue
        parent = os.getpid()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the hashing process: one line to the pipe, then gone
            try:
                os.close(r)
                from tlswatch.cli.jobs import die_with_parent

                die_with_parent(parent)
                os.write(w, _digest(arg).encode())
            except BaseException:  # (the parent computes it instead)
                pass
            finally:
                os._exit(0)
        os.close(w)
        _pending[key] = (pid, r)
        return


def sha256(path: Path) -> str:
    """The file's SHA-256: from the early hash if it was this very file, else computed."""
    try:
        key: Identity | None = _identity(path)
    except OSError:
        key = None
    hit = _pending.pop(key, None) if key is not None else None
    if hit is not None:
        pid, r = hit
        try:
            with os.fdopen(r, "rb") as pipe:
                got = pipe.read(64).decode("ascii", "replace")
        finally:
            os.waitpid(pid, 0)
        if len(got) == 64 and _identity(path) == key:
            return got
    return _digest(path)

"""``--jobs N|auto``: how many processes a command uses on this machine."""

from __future__ import annotations

import os

__all__ = ["default_jobs", "die_with_parent", "parse_jobs"]


def default_jobs() -> int:
    """``auto``: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def parse_jobs(text: str) -> int:
    """The number of processes ``--jobs`` asks for (usage error otherwise)."""
    from tlswatch.cli.errors import InputError  # (this module stays light: prehash uses it)

    if text == "auto":
        return default_jobs()
    try:
        n = int(text)
    except ValueError:
        raise InputError(f"--jobs {text}: a number of processes, or auto") from None
    if not 1 <= n <= 256:
        raise InputError(f"--jobs {text}: between 1 and 256")
    return n


def die_with_parent(parent: int) -> None:
    """In a forked worker: be killed when the tlswatch process that forked it dies, even by
    SIGKILL (Linux's PR_SET_PDEATHSIG; elsewhere the worker stops at its next message to
    the closed pipe)."""
    import ctypes
    import signal

    try:  # (the process's own symbols: libc's prctl, without a library search)
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

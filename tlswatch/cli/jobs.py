"""``--jobs N|auto``: how many processes a command uses on this machine."""

from __future__ import annotations

import os

from tlswatch.cli.errors import InputError

__all__ = ["default_jobs", "parse_jobs"]


def default_jobs() -> int:
    """``auto``: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def parse_jobs(text: str) -> int:
    """The number of processes ``--jobs`` asks for (usage error otherwise)."""
    if text == "auto":
        return default_jobs()
    try:
        n = int(text)
    except ValueError:
        raise InputError(f"--jobs {text}: a number of processes, or auto") from None
    if not 1 <= n <= 256:
        raise InputError(f"--jobs {text}: between 1 and 256")
    return n

"""The watch loop: a campaign on every tick of ``--every``, until told to stop.

Ticks are ``start + k * every`` on the monotonic clock: a campaign that overruns its tick
skips the ticks it missed rather than running back to back. SIGINT and SIGTERM set the stop
event: a sleep ends at once, a running campaign is cancelled (what it wrote stays written).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import re
import signal
import time
from collections.abc import Awaitable, Callable

__all__ = ["is_loopback_host", "parse_duration", "parse_listen", "stop_on_signals",
           "watch_loop"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """``30s``, ``10m``, ``1h``, ``0.2s``, ``1h30m``, ``500ms`` or bare seconds -> seconds.

    Raises ValueError (one line) for anything else, and for zero.
    """
    t = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        seconds = float(t)
    elif t and _PART.sub("", t) == "":
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(t))
    else:
        raise ValueError(f"{text!r}: expected a duration like 30s, 10m, 1h or 1h30m")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be more than zero")
    return seconds


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); port 0 picks a free one."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", text.strip())
    if m is None:
        raise ValueError(f"{text!r}: expected HOST:PORT (e.g. 127.0.0.1:9109)")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ValueError(f"{text!r}: port {port} is out of range")
    return host, port


def is_loopback_host(host: str) -> bool:
    """A loopback address, or the name ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def stop_on_signals(stop: asyncio.Event) -> Callable[[], None]:
    """SIGINT and SIGTERM set ``stop`` (on the running loop); returns the undo."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not possible outside the main thread or on every platform: then Ctrl-C still
        # raises KeyboardInterrupt, which the caller handles.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)

    def undo() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return undo


async def watch_loop(
    campaign: Callable[[int], Awaitable[None]],
    *,
    every: float,
    stop: asyncio.Event,
    count: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[int, bool]:
    """Run ``campaign(n)`` (n = 1, 2, ...) on every tick until ``count`` or ``stop``.

    Returns (campaigns started, whether the last one was cut short by ``stop``). No sleep
    follows the last campaign of ``count``.
    """
    start = clock()
    n = 0
    while not stop.is_set() and (count is None or n < count):
        n += 1
        task = asyncio.ensure_future(campaign(n))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return n, True
        task.result()  # a campaign's own exception ends the watch
        if count is not None and n >= count:
            break
        now = clock()
        next_tick = start + (math.floor((now - start) / every) + 1) * every
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, next_tick - now))
    return n, False

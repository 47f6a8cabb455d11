"""Rate limits for campaigns: a global rate and a rate per destination IP.

:class:`TokenBucket` is a token bucket written in its GCRA form (a "theoretical arrival
time"): each caller *reserves* the next slot and sleeps until it, so many waiters never wake
together to fight over one token, and the order is first come, first served. With
``burst=1`` (the default) starts are spaced exactly ``1/rate`` apart; a larger burst lets
that many start at once after an idle period, as a bucket of that capacity would.

:class:`RateLimiter` combines an optional global bucket with one bucket per IP, kept in a
bounded LRU. Waiters for one IP queue on that IP's lock, then take a global slot, and the
IP's next slot counts from the moment they actually started: both rates hold exactly. An IP
evicted from the LRU (not used for the last ``max_ips`` distinct IPs) starts afresh.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["Clock", "RateLimiter", "Sleep", "TokenBucket"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """``rate`` starts per second, at most ``burst`` at once; clock and sleep injectable."""

    def __init__(self, rate: float, burst: float = 1.0, *, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number, not {rate!r}")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self.interval = 1.0 / rate
        self._tolerance = (burst - 1.0) * self.interval
        self._tat = -math.inf  # theoretical arrival time of the next conforming start
        self._clock = clock
        self._sleep = sleep

    def reserve(self) -> float:
        """Take the next slot; return how many seconds to wait for it (0: now)."""
        now = self._clock()
        tat = max(self._tat, now)
        self._tat = tat + self.interval
        return max(0.0, tat - self._tolerance - now)

    def started_at(self, when: float) -> None:
        """A reserved slot was actually used at ``when`` (later than reserved): count from it."""
        self._tat = max(self._tat, when + self.interval)

    async def acquire(self) -> float:
        """Wait for a slot; return the seconds waited."""
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)
        return delay


@dataclass(slots=True)
class _IpSlot:
    bucket: TokenBucket
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class RateLimiter:
    """A global rate and a per-IP rate (either may be None: unlimited)."""

    def __init__(self, rate: float | None = None, per_ip_rate: float | None = None, *,
                 max_ips: int = 10_000, burst: float = 1.0, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._burst = burst
        self._global = TokenBucket(rate, burst, clock=clock, sleep=sleep) if rate else None
        self._per_ip_rate = per_ip_rate or None
        if per_ip_rate is not None and per_ip_rate <= 0:
            raise ValueError("per-IP rate must be positive")
        self._max_ips = max(1, max_ips)
        self._slots: OrderedDict[str, _IpSlot] = OrderedDict()

    @property
    def limits_ips(self) -> bool:
        return self._per_ip_rate is not None

    @property
    def tracked_ips(self) -> int:
        return len(self._slots)

    def _slot(self, ip: str) -> _IpSlot:
        slot = self._slots.get(ip)
        if slot is not None:
            self._slots.move_to_end(ip)
            return slot
        assert self._per_ip_rate is not None
        slot = _IpSlot(TokenBucket(self._per_ip_rate, self._burst, clock=self._clock,
                                   sleep=self._sleep))
        self._slots[ip] = slot
        if len(self._slots) > self._max_ips:
            # Evict the least recently used idle IP; IPs in use (at most the campaign's
            # concurrency) are kept, so the dict may briefly exceed max_ips.
            for key, old in self._slots.items():
                if old.users == 0 and key != ip:
                    del self._slots[key]
                    break
        return slot

    async def acquire_global(self) -> None:
        if self._global is not None:
            await self._global.acquire()

    async def acquire(self, ip: str | None = None, *, global_too: bool = True) -> None:
        """Wait until one more start is allowed (globally and, when given, for ``ip``).

        ``global_too=False`` waits for the IP only (the global slot was taken earlier).
        """
        if ip is None or self._per_ip_rate is None:
            if global_too:
                await self.acquire_global()
            return
        slot = self._slot(ip)
        slot.users += 1
        try:
            async with slot.lock:
                await slot.bucket.acquire()
                if global_too and self._global is not None:
                    await self._global.acquire()
                    slot.bucket.started_at(self._clock())
        finally:
            slot.users -= 1

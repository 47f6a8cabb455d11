"""Token bucket and the global + per-IP rate limiter, with a fake clock and in real time."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tlswatch.probe.ratelimit import RateLimiter, TokenBucket


class FakeTime:
    """A clock that only moves when someone sleeps (sleepers run one at a time here)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_reservations_are_spaced_exactly() -> None:
    t = FakeTime()
    b = TokenBucket(5, clock=t.clock, sleep=t.sleep)
    assert [b.reserve() for _ in range(4)] == pytest.approx([0.0, 0.2, 0.4, 0.6])
    t.now += 10  # idle: with burst 1 nothing is saved up beyond one start
    assert [b.reserve() for _ in range(2)] == pytest.approx([0.0, 0.2])


def test_burst_allows_that_many_at_once_then_the_rate() -> None:
    t = FakeTime()
    b = TokenBucket(10, burst=3, clock=t.clock, sleep=t.sleep)
    assert [b.reserve() for _ in range(5)] == pytest.approx([0, 0, 0, 0.1, 0.2])
    t.now += 1.0  # refills to the burst, not beyond
    assert [b.reserve() for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_acquire_sleeps_until_the_slot() -> None:
    t = FakeTime()
    b = TokenBucket(4, clock=t.clock, sleep=t.sleep)

    async def main() -> list[float]:
        starts = []
        for _ in range(5):
            await b.acquire()
            starts.append(t.now - 100.0)
        return starts

    assert asyncio.run(main()) == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


def test_per_ip_and_global_rates_both_hold() -> None:
    t = FakeTime()
    lim = RateLimiter(rate=10, per_ip_rate=1, clock=t.clock, sleep=t.sleep)

    async def main() -> list[tuple[str, float]]:
        starts = []
        for ip in ["a", "b", "a", "c", "a"]:
            await lim.acquire(ip)
            starts.append((ip, round(t.now - 100.0, 6)))
        return starts

    # a waits a full second between its starts; b and c only respect the global 0.1 s.
    assert asyncio.run(main()) == [("a", 0.0), ("b", 0.1), ("a", 1.0), ("c", 1.1), ("a", 2.0)]


def test_per_ip_slot_counts_from_the_actual_start() -> None:
    t = FakeTime()
    lim = RateLimiter(rate=1, per_ip_rate=2, clock=t.clock, sleep=t.sleep)

    async def main() -> list[float]:
        starts = []
        for _ in range(3):
            await lim.acquire("a")
            starts.append(round(t.now - 100.0, 6))
        return starts

    assert asyncio.run(main()) == [0.0, 1.0, 2.0]  # the slower global rate rules


def test_ip_table_is_a_bounded_lru() -> None:
    t = FakeTime()
    lim = RateLimiter(per_ip_rate=1, max_ips=3, clock=t.clock, sleep=t.sleep)

    async def main() -> None:
        for i in range(20):
            await lim.acquire(f"10.0.0.{i}")
        await lim.acquire("10.0.0.19")

    asyncio.run(main())
    assert lim.tracked_ips == 3
    assert t.sleeps == [pytest.approx(1.0)]  # only the repeat of a remembered IP waited


def test_unlimited_never_waits_and_bad_rates_are_refused() -> None:
    t = FakeTime()
    lim = RateLimiter(clock=t.clock, sleep=t.sleep)
    asyncio.run(lim.acquire("x"))
    assert t.sleeps == [] and not lim.limits_ips
    with pytest.raises(ValueError):
        TokenBucket(0)
    with pytest.raises(ValueError):
        TokenBucket(1, burst=0.5)
    with pytest.raises(ValueError):
        RateLimiter(per_ip_rate=-1)


def test_concurrent_waiters_in_real_time() -> None:
    lim = RateLimiter(rate=100, per_ip_rate=25)

    async def one(ip: str, out: list[tuple[str, float]]) -> None:
        await lim.acquire(ip)
        out.append((ip, time.monotonic()))

    async def main() -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        await asyncio.gather(*(one("a" if i % 2 else "b", out) for i in range(12)))
        return out

    out = asyncio.run(main())
    times = sorted(ts for _, ts in out)
    assert all(b - a >= 0.01 - 0.002 for a, b in itertools.pairwise(times))
    for ip in "ab":
        mine = sorted(ts for i, ts in out if i == ip)
        assert all(b - a >= 0.04 - 0.004 for a, b in itertools.pairwise(mine))
    assert times[-1] - times[0] < 0.5

"""Durations, listen addresses and the schedule of ``tlswatch watch`` (no network)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tlswatch.watch.loop import is_loopback_host, parse_duration, parse_listen, watch_loop


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("10m", 600.0), ("1h", 3600.0), ("0.2s", 0.2), ("1h30m", 5400.0),
    ("500ms", 0.5), ("2d", 172800.0), ("45", 45.0), (" 10M ", 600.0),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "10x", "0s", "0", "-1s", "1.5.2s", "10 m", "1e3s",
                                  "nan", "inf"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_listen_and_loopback() -> None:
    assert parse_listen("127.0.0.1:9109") == ("127.0.0.1", 9109)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:80") == ("localhost", 80)
    for bad in ("9109", "127.0.0.1", "::1:80", "127.0.0.1:70000", "host:port"):
        with pytest.raises(ValueError, match=r"HOST:PORT|out of range"):
            parse_listen(bad)
    assert is_loopback_host("127.0.0.1") and is_loopback_host("127.9.9.9")
    assert is_loopback_host("::1") and is_loopback_host("LOCALHOST")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("::")
    assert not is_loopback_host("192.0.2.1") and not is_loopback_host("example.com")


def test_count_campaigns_on_ticks_without_a_sleep_after_the_last() -> None:
    starts: list[float] = []

    async def campaign(n: int) -> None:
        starts.append(time.monotonic())
        await asyncio.sleep(0.01)

    async def main() -> tuple[int, bool]:
        return await watch_loop(campaign, every=0.1, stop=asyncio.Event(), count=3)

    t0 = time.monotonic()
    assert asyncio.run(main()) == (3, False)
    elapsed = time.monotonic() - t0
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(g == pytest.approx(0.1, abs=0.05) for g in gaps), gaps
    assert 0.2 <= elapsed < 0.3  # no sleep after the third


def test_an_overrunning_campaign_skips_missed_ticks() -> None:
    starts: list[float] = []

    async def campaign(n: int) -> None:
        starts.append(time.monotonic())
        if n == 1:
            await asyncio.sleep(0.25)  # overruns ticks 0.1 and 0.2

    async def main() -> tuple[int, bool]:
        return await watch_loop(campaign, every=0.1, stop=asyncio.Event(), count=2)

    asyncio.run(main())
    assert starts[1] - starts[0] == pytest.approx(0.3, abs=0.04)


def test_stop_ends_the_sleep_at_once() -> None:
    async def main() -> tuple[int, bool]:
        stop = asyncio.Event()

        async def campaign(n: int) -> None:
            asyncio.get_running_loop().call_later(0.05, stop.set)

        return await watch_loop(campaign, every=60, stop=stop)

    t0 = time.monotonic()
    assert asyncio.run(main()) == (1, False)
    assert time.monotonic() - t0 < 1


def test_stop_cancels_a_running_campaign() -> None:
    cancelled = []

    async def main() -> tuple[int, bool]:
        stop = asyncio.Event()

        async def campaign(n: int) -> None:
            asyncio.get_running_loop().call_later(0.05, stop.set)
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(n)
                raise

        return await watch_loop(campaign, every=60, stop=stop)

    assert asyncio.run(main()) == (1, True)
    assert cancelled == [1]


def test_a_campaign_exception_ends_the_watch() -> None:
    async def campaign(n: int) -> None:
        raise RuntimeError("boom")

    async def main() -> tuple[int, bool]:
        return await watch_loop(campaign, every=0.01, stop=asyncio.Event(), count=5)

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(main())

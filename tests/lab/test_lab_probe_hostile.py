"""The probe against the lab's hostile servers: classified within its timeouts, bounded memory."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from typing import Any

import pytest

from tlswatch.probe.measure import Timeouts, measure

TIMEOUTS = Timeouts(dns=0.5, connect=0.5, tls=1.0, http=0.5, overall=3.0)


@pytest.mark.parametrize(("kind", "outcomes"), [
    ("silent", {"tls/timeout"}),
    ("slow", {"tls/timeout"}),
    ("garbage", {"tls/not_tls"}),
    ("midclose", {"tls/eof"}),
    ("hugechain", {"tls/oversized:cert_list", "tls/oversized:byte_cap"}),
])
def test_hostile_server_is_classified_in_time(desc: dict[str, Any], kind: str,
                                              outcomes: set[str]) -> None:
    h = desc["hostile"][kind]
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        obs = asyncio.run(measure(h["domain"], ip=h["ip"], port=h["port"], timeouts=TIMEOUTS,
                                  max_version="TLSv1.2"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - t0
    assert obs.failure in outcomes, obs
    assert elapsed < TIMEOUTS.overall + 1.0
    # The 2 MB chain is the largest thing any hostile server sends: memory stays bounded by
    # the probe's byte cap, not by what the peer would like to send.
    assert peak < 64 * 1024 * 1024
    if kind == "hugechain":
        assert (obs.tls.bytes_read or 0) > 100_000

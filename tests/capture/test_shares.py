"""One file read by n readers, each keeping its share of the flows (``read_flows(share=)``):
together they give what one reader gives, flow by flow, with and without the C fast path."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import require_module

from tests.capture.test_fast_path import (
    _bulk_capture,
    _records,
    frame,
    hostile_capture,
    pcap,
    to_v6,
)
from tlswatch.capture import Data, FlowConfig, FlowEnd, Secrets, read_flows
from tlswatch.capture.flows import share_of
from tlswatch.capture.layers import decode_tuple

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


def _read(data: bytes | Path, share: tuple[int, int] | None, *, skip: bool,
          config: FlowConfig | None = None) -> dict[str, Any]:
    """Each flow's events (flow ids dropped), the counters, the DNS datagrams seen."""
    flows: dict[int, list[Any]] = {}
    dgrams: list[tuple[int, bytes]] = []
    src = data if isinstance(data, Path) else io.BytesIO(data)
    reader = read_flows(src, config, share=share,
                        on_datagram=lambda ts, p: dgrams.append((ts, p[-1])))
    end_clock: list[int] = []
    for ev in reader:
        if isinstance(ev, Secrets):
            continue
        flows.setdefault(ev.flow_id, []).append(ev._replace(flow_id=0))
        if isinstance(ev, Data) and skip:
            reader.skip(ev.flow_id)
        if isinstance(ev, FlowEnd):
            end_clock.append(reader.last_ts_ns)
    return {"flows": Counter(repr(v) for v in flows.values()),
            "packets": reader.packets, "bytes": reader.bytes, "tcp": reader.tcp_packets,
            "udp": reader.udp_packets, "anomalies": Counter(reader.anomalies),
            "datagrams": Counter(dgrams), "clock": Counter(end_clock)}


def _check(data: bytes | Path, n: int, monkeypatch: pytest.MonkeyPatch, *, pure: bool,
           skip: bool, config: FlowConfig | None = None) -> None:
    if pure:
        monkeypatch.setenv("TLSWATCH_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("TLSWATCH_PURE_PYTHON", raising=False)
    whole = _read(data, None, skip=skip, config=config)
    parts = [_read(data, (i, n), skip=skip, config=config) for i in range(n)]
    assert sum((p["flows"] for p in parts), Counter()) == whole["flows"]
    assert sum((p["anomalies"] for p in parts), Counter()) == whole["anomalies"]
    assert sum(p["tcp"] for p in parts) == whole["tcp"]
    assert sum(p["udp"] for p in parts) == whole["udp"]
    for p in parts:
        assert (p["packets"], p["bytes"]) == (whole["packets"], whole["bytes"])
        assert p["datagrams"] <= whole["datagrams"]
    # the clock a consumer sees at each flow's end is the one-reader clock
    assert sum((p["clock"] for p in parts), Counter()) == whole["clock"]
    if n > 1 and len(whole["flows"]) > 3:
        assert all(p["flows"] for p in parts)  # the shares really split the flows


@pytest.mark.parametrize("pure", [False, True])
@pytest.mark.parametrize("n", [2, 3])
def test_shares_add_up_on_bulk_flows(n: int, pure: bool,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if not pure:
        require_module("tlswatch.capture._bulkbook")
    data, _ = _bulk_capture(4, flows=12, packets=3000)
    for skip in (True, False):
        _check(data, n, monkeypatch, pure=pure, skip=skip)
    _check(data, n, monkeypatch, pure=pure, skip=True, config=FlowConfig(max_bytes_per_side=300))


@pytest.mark.parametrize("pure", [False, True])
def test_shares_add_up_on_hostile_headers(pure: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anomalies of packets that are another share's are counted once (by share 0)."""
    if not pure:
        require_module("tlswatch.capture._bulkbook")
    for seed in (3, 4):
        data = hostile_capture(seed, flows=8, packets=1500)
        _check(data, 2, monkeypatch, pure=pure, skip=True)
        _check(data, 3, monkeypatch, pure=pure, skip=False)


@pytest.mark.parametrize("pure", [False, True])
def test_shares_add_up_on_ipv6(pure: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not pure:
        require_module("tlswatch.capture._bulkbook")
    data, _ = _bulk_capture(9, flows=10, packets=2000)
    recs = _records(data)
    mixed = pcap([(ts, to_v6(fr) if i % 3 else fr) for i, (ts, fr) in enumerate(recs)])
    _check(pcap([(ts, to_v6(fr)) for ts, fr in recs]), 2, monkeypatch, pure=pure, skip=True)
    _check(mixed, 3, monkeypatch, pure=pure, skip=True)


@pytest.mark.parametrize("name", sorted(p.name for p in CAPTURES.glob("*.pcap*")))
def test_shares_add_up_on_sample_captures(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for pure in (False, True):
        _check(CAPTURES / name, 2, monkeypatch, pure=pure, skip=True)


def test_dns_answers_reach_every_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS answers (from UDP port 53) go to every share (names for all); queries and other
    UDP only to their owner."""
    recs = []
    for i in range(8):
        for sport, dport in ((53, 40000 + i), (40000 + i, 53), (40000 + i, 443)):
            udp = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + b"\x00\x0c\x00\x00"
            ip = bytes([0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 53,
                        10, 0, 0, 1 + i])
            recs.append((10**18 + i, b"\x02" * 12 + b"\x08\x00" + ip + udp + b"\xc0abc"))
    recs.append((10**18 + 99, frame(0x0A000001, 0xC0000201, 1, 443, 5, 0x02, b"")))
    data = pcap(recs)
    for pure in (False, True):
        if pure:
            monkeypatch.setenv("TLSWATCH_PURE_PYTHON", "1")
        seen = []
        for i in range(2):
            got: list[tuple[int, int]] = []
            reader = read_flows(io.BytesIO(data), share=(i, 2),
                                on_datagram=lambda ts, p, got=got: got.append((p[5], p[6])))
            list(reader)
            seen.append(got)
            owned = Counter()
            for _, fr in recs[:-1]:
                p = decode_tuple(1, fr, Counter())
                assert p is not None
                if reader.owns(p):
                    owned["query" if p[6] == 53 else "other" if p[6] == 443 else "answer"] += 1
            assert sum(sp == 53 for sp, _ in got) == 8  # every answer
            assert sum(dp == 53 for _, dp in got) == owned["query"]
            assert sum(dp == 443 for _, dp in got) == owned["other"]
        for kind in (53, 443):  # each query and other datagram reached exactly one share
            assert sum(dp == kind for s in seen for _, dp in s) == 8


def test_share_function_matches_the_c_one() -> None:
    bulkbook = require_module("tlswatch.capture._bulkbook")
    import random

    rnd = random.Random(5)
    for _ in range(2000):
        src, dst = rnd.getrandbits(32).to_bytes(4, "big"), rnd.getrandbits(32).to_bytes(4, "big")
        sp, dp = rnd.getrandbits(16), rnd.getrandbits(16)
        n = rnd.randint(1, 9)
        p = (src, dst, 6, 64, 0, sp, dp, 0, 0, 0, 0, b"")
        back = (dst, src, 6, 64, 0, dp, sp, 0, 0, 0, 0, b"")
        got = share_of(p, n)
        assert got == share_of(back, n)  # type: ignore[arg-type]
        key = src + dst + sp.to_bytes(2, "big") + dp.to_bytes(2, "big")
        assert bulkbook.share_of(key, n) == got
        src6, dst6 = b"\x20\x01" + src * 3 + b"\0\0", b"\x20\x01" + dst * 3 + b"\0\0"
        p6 = (src6, dst6, 6, 64, None, sp, dp, 0, 0, 0, 0, b"")
        key6 = src6 + dst6 + sp.to_bytes(2, "big") + dp.to_bytes(2, "big")
        assert bulkbook.share_of(key6, n) == share_of(p6, n)  # type: ignore[arg-type]


def test_bad_share_is_refused() -> None:
    with pytest.raises(ValueError, match="share 2 of 2"):
        read_flows(CAPTURES / "clean-tls12.pcap", share=(2, 2))

"""Observe one chunk of a split capture (see :mod:`.offset_index`) so that the chunks of a
file together give exactly the observations of a whole-file run.

The method ("the first packet decides"):

* a chunk **owns the flows whose first packet lies in it** (TCP flows as the flow table
  defines them; a DNS answer by the answer's packet; a QUIC flow by its first datagram);
* to know which flows are already open at its start, it first reads a **look-back**: from
  the checkpoint :data:`LOOKBACK_NS` of capture time earlier (the flow table's idle timeout
  and a margin: a flow silent for that long is closed in a whole-file run too). Flows met
  there are not its own: they are skipped at once (cheap), their events dropped; DNS queries
  and answers seen there still pair with later answers and name later flows;
* past its end it **reads on** until every flow it owns is settled (observed, ended, or
  known not to be TLS) and :data:`~tlswatch.capture.observe.WAIT_AT_END_NS` has passed since
  its last QUIC long-header datagram, then stops at the next checkpoint (a record boundary:
  to the reader a clean end of file). New flows there belong to the next chunk: skipped.

:class:`ChunkView` presents the header bytes and the file from the look-back on as one
stream (reads never cross the chunk's start or end, so the region of the packet being
handled is the region of the last read); :class:`ChunkObserver` is a
:class:`~tlswatch.capture.observe.CaptureObserver` whose reader drops other chunks' events.
"""

from __future__ import annotations

import io
import ipaddress
import os
from collections import Counter
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import BinaryIO, Final, cast

from ..quic.observe import QuicFlowObservation
from ..tls import Detection
from ..tls.keylog import KeyLog
from .events import Detected, FlowEnd, FlowEvent, FlowStart, Secrets, Side
from .flows import DatagramCallback, FlowReader
from .layers import PacketTuple
from .observe import WAIT_AT_END_NS, CaptureObserver, DnsObservation, Observation
from .offset_index import ChunkPlan
from .tcp import FlowConfig

__all__ = ["LOOKBACK_NS", "ChunkObserver", "ChunkView", "Region"]

#: Look-back before a chunk: the flow table's idle timeout (120 s) and a margin for
#: timestamps that go back a little (merged interfaces).
LOOKBACK_NS: Final = FlowConfig().idle_timeout_ns + 10_000_000_000


class Region(IntEnum):
    PREFIX = 0
    LOOKBACK = 1
    CHUNK = 2
    OVERRUN = 3
    DONE = 4


class ChunkView:
    """A read-only binary stream: ``plan.prefix`` then the file from ``plan.lookback``.

    Reads stop at the chunk's start and end, and past the end at every stop point, where
    ``may_stop()`` is asked whether to end the stream there."""

    def __init__(self, plan: ChunkPlan, *, may_stop: Callable[[], bool] = lambda: False,
                 on_region: Callable[[Region, Region], None] | None = None) -> None:
        self.name = plan.path
        self._plan = plan
        self._fd = os.open(plan.path, os.O_RDONLY)
        self._pos = 0  # in the virtual stream
        self._stops = frozenset(plan.stops)
        self._sorted_stops = plan.stops
        self.may_stop = may_stop
        self._on_region = on_region
        self.region = Region.PREFIX

    def _set(self, region: Region) -> None:
        if region != self.region:
            old, self.region = self.region, region
            if self._on_region is not None:
                self._on_region(old, region)

    def _limit(self, off: int) -> int | None:
        """The next offset a read starting at ``off`` must not cross."""
        p = self._plan
        if off < p.start:
            return p.start
        if p.end is None:
            return None
        if off < p.end:
            return p.end
        for s in self._sorted_stops:  # (few reads happen past the end)
            if s > off:
                return s
        return None

    def read(self, n: int = -1, /) -> bytes:
        if self.region == Region.DONE:
            return b""
        p = self._plan
        pre = len(p.prefix)
        if self._pos < pre:
            end = pre if n < 0 else min(pre, self._pos + n)
            out = p.prefix[self._pos : end]
            self._pos = end
            return out
        off = p.lookback + self._pos - pre
        if off < p.start:
            region = Region.LOOKBACK
        elif p.end is None or off < p.end:
            region = Region.CHUNK
        else:
            region = Region.OVERRUN
            if (off == p.end or off in self._stops) and self.may_stop():
                self._set(Region.DONE)
                return b""
        self._set(region)
        limit = self._limit(off)
        want = (1 << 30) if n < 0 else n
        if limit is not None:
            want = min(want, limit - off)
        data = os.pread(self._fd, want, off) if want > 0 else b""
        self._pos += len(data)
        return data

    read1 = read

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or pos != 0 or self._pos > len(self._plan.prefix) + 64:
            raise io.UnsupportedOperation("a chunk view seeks only back to its start")
        self._pos = 0
        self.region = Region.PREFIX
        return 0

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _ChunkFlowReader(FlowReader):
    """A FlowReader over a :class:`ChunkView` that passes on only the owned flows' events."""

    def __init__(self, view: ChunkView, config: FlowConfig | None,
                 on_datagram: DatagramCallback | None) -> None:
        super().__init__(cast(BinaryIO, view), config, on_datagram=on_datagram)
        self.view = view
        self.owned: set[int] = set()
        self.pending: set[int] = set()  # owned flows that may still give an observation
        self.current: int | None = None  # the owned flow whose event is being handled
        self.owned_flows = 0

    def settle(self, fid: int | None) -> None:
        if fid is not None:
            self.pending.discard(fid)

    def __iter__(self) -> Iterator[FlowEvent]:
        view, owned, pending, skip = self.view, self.owned, self.pending, self.engine.skip
        for ev in super().__iter__():
            cls = ev.__class__
            if cls is Secrets:
                self.current = None
                yield ev
                continue
            fid: int = ev.flow_id  # type: ignore[union-attr]
            if cls is FlowStart:
                if view.region != Region.CHUNK:
                    skip(fid)  # another chunk's flow: bookkeeping only, no data
                    continue
                owned.add(fid)
                pending.add(fid)
                self.owned_flows += 1
            elif fid not in owned:
                continue
            self.current = fid
            if cls is Detected:
                det = cast(Detected, ev)
                if det.side == Side.CLIENT and det.result is Detection.NO:
                    pending.discard(fid)  # not TLS: both sides stop, no observation can come
            yield ev
            if cls is FlowEnd:
                owned.discard(fid)
                pending.discard(fid)
            self.current = None


class ChunkObserver(CaptureObserver):
    """A :class:`CaptureObserver` of one chunk: calls ``on_observation`` only for what the
    chunk owns (see the module doc). After :meth:`run`, :attr:`chunk_anomalies` holds the
    anomalies counted while the chunk's own packets were read, :attr:`owned_flows` and
    :attr:`dns_answers` what it owned."""

    def __init__(self, plan: ChunkPlan, on_observation: Callable[[Observation], None], *,
                 config: FlowConfig | None = None, keylog: KeyLog | None = None) -> None:
        self._deliver = on_observation
        self.view = ChunkView(plan, may_stop=self._may_stop, on_region=self._region)
        self._quic_deadline = -(1 << 63)
        self._quic_owned: set[tuple[str, int, str, int, int]] = set()
        self._at_chunk: Counter[str] = Counter()
        self.chunk_anomalies: Counter[str] = Counter()
        self.dns_answers = 0
        # The parent opens a reader on the header alone; it is replaced by the chunk's.
        super().__init__(io.BytesIO(plan.opener), self._own, config=config, keylog=keylog)
        self.reader.close()
        self._chunk_reader = _ChunkFlowReader(self.view, config, self._datagram)
        self.reader = self._chunk_reader

    @property
    def owned_flows(self) -> int:
        return self._chunk_reader.owned_flows

    def close(self) -> None:
        super().close()
        self.view.close()

    def run(self) -> None:
        try:
            super().run()
        finally:
            if self.view.region == Region.CHUNK:  # the chunk ran to the end of the file
                self._region(Region.CHUNK, Region.DONE)

    def _may_stop(self) -> bool:
        r = self._chunk_reader
        return not r.pending and r.last_ts_ns >= self._quic_deadline

    def _region(self, old: Region, new: Region) -> None:
        if new == Region.CHUNK:
            self._at_chunk = self.anomalies
        elif old == Region.CHUNK:
            self.chunk_anomalies = self.anomalies
            self.chunk_anomalies.subtract(self._at_chunk)
            self.chunk_anomalies = +self.chunk_anomalies  # (drop zero counts)

    def _quic_datagram(self, ts: int, p: PacketTuple) -> None:
        before = len(self._quic)
        super()._quic_datagram(ts, p)
        if len(self._quic) > before and self.view.region == Region.CHUNK:
            self._quic_owned.add((_addr(p[0]), p[5], _addr(p[1]), p[6], ts))
            self._quic_deadline = max(self._quic_deadline, ts + WAIT_AT_END_NS)

    def _own(self, obs: Observation) -> None:
        if isinstance(obs, DnsObservation):
            # Over UDP (no flow event being handled): owned by the answer's packet; over
            # TCP: by its flow, which is owned (other flows' events never get here).
            if self._chunk_reader.current is None and self.view.region != Region.CHUNK:
                return
            self.dns_answers += 1
        elif isinstance(obs, QuicFlowObservation):
            if (obs.client, obs.client_port, obs.server, obs.server_port,
                    obs.first_ts_ns) not in self._quic_owned:
                return
        else:
            self._chunk_reader.settle(self._chunk_reader.current)
        self._deliver(obs)


def _addr(packed: bytes) -> str:
    """An address as :mod:`tlswatch.quic.observe` writes it (``ipaddress`` text)."""
    return str(ipaddress.ip_address(bytes(packed)))

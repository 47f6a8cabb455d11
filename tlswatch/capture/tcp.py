"""TCP reassembly per direction and the flow table that bounds memory.

Policies (documented, tested):

* **Overlaps: first seen wins.** Bytes already delivered or buffered are never replaced; a
  later copy that differs is counted (``tcp_overlap_conflict``) — the tell of an injector
  racing the real server. Retransmitted bytes are compared against the last 64 KiB delivered.
* **Gaps are never guessed over.** Out-of-order segments wait in a bounded buffer; the missing
  range becomes a :class:`Gap` when the receiver ACKs past it, when the buffer overflows, or
  when the flow ends. The stream then continues after the gap.
* **Sequence numbers** are compared mod 2^32 (signed distance), so wraparound is seamless;
  stream offsets are unbounded Python ints. Segments more than 64 MiB away from the expected
  sequence are out of window: dropped and counted.
* **Mid-stream pickup**: a side without a SYN starts at its first segment carrying data.
* **Caps**: each side delivers at most ``max_bytes_per_side`` (TLS handshakes are at the
  start); past it, bytes are only counted. Flows end after ``idle_timeout_ns`` without packets
  (capture time), ``linger_ns`` after both FINs or a RST, or as least recently used when the
  table holds ``max_flows``. So memory stays flat however large the file.
"""

from __future__ import annotations

import bisect
import os
import struct
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ..tls import Detection
from .anomalies import Anomaly
from .events import (
    Data,
    Detected,
    Fin,
    FlowEnd,
    FlowEvent,
    FlowKey,
    FlowStart,
    Gap,
    Rst,
    Side,
    SideSummary,
)
from .layers import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, PacketTuple, ip_to_str
from .starttls import greeting_protocol

if TYPE_CHECKING:
    from ._bulkbook import BulkTable, Popped, SideState

__all__ = ["FlowConfig", "TcpReassembler"]

_MASK: Final = 0xFFFFFFFF
_HALF: Final = 0x80000000
_MAX_SEQ_DISTANCE: Final = 64 << 20  # beyond this from the expected seq: out of window
_RECENT_BYTES: Final = 32 << 10  # delivered bytes kept (as references) to check retransmissions
_MAX_TTLS: Final = 8  # distinct TTL values counted per side
_SWEEP_NS: Final = 1_000_000_000

Detector = Callable[[bytes], Detection]
_TableKey = tuple[bytes, bytes, int, int]  # (src, dst, sport, dport) as seen in a packet
_MAX_PREFIX: Final = 64  # a detector undecided after this many bytes is given up on
# An Ethernet frame's ethertype, IPv4 version/IHL, total length, IP ID, fragment field, TTL,
# protocol, and TCP seq, data offset, flags (addresses, ports and ack skipped).
_ETH_V4TCP_BOOK: Final = struct.Struct("!12xHB1xHHHBB10x4xI4xBB").unpack_from
_PORTS: Final = struct.Struct("!HH").pack
_V4_PAD: Final = bytes(24)  # an IPv4 flow key is padded to an IPv6 one's length
_I64_MIN: Final = -(1 << 63)
_I64_MAX: Final = (1 << 63) - 1
_DNS_PORT: Final = 53


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """Bounds of the flow table. Memory is at most about ``max_flows`` x 2.5 KiB of flow state
    plus the out-of-order and retransmission-check budgets (~280 MB with the defaults),
    whatever the size of the file; events the consumer keeps are its own."""

    max_flows: int = 50_000
    idle_timeout_ns: int = 120 * 1_000_000_000
    linger_ns: int = 5 * 1_000_000_000  # after both FINs or a RST
    max_bytes_per_side: int = 1 << 20
    max_ooo_bytes_per_side: int = 1 << 20
    max_ooo_bytes_total: int = 64 << 20
    max_recent_bytes_total: int = 32 << 20  # delivered bytes kept to compare retransmissions
    max_rst_events: int = 16  # per flow; more are counted only
    tls_only: bool = True  # stop delivering a flow's data once it is known not to be TLS
    # ...except after a server greeting that a STARTTLS upgrade may follow (SMTP, FTP, IMAP,
    # POP3): such a flow goes on delivering, for a consumer to follow (and skip() when done).
    follow_starttls: bool = True
    # ...and except DNS over TCP (server port 53): its answers are read like UDP ones.
    follow_dns: bool = True


class _Side:
    __slots__ = (
        "after_rst", "capped", "conflicts", "delivered", "detect", "fast_key", "fin",
        "fin_done", "fin_off", "first_ip_id", "first_ts", "gap_bytes", "gaps", "last_ip_id",
        "last_ts", "last_ttl", "next_seq", "offset", "ooo", "ooo_bytes", "ooo_keys", "packets",
        "payload_bytes", "prefix", "prefix_off", "raw", "recent", "recent_bytes", "retrans",
        "rst", "side", "started", "syn", "syn_seq", "syn_ts", "ttls",
    )

    def __init__(self, side: Side, detect: bool) -> None:
        self.side = side
        self.started = False  # next_seq/offset valid
        self.next_seq = 0
        self.offset = 0
        self.syn_seq: int | None = None
        self.syn_ts: int | None = None  # time of the first SYN (SYN-ACK for the server)
        self.ooo: dict[int, bytes] | None = None  # stream offset -> bytes (created lazily)
        self.ooo_keys: list[int] = []
        self.ooo_bytes = 0
        self.recent: list[tuple[int, bytes]] | None = None  # a list: lighter than a deque
        self.recent_bytes = 0
        self.capped = False
        self.detect = detect  # still waiting for the first bytes to decide TLS or not
        self.prefix = b""
        self.prefix_off = 0
        self.fin_off: int | None = None
        self.fin_done = False
        self.packets = self.payload_bytes = self.delivered = 0
        self.gaps = self.gap_bytes = self.retrans = self.conflicts = 0
        self.syn = self.fin = self.rst = self.after_rst = 0
        self.ttls: dict[int, int] = {}
        self.last_ttl: int | None = None
        self.first_ip_id: int | None = None
        self.last_ip_id: int | None = None
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.raw: bytes | None = None  # IPv4: src, dst, ports of this side's packets
        self.fast_key = b""  # the same, as the C fast path keys flows (IPv4 and IPv6)

    def bulk_state(self, peer: _Side) -> SideState | None:
        """What the C fast path needs to book this side's packets as feed_bulk_frame
        would; None when they need Python (not capped, or the peer waits on ACKs)."""
        if not self.capped or peer.ooo_keys:
            return None
        return (self.started, self.next_seq, self.first_ts is not None,
                self.first_ip_id is not None, self.ttls)

    def count_header(self, after_rst: bool, ttl: int, ip_id: int | None) -> None:
        """A non-RST packet's TTL and IP ID (IPv6: None), and whether it came after the
        flow's first RST."""
        if after_rst:
            self.after_rst += 1
        self.last_ttl = ttl
        ttls = self.ttls
        if ttl in ttls:
            ttls[ttl] += 1
        elif len(ttls) < _MAX_TTLS:
            ttls[ttl] = 1
        if ip_id is not None:
            self.last_ip_id = ip_id
            if self.first_ip_id is None:
                self.first_ip_id = ip_id

    def book_bulk(self, seq: int, n: int) -> None:
        """``n`` payload bytes at ``seq`` of a side that delivers nothing more: only how far
        the stream got (the C fast path's walker books the same)."""
        self.payload_bytes += n
        if not self.started:
            self.started = True
            self.next_seq = seq
        d = ((seq - self.next_seq + _HALF) & _MASK) - _HALF + n
        if 0 < d <= _MAX_SEQ_DISTANCE:
            self.offset += d
            self.next_seq = (seq + n) & _MASK

    def add_bulk(self, d: tuple[int, int, int, int, bool, int, int, int,
                                list[tuple[int, int]], int, int, int]) -> None:
        """Take over what the C fast path booked for this side."""
        (packets, first_ts, last_ts, payload, started, next_seq, off, ttl, ttls, first_id,
         last_id, after_rst) = d
        self.packets += packets
        if self.first_ts is None:
            self.first_ts = first_ts
        self.last_ts = last_ts
        self.payload_bytes += payload
        self.started = started
        self.next_seq = next_seq
        self.offset += off
        self.last_ttl = ttl
        self.ttls = dict(ttls)
        if last_id >= 0:  # (-1: IPv6, no IP ID)
            if self.first_ip_id is None:
                self.first_ip_id = first_id
            self.last_ip_id = last_id
        self.after_rst += after_rst

    def summary(self) -> SideSummary:
        return SideSummary(
            self.packets, self.payload_bytes, self.offset, self.delivered, self.gaps,
            self.gap_bytes, self.retrans, self.conflicts, self.syn, self.fin, self.rst,
            tuple(sorted(self.ttls.items())), self.first_ip_id, self.last_ip_id,
            self.after_rst, self.capped, self.first_ts, self.last_ts, self.syn_ts,
        )


class _Flow:
    __slots__ = ("bulk", "closing", "ended", "fid", "key", "last_ts", "plaintext",
                 "rst_events", "rst_seen", "sides", "table_keys")

    def __init__(self, fid: int, key: FlowKey, table_keys: tuple[_TableKey, _TableKey],
                 detect: bool) -> None:
        self.fid = fid
        self.key = key
        self.table_keys = table_keys
        self.sides = (_Side(Side.CLIENT, detect), _Side(Side.SERVER, detect))
        self.last_ts = 0
        self.closing = False
        self.ended = False
        self.rst_seen = False
        self.rst_events = 0
        self.plaintext = False  # STARTTLS greeting or DNS over TCP: plaintext is delivered
        self.bulk = False  # registered with the C fast path: its counters are there


class TcpReassembler:
    """Feed decoded TCP packets in capture order; read events from :attr:`events` after each
    call (and clear it). Call :meth:`finish` at the end of the capture."""

    def __init__(self, config: FlowConfig | None = None, *, detector: Detector | None = None,
                 anomalies: dict[str, int] | None = None) -> None:
        self.config = config or FlowConfig()
        self.detector = detector
        self.events: list[FlowEvent] = []
        self.anomalies: dict[str, int] = anomalies if anomalies is not None else {}
        self._table: dict[_TableKey, tuple[_Flow, _Side, _Side]] = {}
        # The same entries for IPv4 flows, keyed by the 12 bytes src, dst, sport, dport exactly
        # as they sit in the packet: a frame's flow is found without decoding it.
        self._raw: dict[bytes, tuple[_Flow, _Side, _Side]] = {}
        self._lru: OrderedDict[int, _Flow] = OrderedDict()
        self._closing: deque[_Flow] = deque()
        self._next_fid = 0
        self._next_sweep = -(1 << 63)  # pcapng offsets can make times negative
        self._ooo_total = 0
        self._recent_total = 0
        self._max_bytes = self.config.max_bytes_per_side
        self._max_recent = self.config.max_recent_bytes_total
        self._now = 0
        self.flows_seen = 0
        self._bulk: BulkTable | None = None

    def enable_fast_path(self) -> BulkTable | None:
        """Let the C extension book bulk packets (pass the table's ``walk_pcap`` to the pcap
        reader). None when the extension is not built or ``TLSWATCH_PURE_PYTHON`` is set;
        the results are the same either way, only the speed differs."""
        if os.environ.get("TLSWATCH_PURE_PYTHON"):
            return None
        try:
            from ._bulkbook import BulkTable
        except ImportError:
            return None
        table = BulkTable(self._lru, self.config.max_flows, int.from_bytes(os.urandom(8)))
        table.set_next_sweep(min(max(self._next_sweep, _I64_MIN), _I64_MAX))
        self._bulk = table
        return table

    # -- public -------------------------------------------------------------------------

    @property
    def active_flows(self) -> int:
        return len(self._lru)

    def has_flow(self) -> Callable[[object], bool]:
        """``has(key)``: is a flow with the packet tuple ``(src, dst, sport, dport)`` (either
        direction) in the table? A bound lookup, for a caller's per-packet loop."""
        return self._table.__contains__

    def skip(self, flow_id: int, side: Side | None = None) -> None:
        """Stop delivering data of a flow (one side or both): e.g. once its handshake is
        parsed. Bookkeeping (RST, FIN, counters) goes on."""
        flow = self._lru.get(flow_id)
        if flow is None:
            return
        for st in flow.sides:
            if side is None or st.side == side:
                self._cap(st)

    def syn_times(self, flow_id: int) -> tuple[int | None, int | None]:
        """(first client SYN, first server SYN-ACK) times of a flow still in the table;
        None where that packet was not seen (or the flow is gone)."""
        flow = self._lru.get(flow_id)
        if flow is None:
            return None, None
        client, server = flow.sides
        return client.syn_ts, server.syn_ts

    def feed_bulk_frame(self, ts: int, data: bytes) -> bool:
        """Book an Ethernet frame (IPv4 without options, TCP) of a side that no longer delivers
        data (past the cap, skipped, not TLS) without decoding it: the same counters as
        :meth:`feed`, in a fraction of the time. Returns False for every other frame (SYN,
        FIN, RST, another flow, odd headers): decode it and :meth:`feed` it instead."""
        ent = self._raw.get(data[26:38])
        if ent is None or len(data) < 54:
            return False
        flow, me, peer = ent
        if not me.capped or peer.ooo_keys:
            return False
        if flow.bulk:  # (the C fast path declined it: this side or the time needs Python)
            self._unbulk(flow)
        et, vihl, total, ip_id, frag, ttl, proto, seq, doff, flags = _ETH_V4TCP_BOOK(data)
        doff = (doff >> 4) << 2
        end = 14 + total if total else len(data)
        if et != 0x0800 or vihl != 0x45 or proto != 6 or flags & 7 or frag & 0x3FFF \
                or doff < 20 or not 34 + doff <= end <= len(data):
            return False  # SYN/FIN/RST, a fragment, a bad or snapped header: the full path
        if ts >= self._next_sweep:
            self._sweep(ts)
            if flow.ended:  # ended as idle: the packet opens a new flow
                return False
        self._now = ts
        self._lru.move_to_end(flow.fid)
        flow.last_ts = ts
        me.packets += 1
        if me.first_ts is None:
            me.first_ts = ts
        me.last_ts = ts
        me.count_header(flow.rst_seen, ttl, ip_id)
        n = end - 34 - doff
        if n:
            me.book_bulk(seq, n)
        if self._bulk is not None:
            self._register(flow)
        return True

    def _register(self, flow: _Flow) -> None:
        """Hand the flow's next bulk packets to the C fast path (IPv4 flows that are not
        closing, at times that fit 64 bits)."""
        client, server = flow.sides
        if flow.closing or not _I64_MIN <= flow.last_ts <= _I64_MAX:
            return
        assert self._bulk is not None
        flow.bulk = self._bulk.add(client.fast_key, server.fast_key, flow.fid, flow.last_ts,
                                   flow.rst_seen, client.bulk_state(server),
                                   server.bulk_state(client))

    def _unbulk(self, flow: _Flow) -> None:
        """Take a flow back from the C fast path with what it booked."""
        flow.bulk = False
        assert self._bulk is not None
        got = self._bulk.pop(flow.sides[0].fast_key)
        if got is not None:
            self._take_bulk(flow, got)

    @staticmethod
    def _take_bulk(flow: _Flow, got: Popped) -> None:
        last_ts, dc, ds = got
        if last_ts is not None:
            flow.last_ts = last_ts
        client, server = flow.sides
        if dc is not None:
            client.add_bulk(dc)
        if ds is not None:
            server.add_bulk(ds)

    def feed(self, ts: int, p: PacketTuple) -> None:
        """One TCP packet: a :class:`Decoded` or the same fields as a plain tuple (faster)."""
        if ts >= self._next_sweep:
            self._sweep(ts)
        self._now = ts
        src, dst, _proto, ttl, ip_id, sport, dport, seq, ack, flags, _win, payload = p
        ent = self._table.get((src, dst, sport, dport))
        if ent is None:
            flow, me, peer = self._new_flow(ts, p)
        else:
            flow, me, peer = ent
            if flow.bulk:
                self._unbulk(flow)
            if flags & TCP_SYN and seq != me.syn_seq and (
                me.syn_seq is not None or (me.started and not flags & TCP_ACK)
            ):
                # The same 4-tuple with a fresh ISN: the old connection is over.
                self._end(flow, "reused")
                flow, me, peer = self._new_flow(ts, p)
        self._lru.move_to_end(flow.fid)
        flow.last_ts = ts
        me.packets += 1
        if me.first_ts is None:
            me.first_ts = ts
        me.last_ts = ts
        if flags & TCP_RST:
            self._rst(flow, me, ts, p)
            return
        me.count_header(flow.rst_seen, ttl, ip_id)
        if flags & TCP_SYN:
            me.syn += 1
            if me.syn_seq is None:
                me.syn_seq = seq
                me.syn_ts = ts
                if not me.started:
                    me.started = True
                    me.next_seq = (seq + 1) & _MASK
            seq = (seq + 1) & _MASK  # data on a SYN (TCP Fast Open) follows the ISN
        if flags & TCP_ACK and peer.ooo_keys:
            self._ack(flow, peer, ack)
        if me.capped and not flags & (TCP_SYN | TCP_FIN):
            # Bulk past the cap (or skipped): count how far the stream got, nothing else.
            if payload:
                me.book_bulk(seq, len(payload))
            if self._bulk is not None:
                self._register(flow)  # (frames feed_bulk_frame does not read: VLAN, SLL...)
            return
        if payload:
            n = len(payload)
            me.payload_bytes += n
            off = me.offset
            if (seq == me.next_seq and me.started and not me.ooo_keys and not me.detect
                    and off + n < self._max_bytes and me.fin_off is None):
                # The common case, inlined: the next bytes in order, under the cap.
                me.offset = off + n
                me.next_seq = (seq + n) & _MASK
                me.delivered += n
                self.events.append(Data(flow.fid, flow.key, me.side, ts, off, payload))
                if self._recent_total < self._max_recent:
                    recent = me.recent
                    if recent is None:
                        recent = me.recent = []
                    recent.append((off, payload))
                    me.recent_bytes += n
                    self._recent_total += n
                    while me.recent_bytes > _RECENT_BYTES and len(recent) > 1:
                        dropped = len(recent.pop(0)[1])
                        me.recent_bytes -= dropped
                        self._recent_total -= dropped
            else:
                self._segment(flow, me, peer, seq, payload)
        if flags & TCP_FIN:
            me.fin += 1
            if not me.started:  # a bare FIN of a side picked up mid-stream
                me.started = True
                me.next_seq = seq
            if me.fin_off is None:
                me.fin_off = me.offset + _dist((seq + len(payload)) & _MASK, me.next_seq)
                self._maybe_fin(flow, me)

    def tick(self, ts: int) -> None:
        """The capture's clock moved (a TCP packet this table does not keep: another
        process's share of the flows): sweep as :meth:`feed` would."""
        if ts >= self._next_sweep:
            self._sweep(ts)
        self._now = ts

    def finish(self, now: int | None = None) -> None:
        """End every flow (reason ``eof``), flushing buffered segments as gaps; ``now``:
        the time of the capture's last TCP packet, when this table did not see them all."""
        for flow in list(self._lru.values()):
            self._end(flow, "eof")
        if now is not None:
            self._now = now

    # -- flows ---------------------------------------------------------------------------

    def _new_flow(self, ts: int, p: PacketTuple) -> tuple[_Flow, _Side, _Side]:
        cfg = self.config
        if len(self._lru) >= cfg.max_flows:
            self._count(Anomaly.FLOW_TABLE_FULL)
            self._end(next(iter(self._lru.values())), "evicted")
        src, dst, _, _, _, sport, dport, _, _, flags, _, _ = p
        if flags & TCP_SYN:
            from_client = not flags & TCP_ACK
            origin = "syn" if from_client else "synack"
        else:
            # No handshake seen: servers listen on the lower (well-known) port.
            from_client = sport >= dport
            origin = "midstream"
        a = (src, dst, sport, dport)
        b = (dst, src, dport, sport)
        sip, dip = ip_to_str(src), ip_to_str(dst)
        key = FlowKey(sip, sport, dip, dport) if from_client else FlowKey(dip, dport, sip, sport)
        fid = self._next_fid
        self._next_fid += 1
        self.flows_seen += 1
        flow = _Flow(fid, key, (a, b), self.detector is not None)
        client, server = flow.sides
        me, peer = (client, server) if from_client else (server, client)
        self._table[a] = (flow, me, peer)
        self._table[b] = (flow, peer, me)
        ports = _PORTS(sport, dport)
        back = dst + src + ports[2:] + ports[:2]
        if len(src) == 4:
            me.raw, peer.raw = src + dst + ports, back
            self._raw[me.raw] = (flow, me, peer)
            self._raw[back] = (flow, peer, me)
            me.fast_key, peer.fast_key = b"\x04" + me.raw + _V4_PAD, b"\x04" + back + _V4_PAD
        else:
            me.fast_key, peer.fast_key = b"\x06" + src + dst + ports, b"\x06" + back
        self._lru[fid] = flow
        flow.last_ts = ts
        self.events.append(FlowStart(fid, key, ts, origin))
        return flow, me, peer

    def _end(self, flow: _Flow, reason: str) -> None:
        if flow.ended:
            return
        if flow.bulk:
            self._unbulk(flow)
        flow.ended = True
        for st in flow.sides:
            self._flush(flow, st, flow.last_ts)
            self._forget_recent(st)
        a, b = flow.table_keys
        self._table.pop(a, None)
        self._table.pop(b, None)
        if len(a[0]) == 4:
            ports = _PORTS(a[2], a[3])
            self._raw.pop(a[0] + a[1] + ports, None)
            self._raw.pop(b[0] + b[1] + ports[2:] + ports[:2], None)
        self._lru.pop(flow.fid, None)
        c, s = flow.sides
        self.events.append(FlowEnd(flow.fid, flow.key, flow.last_ts, reason, c.summary(),
                                   s.summary()))

    def _sweep(self, now: int) -> None:
        self._next_sweep = now + _SWEEP_NS
        cfg = self.config
        bulk = self._bulk
        if bulk is not None:
            bulk.set_next_sweep(min(max(self._next_sweep, _I64_MIN), _I64_MAX))
            # Flows whose time as Python knows it may look idle get their true time back.
            deadline = min(max(now - cfg.idle_timeout_ns, _I64_MIN), _I64_MAX)
            for fid, got in bulk.pop_stale(deadline):
                flow = self._lru[fid]
                flow.bulk = False
                self._take_bulk(flow, got)
        closing = self._closing
        while closing:
            flow = closing[0]
            if flow.ended:
                closing.popleft()
            elif flow.last_ts + cfg.linger_ns <= now:
                closing.popleft()
                self._end(flow, "closed")
            else:
                break  # roughly ordered by closing time; the idle sweep catches the rest
        deadline = now - cfg.idle_timeout_ns
        lru = self._lru
        while lru:
            flow = next(iter(lru.values()))
            if flow.last_ts > deadline:
                break
            self._end(flow, "idle")

    def _close_soon(self, flow: _Flow) -> None:
        if not flow.closing:
            flow.closing = True
            self._closing.append(flow)
            for st in flow.sides:  # no more data is expected: keep less while lingering
                self._forget_recent(st)

    def _count(self, anomaly: Anomaly) -> None:
        self.anomalies[anomaly] = self.anomalies.get(anomaly, 0) + 1

    # -- reassembly ----------------------------------------------------------------------

    def _segment(self, flow: _Flow, me: _Side, peer: _Side, seq: int, data: bytes) -> None:
        n = len(data)
        if not me.started:
            me.started = True
            me.next_seq = seq
        d = ((seq - me.next_seq + _HALF) & _MASK) - _HALF
        if me.capped:  # past the cap: only track how far the stream got
            if 0 < d + n <= _MAX_SEQ_DISTANCE:
                me.offset += d + n
                me.next_seq = (seq + n) & _MASK
            return
        if d == 0 and not me.ooo_keys:
            self._deliver(flow, me, data)
            return
        if d > _MAX_SEQ_DISTANCE or d + n < -_MAX_SEQ_DISTANCE:
            self._count(Anomaly.TCP_OUT_OF_WINDOW)
            return
        if d + n <= 0:
            me.retrans += 1
            if me.offset + d < 0:
                self._count(Anomaly.TCP_DATA_BEFORE_START)
            else:
                self._check_recent(me, me.offset + d, data)
            return
        if d < 0:  # partly old: compare the old part, keep the new part
            if me.offset + d >= 0:
                self._check_recent(me, me.offset + d, data[:-d])
            data = data[-d:]
            d = 0
        self._buffer(flow, me, me.offset + d, data)
        self._drain(flow, me)
        if me.ooo_bytes > self.config.max_ooo_bytes_per_side or (
            self._ooo_total > self.config.max_ooo_bytes_total
        ):
            self._count(Anomaly.TCP_OOO_OVERFLOW)
            while me.ooo_keys and (me.ooo_bytes > self.config.max_ooo_bytes_per_side // 2
                                   or self._ooo_total > self.config.max_ooo_bytes_total):
                self._gap_to(flow, me, me.ooo_keys[0])
                self._drain(flow, me)

    def _deliver(self, flow: _Flow, me: _Side, data: bytes) -> None:
        """Hand out in-order bytes at ``me.offset`` (the cap and TLS detection apply)."""
        n = len(data)
        off = me.offset
        me.offset = off + n
        me.next_seq = (me.next_seq + n) & _MASK
        room = self.config.max_bytes_per_side - off
        if n > room:
            data = data[:room]
        if data:
            if me.detect:
                self._detect(flow, me, data, off)
            else:
                me.delivered += len(data)
                self.events.append(Data(flow.fid, flow.key, me.side, self._now, off, data))
            if not me.capped and self._recent_total < self.config.max_recent_bytes_total:
                # (detection may have just stopped this flow: then nothing is kept)
                recent = me.recent
                if recent is None:
                    recent = me.recent = []
                recent.append((off, data))
                me.recent_bytes += len(data)
                self._recent_total += len(data)
                while me.recent_bytes > _RECENT_BYTES and len(recent) > 1:
                    dropped = len(recent.pop(0)[1])
                    me.recent_bytes -= dropped
                    self._recent_total -= dropped
        if n >= room and not me.capped:
            self._cap(me)
        if me.fin_off is not None:
            self._maybe_fin(flow, me)

    def _buffer(self, flow: _Flow, me: _Side, off: int, data: bytes) -> None:
        """Insert out-of-order bytes; only the parts no earlier segment covers are kept."""
        ooo = me.ooo
        if ooo is None:
            ooo = me.ooo = {}
        keys = me.ooo_keys
        end = off + len(data)
        cur = off
        pieces: list[tuple[int, bytes]] = []
        i = bisect.bisect_right(keys, off) - 1
        if i < 0:
            i = 0
        while i < len(keys) and cur < end:
            ks = keys[i]
            if ks >= end:
                break
            kd = ooo[ks]
            ke = ks + len(kd)
            if ke > cur:
                if ks > cur:
                    pieces.append((cur, data[cur - off : ks - off]))
                lo, hi = max(ks, cur), min(ke, end)
                if data[lo - off : hi - off] != kd[lo - ks : hi - ks]:
                    me.conflicts += 1
                    self._count(Anomaly.TCP_OVERLAP_CONFLICT)
                cur = max(cur, ke)
            i += 1
        if cur < end:
            pieces.append((cur, data[cur - off :] if cur > off else data))
        elif not pieces:
            me.retrans += 1
        for po, pd in pieces:
            bisect.insort(keys, po)
            ooo[po] = pd
            me.ooo_bytes += len(pd)
            self._ooo_total += len(pd)

    def _drain(self, flow: _Flow, me: _Side) -> None:
        keys, ooo = me.ooo_keys, me.ooo
        if ooo is None:
            return
        while keys and keys[0] <= me.offset and not me.capped:
            ks = keys.pop(0)
            kd = ooo.pop(ks)
            me.ooo_bytes -= len(kd)
            self._ooo_total -= len(kd)
            skip = me.offset - ks
            if skip < len(kd):
                self._deliver(flow, me, kd[skip:] if skip else kd)
        if me.capped:
            self._drop_ooo(me)

    def _drop_ooo(self, me: _Side) -> None:
        if me.ooo:
            self._ooo_total -= me.ooo_bytes
        me.ooo = None
        me.ooo_keys = []
        me.ooo_bytes = 0

    def _gap_to(self, flow: _Flow, me: _Side, to: int) -> None:
        length = to - me.offset
        if length <= 0:
            return
        if me.detect:
            self._detect_done(flow, me, Detection.NEED_MORE)
        self._count(Anomaly.TCP_GAP)
        me.gaps += 1
        me.gap_bytes += length
        if me.offset < self.config.max_bytes_per_side and not me.capped:
            self.events.append(Gap(flow.fid, flow.key, me.side, self._now, me.offset, length))
        me.offset = to
        me.next_seq = (me.next_seq + length) & _MASK
        self._forget_recent(me)

    def _ack(self, flow: _Flow, peer: _Side, ack: int) -> None:
        """The receiver acknowledged up to ``ack``: buffered data beyond a hole the receiver
        already has means the capture missed the hole."""
        d = _dist(ack, peer.next_seq)
        if 0 < d <= _MAX_SEQ_DISTANCE:
            target = peer.offset + d
            while peer.ooo_keys and peer.offset < target:
                self._gap_to(flow, peer, min(peer.ooo_keys[0], target))
                self._drain(flow, peer)

    def _flush(self, flow: _Flow, me: _Side, ts: int) -> None:
        """At flow end: buffered segments are delivered after gaps; pending FIN/detection."""
        self._now = ts
        while me.ooo_keys and not me.capped:
            self._gap_to(flow, me, me.ooo_keys[0])
            self._drain(flow, me)
        self._drop_ooo(me)
        if me.detect and me.prefix:
            self._detect_done(flow, me, Detection.NEED_MORE)
        if me.fin_off is not None and not me.fin_done:
            if me.fin_off > me.offset:  # bytes before the FIN never arrived
                self._gap_to(flow, me, me.fin_off)
            self._maybe_fin(flow, me)

    def _maybe_fin(self, flow: _Flow, me: _Side) -> None:
        if me.fin_done or me.fin_off is None or me.offset < me.fin_off:
            return
        me.fin_done = True
        self.events.append(Fin(flow.fid, flow.key, me.side, self._now, me.fin_off))
        if all(st.fin_done for st in flow.sides):
            self._close_soon(flow)

    def _cap(self, me: _Side) -> None:
        me.capped = True
        me.detect = False
        me.prefix = b""
        self._drop_ooo(me)
        self._forget_recent(me)

    def _forget_recent(self, me: _Side) -> None:
        self._recent_total -= me.recent_bytes
        me.recent = None
        me.recent_bytes = 0

    def _check_recent(self, me: _Side, off: int, data: bytes) -> None:
        """Compare retransmitted bytes with what was delivered (first copy wins)."""
        if me.recent is None:
            return
        end = off + len(data)
        for ro, rd in me.recent:
            re_ = ro + len(rd)
            if re_ <= off or ro >= end:
                continue
            lo, hi = max(ro, off), min(re_, end)
            if data[lo - off : hi - off] != rd[lo - ro : hi - ro]:
                me.conflicts += 1
                self._count(Anomaly.TCP_OVERLAP_CONFLICT)
                return

    # -- RST ----------------------------------------------------------------------------

    def _rst(self, flow: _Flow, me: _Side, ts: int, p: PacketTuple) -> None:
        me.rst += 1
        flow.rst_seen = True
        _, _, _, ttl, ip_id, _, _, seq, ack, flags, _, _ = p
        if flow.rst_events < self.config.max_rst_events:
            flow.rst_events += 1
            delta = _dist(seq, me.next_seq) if me.started else None
            self.events.append(Rst(flow.fid, flow.key, me.side, ts, ttl, ip_id, seq, ack, flags,
                                   delta, me.last_ttl, me.last_ip_id, me.offset))
        elif flow.rst_events == self.config.max_rst_events:
            flow.rst_events += 1
            self._count(Anomaly.TCP_RST_FLOOD)
        self._close_soon(flow)

    # -- TLS detection by content --------------------------------------------------------

    def _detect(self, flow: _Flow, me: _Side, data: bytes, off: int) -> None:
        if not me.prefix:
            me.prefix_off = off
        me.prefix += data
        assert self.detector is not None
        result = self.detector(me.prefix)
        if result is not Detection.NEED_MORE or len(me.prefix) >= _MAX_PREFIX:
            self._detect_done(flow, me, result)

    def _detect_done(self, flow: _Flow, me: _Side, result: Detection) -> None:
        me.detect = False
        self.events.append(Detected(flow.fid, flow.key, me.side, self._now, result))
        prefix, me.prefix = me.prefix, b""
        if prefix:
            me.delivered += len(prefix)
            self.events.append(Data(flow.fid, flow.key, me.side, self._now, me.prefix_off,
                                    prefix))
        if result is Detection.NO and self.config.tls_only:
            client, server = flow.sides
            # Not TLS: a client speaking something else, or a server speaking first (SMTP,
            # FTP...). A non-TLS answer to a ClientHello is kept; so is a dialogue opened by
            # a STARTTLS protocol's greeting.
            if me is client or client.offset == 0:
                if flow.plaintext or (self.config.follow_starttls and me is server
                                      and greeting_protocol(prefix) is not None) or (
                        self.config.follow_dns and flow.key.server_port == _DNS_PORT):
                    flow.plaintext = True
                    return
                self._cap(client)
                self._cap(server)


def _dist(a: int, b: int) -> int:
    """Signed distance a - b in sequence space (mod 2^32)."""
    return ((a - b + _HALF) & _MASK) - _HALF

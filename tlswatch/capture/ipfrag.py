"""IPv4 and IPv6 fragment reassembly, bounded, in capture time.

Censors and evasion tools split ClientHellos over IP fragments on purpose (a filter that
does not reassemble never sees the SNI), so a capture reader must put them back together.
:func:`~tlswatch.capture.layers.decode_tuple` hands each TCP/UDP fragment to
:meth:`FragmentReassembler.stash` (decoding has no clock); the driver then calls
:meth:`FragmentReassembler.take` with the packet's time, which returns the whole datagram,
decoded like any other packet, once its last missing byte arrived.

Policies (the same as the TCP reassembler's where they can be):

* Datagrams are keyed by (source, destination, protocol, identification): RFC 791's key,
  and RFC 8200's plus the next header.
* **First copy wins.** Bytes already held are never replaced; an overlapping later copy that
  differs is counted (``ip_fragment_overlap_conflict``) — the tell of an evasion tool or an
  injector. (RFC 5722 has IPv6 hosts drop such datagrams; which copy a host kept is
  unknowable from a capture, so the anomaly is the finding.)
* **Invalid fragments are dropped** and counted (``ip_fragment_bad``): a non-last fragment
  whose length is not a multiple of 8 or is empty, bytes past 64 KiB, bytes past a known end,
  a second end that differs from the first.
* **Bounds**: at most ``max_fragments`` per datagram (more: the datagram is dropped,
  ``ip_fragment_too_many``), ``max_datagrams`` incomplete datagrams and ``max_bytes`` held in
  all (more: the oldest is dropped, ``ip_fragment_overflow``). A datagram still incomplete
  ``timeout_ns`` of capture time after its first fragment is dropped
  (``ip_fragment_timeout``); those left at the end of the capture are counted as
  ``ip_fragment_incomplete``.

Only TCP and UDP fragments are kept (nothing else is decoded). Every fragment seen is counted
as ``ip_fragment``; :attr:`FragmentReassembler.reassembled` counts whole datagrams.
"""

from __future__ import annotations

import struct
from collections import Counter, OrderedDict
from typing import Final

from .anomalies import Anomaly
from .layers import PacketTuple, decode_ip_packet

__all__ = ["FragmentReassembler"]

_IPV4_HEADER: Final = struct.Struct("!BBHHHBBH4s4s").pack
_IPV6_HEADER: Final = struct.Struct("!IHBB16s16s").pack
_MAX_V4_PAYLOAD: Final = 65535 - 20  # the rebuilt header's total length is 16 bits
_MAX_V6_PAYLOAD: Final = 65535

_Key = tuple[bytes, bytes, int, int]  # (src, dst, proto, identification)
# (src, dst, proto, ttl, identification, byte offset, more fragments, payload)
_Fragment = tuple[bytes, bytes, int, int, int, int, bool, bytes]


class _Datagram:
    __slots__ = ("end", "first_ts", "fragments", "held", "pieces", "ttl", "ttl_final")

    def __init__(self, first_ts: int, ttl: int) -> None:
        self.first_ts = first_ts
        self.pieces: list[tuple[int, bytes]] = []  # sorted by offset, never overlapping
        self.held = 0
        self.end: int | None = None  # known once the last fragment (MF clear) arrived
        self.fragments = 0
        self.ttl = ttl  # the first fragment's (it carries the transport header)
        self.ttl_final = False


class FragmentReassembler:
    """Reassemble fragments fed in capture order; anomalies go to ``anomalies``."""

    def __init__(self, anomalies: Counter[str] | None = None, *,
                 max_datagrams: int = 1024, max_bytes: int = 8 << 20,
                 max_fragments: int = 256, timeout_ns: int = 30 * 1_000_000_000) -> None:
        self.anomalies: Counter[str] = anomalies if anomalies is not None else Counter()
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.max_fragments = max_fragments
        self.timeout_ns = timeout_ns
        #: The fragment :meth:`stash` received and :meth:`take` has not consumed yet.
        self.pending: _Fragment | None = None
        self.reassembled = 0  # whole datagrams handed out
        self.held_bytes = 0  # fragment bytes held now, all datagrams together
        self._open: OrderedDict[_Key, _Datagram] = OrderedDict()  # oldest first

    @property
    def incomplete(self) -> int:
        """Datagrams waiting for fragments."""
        return len(self._open)

    def stash(self, src: bytes, dst: bytes, proto: int, ttl: int, ident: int, offset: int,
              more: bool, payload: bytes) -> None:
        """Keep one fragment (its IP payload, from byte ``offset`` of the datagram's) for
        :meth:`take`. Called by the decoder, which has no clock."""
        self.anomalies[Anomaly.IP_FRAGMENT] += 1
        self.pending = (src, dst, proto, ttl, ident, offset, more, payload)

    def take(self, ts: int) -> PacketTuple | None:
        """Add the stashed fragment at capture time ``ts``; the decoded datagram when it is
        whole (None while it is not, or when it was dropped)."""
        frag, self.pending = self.pending, None
        if frag is None:
            return None
        self._expire(ts)
        src, dst, proto, ttl, ident, offset, more, payload = frag
        n = len(payload)
        end = offset + n
        limit = _MAX_V4_PAYLOAD if len(src) == 4 else _MAX_V6_PAYLOAD
        if end > limit or (more and (n == 0 or n & 7)):
            self._count(Anomaly.IP_FRAGMENT_BAD)
            return None
        key = (src, dst, proto, ident)
        dg = self._open.get(key)
        if dg is None:
            dg = self._open[key] = _Datagram(ts, ttl)
        dg.fragments += 1
        if offset == 0 and not dg.ttl_final:
            dg.ttl, dg.ttl_final = ttl, True
        if dg.fragments > self.max_fragments:
            self._count(Anomaly.IP_FRAGMENT_TOO_MANY)
            self._drop(key, dg)
            return None
        if not more:
            if dg.end is None:
                dg.end = end
                self._trim(dg)
            elif dg.end != end:
                self._count(Anomaly.IP_FRAGMENT_BAD)
                return None
        elif dg.end is not None and end > dg.end:
            self._count(Anomaly.IP_FRAGMENT_BAD)
            payload = payload[: max(dg.end - offset, 0)]
        if payload:
            self._insert(dg, offset, payload)
        if dg.end is not None and dg.held == dg.end:
            self._drop(key, dg)
            return self._decode(src, dst, proto, dg.ttl, ident, b"".join(
                p for _, p in dg.pieces))
        self._bound(key)
        return None

    def finish(self, ts: int | None) -> None:
        """At the end of the capture (``ts``: its last packet's time): count and drop what
        is still incomplete, as timeouts when their time was up."""
        for key, dg in list(self._open.items()):
            late = ts is not None and ts - dg.first_ts >= self.timeout_ns
            self._count(Anomaly.IP_FRAGMENT_TIMEOUT if late else Anomaly.IP_FRAGMENT_INCOMPLETE)
            self._drop(key, dg)
        self.pending = None

    # -- internals ------------------------------------------------------------------------

    def _count(self, anomaly: Anomaly) -> None:
        self.anomalies[anomaly] += 1

    def _drop(self, key: _Key, dg: _Datagram) -> None:
        del self._open[key]
        self.held_bytes -= dg.held

    def _expire(self, ts: int) -> None:
        deadline = ts - self.timeout_ns
        opened = self._open
        while opened:
            key, dg = next(iter(opened.items()))
            if dg.first_ts > deadline:
                break
            self._count(Anomaly.IP_FRAGMENT_TIMEOUT)
            self._drop(key, dg)

    def _bound(self, keep: _Key) -> None:
        """Drop the oldest datagrams while over a bound (the newest one last of all)."""
        opened = self._open
        while len(opened) > self.max_datagrams or self.held_bytes > self.max_bytes:
            key, dg = next(iter(opened.items()))
            if key == keep and len(opened) > 1:
                opened.move_to_end(key)
                continue
            self._count(Anomaly.IP_FRAGMENT_OVERFLOW)
            self._drop(key, dg)

    def _trim(self, dg: _Datagram) -> None:
        """The end is now known: bytes held past it are invalid."""
        end = dg.end
        assert end is not None
        kept: list[tuple[int, bytes]] = []
        for off, data in dg.pieces:
            if off + len(data) > end:
                self._count(Anomaly.IP_FRAGMENT_BAD)
                cut = data[: max(end - off, 0)]
                dg.held -= len(data) - len(cut)
                self.held_bytes -= len(data) - len(cut)
                data = cut
            if data:
                kept.append((off, data))
        dg.pieces = kept

    def _insert(self, dg: _Datagram, off: int, data: bytes) -> None:
        """Keep the parts of ``data`` that no earlier fragment covers; compare the rest."""
        end = off + len(data)
        cur = off
        new: list[tuple[int, bytes]] = []
        conflict = False
        for ps, pd in dg.pieces:  # (at most max_fragments pieces: a scan is enough)
            pe = ps + len(pd)
            if pe <= cur:
                continue
            if ps >= end:
                break
            if ps > cur:
                new.append((cur, data[cur - off : ps - off]))
            lo, hi = max(ps, cur), min(pe, end)
            if data[lo - off : hi - off] != pd[lo - ps : hi - ps]:
                conflict = True
            cur = hi
        if cur < end:
            new.append((cur, data[cur - off :]))
        if conflict:
            self._count(Anomaly.IP_FRAGMENT_OVERLAP_CONFLICT)
        if new:
            dg.pieces = sorted(dg.pieces + new)
            added = sum(len(d) for _, d in new)
            dg.held += added
            self.held_bytes += added

    def _decode(self, src: bytes, dst: bytes, proto: int, ttl: int, ident: int,
                payload: bytes) -> PacketTuple | None:
        """The whole datagram, decoded through the normal path (as if never fragmented)."""
        self.reassembled += 1
        if len(src) == 4:
            header = _IPV4_HEADER(0x45, 0, 20 + len(payload), ident, 0, ttl, proto, 0, src, dst)
        else:
            header = _IPV6_HEADER(6 << 28, len(payload), proto, ttl, src, dst)
        return decode_ip_packet(header + payload, self.anomalies)

"""One fast pass over an uncompressed pcap/pcapng file: its SHA-256 and an offset index of its
records, so that the file can be split into chunks read by different processes.

    index = build_index("big.pcap")          # raises NotSplittable for gzip/xz/bzip2 files
    plans = plan_chunks(index, 4)            # ChunkPlan per chunk, about equal bytes

The index keeps a *checkpoint* at the first record boundary after every :data:`STEP` bytes:
its offset, how many packets lie before it and the largest timestamp before it. A chunk
starts and ends at checkpoints. To decode from a checkpoint a reader needs the file's header:
for pcap the 24-byte global header; for pcapng the Section Header Block of the section the
checkpoint lies in and the Interface Description Blocks met so far in that section (link
types, timestamp resolution), and -- so that key logs apply as in a whole-file run -- the
Decryption Secrets Blocks met before it, in any section (re-encoded in the section's byte
order). :meth:`OffsetIndex.prefix` builds those bytes; they are bounded
(:data:`MAX_PREFIX_BYTES`), else the file is not split.

Damage stops the pass where the readers stop (:mod:`.pcap`, :mod:`.pcapng` checks): the last
chunk then runs into the damage itself, with the same warning as a whole-file run.
"""

from __future__ import annotations

import hashlib
import os
import struct
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any, BinaryIO, Final, Literal

from ._source import MAX_BLOCK_LEN, MAX_PACKET_LEN
from .pcap import GLOBAL_HEADER_LEN, PCAP_MAGICS
from .pcapng import (
    BLOCK_DSB,
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_SPB,
    SECRETS_TLS_KEYLOG,
    Interface,
    section_byte_order,
)
from .pcapng import _interface as _parse_interface

__all__ = [
    "MAX_PREFIX_BYTES",
    "STEP",
    "ChunkPlan",
    "NotSplittable",
    "OffsetIndex",
    "build_index",
    "plan_at",
    "plan_chunks",
]

STEP: Final = 256 << 10  # a checkpoint every 256 KiB: where chunks start, end and may stop
MAX_PREFIX_BYTES: Final = 16 << 20  # SHB + IDBs + DSBs carried to a chunk: more is hostile
_READ: Final = 8 << 20
_BLOCK_PB: Final = 0x00000002
_SHB_MAGIC: Final = b"\x0a\x0d\x0d\x0a"
_NO_TIME: Final = -(1 << 63)


class NotSplittable(Exception):
    """The file is read whole (compressed, not a capture, or its headers are too large)."""


@dataclass(slots=True)
class _Section:
    shb: bytes
    order: str
    idbs: list[tuple[int, bytes]] = field(default_factory=list)  # (offset, block)


@dataclass(frozen=True, slots=True)
class OffsetIndex:
    """Checkpoints of one file (parallel tuples, offsets increasing), its hash and headers."""

    path: str
    size: int
    sha256: str
    format: Literal["pcap", "pcapng"]
    offsets: tuple[int, ...]
    packets: tuple[int, ...]  # packets before each checkpoint
    runmax: tuple[int, ...]  # largest packet time (ns) before each checkpoint
    section: tuple[int, ...]  # pcapng: the section each checkpoint lies in
    total_packets: int
    damaged: bool  # the pass stopped at damage (the readers stop there too)
    header: bytes = b""  # pcap: the global header
    sections: tuple[tuple[bytes, str, tuple[tuple[int, bytes], ...]], ...] = ()
    secrets: tuple[tuple[int, int, bytes], ...] = ()  # pcapng DSBs: (offset, type, data)

    @property
    def key_logs(self) -> int:
        """TLS key logs embedded in the file (pcapng Decryption Secrets Blocks)."""
        return sum(1 for _o, t, _d in self.secrets if t == SECRETS_TLS_KEYLOG)

    def prefix(self, i: int) -> bytes:
        """The bytes a reader needs before the records at checkpoint ``i`` (see module doc)."""
        if self.format == "pcap":
            return self.header
        at = self.offsets[i]
        if at == 0:
            return b""  # the file's own first block is its Section Header
        shb, order, idbs = self.sections[self.section[i]]
        parts = [shb, *(b for off, b in idbs if off < at)]
        parts += [_dsb(order, t, d) for off, t, d in self.secrets if off < at]
        return b"".join(parts)

    def opener(self) -> bytes:
        """Bytes that open as this file's format (a header, no packets)."""
        return self.header if self.format == "pcap" else self.sections[0][0]


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """What a worker needs to analyse one chunk: read ``prefix`` then the file from
    ``lookback``; flows whose first packet lies in [``start``, ``end``) are its own; past
    ``end`` (None: the end of the file) it reads on until its flows are settled, and may stop
    only at one of ``stops`` (record boundaries)."""

    path: str
    index: int  # chunk number, from 0
    count: int  # chunks of the file
    prefix: bytes
    opener: bytes
    lookback: int
    start: int
    end: int | None
    stops: tuple[int, ...]
    packets: int  # packets in [start, end)


def _dsb(order: str, stype: int, data: bytes) -> bytes:
    pad = b"\0" * (-len(data) & 3)
    blen = 20 + len(data) + len(pad)
    return (struct.pack(order + "IIII", BLOCK_DSB, blen, stype, len(data)) + data + pad
            + struct.pack(order + "I", blen))


class _Walker:
    """Reads the file once in large pieces (hashing each) and hands out byte windows."""

    def __init__(self, f: BinaryIO, hasher: Any) -> None:
        self._f = f
        self._h = hasher
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.eof = False

    def need(self, pos: int, n: int) -> int:
        """Make ``buf[pos:pos+n]`` available (``pos`` relative to ``base``); returns the new
        ``pos`` (the buffer is compacted). Fewer bytes at the end of the file."""
        buf = self.buf
        if pos + n <= len(buf) or self.eof:
            return pos
        keep = buf[pos:]
        self.base += pos
        parts = [keep]
        have = len(keep)
        while have < n:
            piece = self._f.read(max(_READ, n - have))
            if not piece:
                self.eof = True
                break
            self._h.update(piece)
            parts.append(piece)
            have += len(piece)
        self.buf = b"".join(parts)
        return 0

    def drain(self) -> None:
        """Hash the rest of the file (after damage stopped the walk)."""
        while not self.eof:
            piece = self._f.read(_READ)
            if not piece:
                self.eof = True
            self._h.update(piece)


def build_index(path: str | os.PathLike[str], step: int = STEP) -> OffsetIndex:
    """Index ``path`` in one pass (and hash it). :class:`NotSplittable` for compressed
    files, non-captures and pcapng files whose headers exceed :data:`MAX_PREFIX_BYTES`."""
    name = os.fspath(path)
    hasher = hashlib.sha256()
    with open(name, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        w = _Walker(f, hasher)
        w.need(0, 8)
        magic = w.buf[:4]
        if magic in PCAP_MAGICS:
            idx = _pcap(name, size, w, step)
        elif magic == _SHB_MAGIC:
            idx = _pcapng(name, size, w, step)
        else:
            raise NotSplittable(f"{name}: not an uncompressed pcap or pcapng file")
        w.drain()
    return replace(idx, sha256=hasher.hexdigest())


def _pcap(name: str, size: int, w: _Walker, step: int) -> OffsetIndex:
    w.need(0, GLOBAL_HEADER_LEN)
    if len(w.buf) < GLOBAL_HEADER_LEN:
        raise NotSplittable(f"{name}: truncated pcap header")
    order, unit, extra = PCAP_MAGICS[w.buf[:4]]
    header = w.buf[:GLOBAL_HEADER_LEN]
    unpack = struct.Struct(order + "IIII").unpack_from
    rec_len = 16 + extra
    offsets, packets, runmax = [GLOBAL_HEADER_LEN], [0], [_NO_TIME]
    pos, count, top, damaged = GLOBAL_HEADER_LEN, 0, _NO_TIME, False
    next_cp = GLOBAL_HEADER_LEN + step
    while True:
        if pos + rec_len > len(w.buf):
            pos = w.need(pos, rec_len)
            if pos + rec_len > len(w.buf):
                damaged = pos < len(w.buf)  # a torn record header
                break
        sec, frac, caplen, _orig = unpack(w.buf, pos)
        if caplen > MAX_PACKET_LEN:
            damaged = True
            break
        end = pos + rec_len + caplen
        if end > len(w.buf):
            pos = w.need(pos, rec_len + caplen)
            end = pos + rec_len + caplen
            if end > len(w.buf):
                damaged = True
                break
        ts = sec * 1_000_000_000 + frac * unit
        if ts > top:
            top = ts
        count += 1
        pos = end
        if w.base + pos >= next_cp:
            offsets.append(w.base + pos)
            packets.append(count)
            runmax.append(top)
            next_cp = w.base + pos + step
    return OffsetIndex(
        path=name, size=size, sha256="", format="pcap", offsets=tuple(offsets),
        packets=tuple(packets), runmax=tuple(runmax), section=(0,) * len(offsets),
        total_packets=count, damaged=damaged, header=header)


def _pcapng(name: str, size: int, w: _Walker, step: int) -> OffsetIndex:
    offsets, packets, runmax, section = [0], [0], [_NO_TIME], [0]
    sections: list[_Section] = []
    secrets: list[tuple[int, int, bytes]] = []
    ifaces: list[Interface] = []
    prefix_bytes = 0
    pos, count, top, last_ts, damaged = 0, 0, _NO_TIME, 0, False
    order = "<"
    next_cp = step
    while True:
        if pos + 12 > len(w.buf):
            pos = w.need(pos, 12)
            if pos + 12 > len(w.buf):
                damaged = pos < len(w.buf)
                break
        buf = w.buf
        at = w.base + pos
        shb = buf[pos : pos + 4] == _SHB_MAGIC
        if shb:
            new_order = section_byte_order(buf, pos)
            if new_order is None:
                if not sections:
                    raise NotSplittable(f"{name}: not a pcapng file (bad section header)")
                damaged = True
                break
            order = new_order
        btype, blen = struct.unpack_from(order + "II", buf, pos)
        if blen < 12 or blen & 3 or blen > MAX_BLOCK_LEN:
            damaged = True
            break
        if pos + blen > len(buf):
            pos = w.need(pos, blen)
            buf = w.buf
            if pos + blen > len(buf):
                damaged = True
                break
        end = pos + blen
        if struct.unpack_from(order + "I", buf, end - 4)[0] != blen:
            damaged = True
            break
        if shb:
            prefix_bytes += blen
            sections.append(_Section(bytes(buf[pos:end]), order))
            ifaces = []
        elif btype in (BLOCK_EPB, _BLOCK_PB):
            if blen >= 32:
                iface_id, hi, lo, caplen = struct.unpack_from(order + "IIII", buf, pos + 8)
                if btype == _BLOCK_PB:
                    iface_id = iface_id & 0xFFFF if order == "<" else iface_id >> 16
                if pos + 28 + caplen <= end - 4 and iface_id < len(ifaces):
                    iface = ifaces[iface_id]
                    last_ts = (((hi << 32 | lo) * iface.mul) >> iface.shift) // iface.div \
                        + iface.offset_ns
                    if last_ts > top:
                        top = last_ts
                    count += 1
        elif btype == BLOCK_SPB:
            if blen >= 16 and ifaces:
                count += 1  # (an SPB has no time of its own: the previous packet's)
        elif btype == BLOCK_IDB:
            if blen >= 20:
                ifaces.append(_parse_interface(buf, pos, end, order))
                sections[-1].idbs.append((at, bytes(buf[pos:end])))
                prefix_bytes += blen
        elif btype == BLOCK_DSB and blen >= 20:
            stype, slen = struct.unpack_from(order + "II", buf, pos + 8)
            if pos + 16 + slen <= end - 4:
                secrets.append((at, stype, bytes(buf[pos + 16 : pos + 16 + slen])))
                prefix_bytes += blen
        if prefix_bytes > MAX_PREFIX_BYTES:
            raise NotSplittable(f"{name}: over {MAX_PREFIX_BYTES} bytes of section headers, "
                                "interfaces and secrets")
        pos = end
        if w.base + pos >= next_cp:
            offsets.append(w.base + pos)
            packets.append(count)
            runmax.append(top)
            section.append(len(sections) - 1)
            next_cp = w.base + pos + step
    if not sections:
        raise NotSplittable(f"{name}: not a pcapng file (bad section header)")
    return OffsetIndex(
        path=name, size=size, sha256="", format="pcapng", offsets=tuple(offsets),
        packets=tuple(packets), runmax=tuple(runmax), section=tuple(section),
        total_packets=count, damaged=damaged,
        sections=tuple((s.shb, s.order, tuple(s.idbs)) for s in sections),
        secrets=tuple(secrets))


def plan_chunks(index: OffsetIndex, count: int, *, lookback_ns: int) -> list[ChunkPlan]:
    """Split into at most ``count`` chunks of about equal bytes, at checkpoints (one plan,
    the whole file, when it is too small to split); see :func:`plan_at`."""
    offs = index.offsets
    first, size = offs[0], index.size
    starts = [0]
    for k in range(1, max(1, count)):
        target = first + (size - first) * k // count
        i = bisect_right(offs, target) - 1
        if i > starts[-1]:
            starts.append(i)
    return plan_at(index, starts, lookback_ns=lookback_ns)


def plan_at(index: OffsetIndex, starts: list[int], *, lookback_ns: int) -> list[ChunkPlan]:
    """Chunks starting at the checkpoints numbered ``starts`` (increasing, the first 0).
    Each chunk reads from the checkpoint ``lookback_ns`` of capture time before its start
    (so that it knows the flows still open there) and owns the flows that begin inside it."""
    if not starts or starts[0] != 0 or any(b <= a for a, b in pairwise(starts)):
        raise ValueError("chunk starts must be increasing checkpoint numbers from 0")
    offs = index.offsets
    plans = []
    for n, i in enumerate(starts):
        j = starts[n + 1] if n + 1 < len(starts) else None
        horizon = index.runmax[i] - lookback_ns
        back = i if index.runmax[i] == _NO_TIME else max(
            0, min(i, bisect_right(index.runmax, horizon) - 1))
        end = offs[j] if j is not None else None
        pk = (index.packets[j] if j is not None else index.total_packets) - index.packets[i]
        plans.append(ChunkPlan(
            path=index.path, index=n, count=len(starts), prefix=index.prefix(back),
            opener=index.opener(), lookback=offs[back], start=offs[i], end=end,
            stops=offs[j + 1:] if j is not None else (), packets=pk))
    return plans

"""pcapng files: several sections (each with its own byte order), several interfaces per
section with their own link type, snap length and timestamp resolution (``if_tsresol``,
power of 10 or of 2) and offset (``if_tsoffset``); Enhanced, Simple and obsolete Packet
Blocks; Decryption Secrets Blocks handed to a callback; every other block skipped.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from typing import Final, NamedTuple

from ._source import CHUNK_SIZE, MAX_BLOCK_LEN, RawPacket, Source
from .anomalies import Anomaly
from .errors import CaptureFormatError
from .layers import FAST_PATH_LINKS

__all__ = [
    "BLOCK_DSB",
    "BLOCK_EPB",
    "BLOCK_IDB",
    "BLOCK_SHB",
    "BLOCK_SPB",
    "SECRETS_TLS_KEYLOG",
    "Interface",
    "iter_pcapng",
    "section_byte_order",
    "timestamp_converter",
]

BLOCK_SHB: Final = 0x0A0D0D0A
BLOCK_IDB: Final = 0x00000001
BLOCK_PB: Final = 0x00000002  # obsolete Packet Block
BLOCK_SPB: Final = 0x00000003
BLOCK_EPB: Final = 0x00000006
BLOCK_DSB: Final = 0x0000000A
SECRETS_TLS_KEYLOG: Final = 0x544C534B  # "TLSK": NSS key log lines

_OPT_TSRESOL: Final = 9
_OPT_TSOFFSET: Final = 14
_BOM_LE: Final = bytes.fromhex("4d3c2b1a")
_BOM_BE: Final = bytes.fromhex("1a2b3c4d")


class Interface(NamedTuple):
    linktype: int
    snaplen: int
    mul: int  # ns = ((units * mul) >> shift) // div + offset_ns
    shift: int
    div: int
    offset_ns: int
    simple: bool  # shift == 0 and div == 1: ns = units * mul + offset_ns


def timestamp_converter(tsresol: int) -> tuple[int, int, int]:
    """``(mul, shift, div)`` turning timestamp units into ns for an ``if_tsresol`` byte
    (MSB clear: 10^-n s, MSB set: 2^-n s); exact integer arithmetic, no floats."""
    n = tsresol & 0x7F
    if tsresol & 0x80:
        return 1_000_000_000, n, 1
    if n <= 9:
        return 10 ** (9 - n), 0, 1
    return 1, 0, 10 ** (n - 9)


def section_byte_order(buf: bytes, pos: int) -> str | None:
    """The byte order of the SHB at ``pos`` (``"<"``/``">"``), None if its BOM is invalid."""
    bom = buf[pos + 8 : pos + 12]
    return "<" if bom == _BOM_LE else ">" if bom == _BOM_BE else None


def _interface(buf: bytes, pos: int, end: int, order: str) -> Interface:
    linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", buf, pos + 8)
    resol, offset = 6, 0
    opt, opt_end = pos + 16, end - 4
    while opt + 4 <= opt_end:
        code, length = struct.unpack_from(order + "HH", buf, opt)
        value = opt + 4
        if code == 0 or value + length > opt_end:
            break
        if code == _OPT_TSRESOL and length >= 1:
            resol = buf[value]
        elif code == _OPT_TSOFFSET and length >= 8:
            (offset,) = struct.unpack_from(order + "q", buf, value)
        opt = value + ((length + 3) & ~3)
    mul, shift, div = timestamp_converter(resol)
    return Interface(linktype, snaplen, mul, shift, div, offset * 1_000_000_000,
                     shift == 0 and div == 1)


def _ts(iface: Interface, units: int) -> int:
    return ((units * iface.mul) >> iface.shift) // iface.div + iface.offset_ns


def _fast_interface(iface: Interface) -> tuple[int, int, int] | None:
    """What the C fast path needs of an interface it may take packets of: a link type it
    reads, times that are ``units * mul + offset_ns`` in 64 bits."""
    link = FAST_PATH_LINKS.get(iface.linktype)
    if link is None or not iface.simple or not -(1 << 63) <= iface.offset_ns < 1 << 63:
        return None
    return iface.mul, iface.offset_ns, link


def iter_pcapng(src: Source, buf: bytes) -> Iterator[RawPacket]:
    """Yield the packets of a pcapng file whose first bytes are ``buf`` (starting with an SHB)."""
    order = section_byte_order(buf, 0) if len(buf) >= 12 else None
    if order is None:
        raise CaptureFormatError(f"{src.name}: not a pcapng file (bad section header)")
    u32x2 = struct.Struct(order + "II").unpack_from
    u32 = struct.Struct(order + "I").unpack_from
    epb = struct.Struct(order + "IIIII").unpack_from
    ifaces: list[Interface] = []
    pos, n = 0, len(buf)
    count = src.count
    last_ts = 0
    # Enhanced Packet Blocks the flow table only books are consumed by the C fast path.
    fast = src.fast_path
    walk = fast.walk_pcapng if fast is not None else None
    swap = (order == "<") != (sys.byteorder == "little")
    while True:
        if walk is not None and ifaces:
            pos, walked_ts = walk(buf, pos, swap)
            if walked_ts is not None:
                last_ts = walked_ts  # (an SPB after them inherits it)
        if pos + 12 > n:
            if pos >= n:
                buf, pos = src.read(CHUNK_SIZE), 0
                n = len(buf)
                if not n:
                    return
                continue
            buf, pos = src.extend(buf[pos:], 12), 0
            n = len(buf)
            if n < 12:
                src.stop(Anomaly.TRUNCATED_FILE, "file ends inside a block header")
                return
        if buf[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":  # SHB: same bytes in either order
            new_order = section_byte_order(buf, pos)
            if new_order is None:
                src.stop(Anomaly.BAD_SECTION_HEADER, "section header with a bad byte-order magic")
                return
            if new_order != order:
                order = new_order
                u32x2 = struct.Struct(order + "II").unpack_from
                u32 = struct.Struct(order + "I").unpack_from
                epb = struct.Struct(order + "IIIII").unpack_from
                swap = (order == "<") != (sys.byteorder == "little")
            ifaces = []  # interface ids are per section
            if fast is not None:
                fast.set_interfaces([])
        btype, blen = u32x2(buf, pos)
        if blen < 12 or blen & 3 or blen > MAX_BLOCK_LEN:
            src.stop(Anomaly.BAD_BLOCK_LENGTH, f"block of type 0x{btype:08x} claims length {blen}")
            return
        end = pos + blen
        if end > n:
            buf, pos = src.extend(buf[pos:], blen), 0
            n = len(buf)
            end = blen
            if end > n:
                src.stop(Anomaly.TRUNCATED_FILE, f"file ends inside a block of type 0x{btype:08x}")
                return
        if u32(buf, end - 4)[0] != blen:
            src.stop(Anomaly.BLOCK_LENGTH_MISMATCH, "block trailer length differs from header")
            return
        if btype in (BLOCK_EPB, BLOCK_PB):
            if blen < 32:
                count(Anomaly.BAD_BLOCK)
                pos = end
                continue
            iface_id, hi, lo, caplen, origlen = epb(buf, pos + 8)
            if btype == BLOCK_PB:  # u16 interface id, then a u16 drop count
                iface_id = iface_id & 0xFFFF if order == "<" else iface_id >> 16
            start = pos + 28
            if start + caplen > end - 4:
                count(Anomaly.BAD_BLOCK)
            elif iface_id >= len(ifaces):
                count(Anomaly.UNKNOWN_INTERFACE)
            else:
                iface = ifaces[iface_id]
                units = (hi << 32) | lo
                last_ts = (units * iface.mul + iface.offset_ns if iface.simple
                           else _ts(iface, units))
                if caplen > origlen:
                    count(Anomaly.CAPLEN_EXCEEDS_ORIGLEN)
                pos = end
                yield last_ts, iface.linktype, caplen, origlen, buf[start : start + caplen]
                continue
        elif btype == BLOCK_SPB:
            if blen < 16:
                count(Anomaly.BAD_BLOCK)
            elif not ifaces:
                count(Anomaly.UNKNOWN_INTERFACE)
            else:
                iface = ifaces[0]
                (origlen,) = u32(buf, pos + 8)
                caplen = min(origlen, blen - 16)
                if iface.snaplen:
                    caplen = min(caplen, iface.snaplen)
                start = pos + 12
                pos = end
                # An SPB has no timestamp: it inherits the previous packet's.
                yield last_ts, iface.linktype, caplen, origlen, buf[start : start + caplen]
                continue
        elif btype == BLOCK_IDB:
            if blen < 20:
                count(Anomaly.BAD_BLOCK)
            else:
                ifaces.append(_interface(buf, pos, end, order))
                if fast is not None:
                    fast.set_interfaces([_fast_interface(i) for i in ifaces])
        elif btype == BLOCK_DSB:
            if blen < 20:
                count(Anomaly.BAD_BLOCK)
            else:
                stype, slen = u32x2(buf, pos + 8)
                if pos + 16 + slen > end - 4:
                    count(Anomaly.BAD_BLOCK)
                elif src.on_secrets is not None:
                    src.on_secrets(stype, buf[pos + 16 : pos + 16 + slen])
        pos = end

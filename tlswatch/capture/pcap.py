"""Classic libpcap files: both byte orders, microsecond and nanosecond magic, and the
"modified" (Kuznetsov) variant with 8 extra bytes per record header.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from typing import Final, NamedTuple

from ._source import CHUNK_SIZE, MAX_PACKET_LEN, RawPacket, Source
from .anomalies import Anomaly
from .errors import CaptureFormatError
from .layers import FAST_PATH_LINKS

__all__ = ["PCAP_MAGICS", "PcapHeader", "iter_pcap", "parse_pcap_header"]

GLOBAL_HEADER_LEN: Final = 24

# magic bytes as stored -> (struct byte order, ns per fractional unit, extra record bytes)
PCAP_MAGICS: Final[dict[bytes, tuple[str, int, int]]] = {
    bytes.fromhex("d4c3b2a1"): ("<", 1000, 0),
    bytes.fromhex("a1b2c3d4"): (">", 1000, 0),
    bytes.fromhex("4d3cb2a1"): ("<", 1, 0),
    bytes.fromhex("a1b23c4d"): (">", 1, 0),
    bytes.fromhex("34cdb2a1"): ("<", 1000, 8),
    bytes.fromhex("a1b2cd34"): (">", 1000, 8),
}


class PcapHeader(NamedTuple):
    byte_order: str  # "<" or ">"
    ns_per_unit: int  # 1000 (µs files) or 1 (ns files)
    extra: int  # extra bytes per record header (modified pcap)
    version: tuple[int, int]
    snaplen: int
    linktype: int


def parse_pcap_header(buf: bytes, name: str) -> PcapHeader:
    """Decode the 24-byte global header (``buf`` starts at the file's first byte)."""
    magic = buf[:4]
    if magic not in PCAP_MAGICS:
        raise CaptureFormatError(f"{name}: not a pcap file (magic 0x{magic.hex()})")
    if len(buf) < GLOBAL_HEADER_LEN:
        raise CaptureFormatError(f"{name}: truncated pcap header ({len(buf)} bytes)")
    order, unit, extra = PCAP_MAGICS[magic]
    major, minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(order + "HHiIII", buf, 4)
    # The upper bits of the link-type field carry FCS flags (libpcap's LT_LINKTYPE mask).
    return PcapHeader(order, unit, extra, (major, minor), snaplen, network & 0x03FFFFFF)


def iter_pcap(src: Source, buf: bytes) -> Iterator[RawPacket]:
    """Yield the records of a pcap file whose first bytes (at least the header) are ``buf``."""
    hdr = parse_pcap_header(buf, src.name)
    linktype, unit = hdr.linktype, hdr.ns_per_unit
    unpack = struct.Struct(hdr.byte_order + "IIII").unpack_from
    rec_len = 16 + hdr.extra
    pos, n = GLOBAL_HEADER_LEN, len(buf)
    read, extend, count = src.read, src.extend, src.count
    # Records the flow table only books are consumed by the C fast path, if any.
    link = FAST_PATH_LINKS.get(linktype, -1)
    walk = src.fast_path.walk_pcap if src.fast_path is not None and link >= 0 else None
    swap = (hdr.byte_order == "<") != (sys.byteorder == "little")
    extra = hdr.extra
    while True:
        if walk is not None:
            pos = walk(buf, pos, swap, unit, extra, link)
        if pos + rec_len > n:
            if pos >= n:
                buf, pos = read(CHUNK_SIZE), 0
                n = len(buf)
                if not n:
                    return
                continue
            buf, pos = extend(buf[pos:], rec_len), 0
            n = len(buf)
            if n < rec_len:
                src.stop(Anomaly.TRUNCATED_FILE, "file ends inside a record header")
                return
        sec, frac, caplen, origlen = unpack(buf, pos)
        if caplen > MAX_PACKET_LEN:
            src.stop(Anomaly.PACKET_TOO_LARGE, f"record claims {caplen} captured bytes")
            return
        start = pos + rec_len
        end = start + caplen
        if end > n:
            buf, pos = extend(buf[pos:], rec_len + caplen), 0
            n = len(buf)
            start, end = rec_len, rec_len + caplen
            if end > n:
                src.stop(Anomaly.TRUNCATED_FILE, "file ends inside a packet")
                return
        if caplen > origlen:
            count(Anomaly.CAPLEN_EXCEEDS_ORIGLEN)
        pos = end
        yield sec * 1_000_000_000 + frac * unit, linktype, caplen, origlen, buf[start:end]

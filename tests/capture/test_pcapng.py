"""pcapng reading: sections, interfaces, resolutions, block types, secrets, damage."""

from __future__ import annotations

import gzip
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import PcapNgWriter

from tlswatch.capture import (
    SECRETS_TLS_KEYLOG,
    Anomaly,
    CaptureFormatError,
    CaptureWarning,
    open_capture,
)
from tlswatch.capture.pcapng import timestamp_converter

from .capbuild import block, dsb, epb, eth, idb, pcapng_bytes, shb, spb

F1 = bytes(eth() / IP(dst="192.0.2.1") / TCP())
F2 = bytes(eth() / IP(dst="192.0.2.2") / TCP() / b"payload")
RAW = bytes(IP(dst="192.0.2.3") / TCP())


@dataclass
class Result:
    anomalies: Counter[str]
    partial: bool
    compression: str | None
    secrets: list[tuple[int, bytes]]


def read(path: Path, data: bytes) -> tuple[list[tuple[int, int, int, int, bytes]], Result]:
    path.write_bytes(data)
    secrets: list[tuple[int, bytes]] = []
    with open_capture(path, on_secrets=lambda t, d: secrets.append((t, d))) as cap:
        got = list(cap)
    return got, Result(cap.anomalies, cap.partial, cap.compression, secrets)


@pytest.mark.parametrize(
    ("tsresol", "units", "ns"),
    [
        (None, 1_700_000_000_123_456, 1_700_000_000_123_456_000),  # default µs
        (9, 1_700_000_000_123_456_789, 1_700_000_000_123_456_789),
        (3, 1_700_000_000_123, 1_700_000_000_123_000_000),
        (0, 1_700_000_000, 1_700_000_000_000_000_000),
        (12, 123_456_789_123_456_789, 123_456_789_123_456),  # picoseconds
        (0x80 | 20, 3 << 20 | 1 << 19, 3_500_000_000),  # 2^-20 s
        (0x80 | 0, 7, 7_000_000_000),  # 2^0
    ],
)
def test_timestamp_resolutions(tmp_path: Path, tsresol: int | None, units: int, ns: int) -> None:
    got, _ = read(tmp_path / "r", shb() + idb(1, tsresol=tsresol) + epb(0, units, F1))
    assert got == [(ns, 1, len(F1), len(F1), F1)]


def test_timestamp_converter_is_exact() -> None:
    mul, shift, div = timestamp_converter(0x80 | 30)
    assert ((3 << 30) * mul >> shift) // div == 3_000_000_000


def test_tsoffset(tmp_path: Path) -> None:
    got, _ = read(tmp_path / "o", shb() + idb(1, tsresol=9, tsoffset=100) + epb(0, 5, F1))
    assert got[0][0] == 100_000_000_005


def test_sections_byte_orders_and_interfaces(tmp_path: Path) -> None:
    data = (
        shb("<") + idb(1, "<", tsresol=6) + idb(101, "<", tsresol=9)
        + epb(1, 2_000_000_000, RAW, "<") + epb(0, 1_000_000, F1, "<")
        # a second section, big-endian, with its own interfaces (ids restart at 0)
        + shb(">") + idb(101, ">", tsresol=3) + idb(1, ">", tsresol=0x80 | 10)
        + epb(0, 3_000, RAW, ">") + epb(1, 4 << 10, F2, ">")
        + shb("<") + idb(1, "<") + epb(0, 5_000_000, F1, "<")
    )
    got, cap = read(tmp_path / "m", data)
    assert [(g[0], g[1], g[4]) for g in got] == [
        (2_000_000_000, 101, RAW), (1_000_000_000, 1, F1), (3_000_000_000, 101, RAW),
        (4_000_000_000, 1, F2), (5_000_000_000, 1, F1)]
    assert not cap.anomalies


def test_simple_and_obsolete_packet_blocks(tmp_path: Path) -> None:
    pb_body = struct.pack("<HHIIII", 0, 0, 0, 2_000_000, len(F2), len(F2)) + F2 + b"\x00"
    data = (shb() + idb(1, snaplen=40) + epb(0, 1_000_000, F1) + spb(F2)
            + block(2, pb_body))
    got, _ = read(tmp_path / "s", data)
    assert got[0][4] == F1
    # SPB: no timestamp of its own (inherits), captured length limited by the snaplen
    assert got[1] == (1_000_000_000, 1, 40, len(F2), F2[:40])
    assert got[2] == (2_000_000_000, 1, len(F2), len(F2), F2)


def test_obsolete_packet_block_big_endian(tmp_path: Path) -> None:
    body = struct.pack(">HHIIII", 1, 7, 0, 3, len(F1), len(F1)) + F1 + b"\x00" * (-len(F1) % 4)
    got, _ = read(tmp_path / "b", shb(">") + idb(1, ">") + idb(101, ">") + block(2, body, ">"))
    assert got == [(3000, 101, len(F1), len(F1), F1)]


def test_secrets_and_unknown_blocks(tmp_path: Path) -> None:
    keylog = b"CLIENT_RANDOM " + b"ab" * 32 + b" " + b"cd" * 48 + b"\n"
    data = (shb() + block(0xBAD, b"custom block") + block(4, b"\x00" * 8) + idb(1)
            + dsb(SECRETS_TLS_KEYLOG, keylog) + block(5, b"\x00" * 16) + epb(0, 1, F1)
            + block(0x12345678, b"\x00" * 5000))
    got, cap = read(tmp_path / "k", data)
    assert [g[4] for g in got] == [F1]
    assert cap.secrets == [(SECRETS_TLS_KEYLOG, keylog)]
    assert not cap.anomalies


def test_scapy_pcapng_writer(tmp_path: Path) -> None:
    pkts = [eth() / IP() / TCP(), eth() / IP() / TCP() / b"abc"]
    pkts[0].time, pkts[1].time = 10, 10.5
    w = PcapNgWriter(str(tmp_path / "s.pcapng"))
    for p in pkts:
        w.write(p)
    w.close()
    with open_capture(tmp_path / "s.pcapng") as cap:
        got = list(cap)
    assert cap.format == "pcapng"
    assert [(g[0], g[4]) for g in got] == [(10_000_000_000, bytes(pkts[0])),
                                           (10_500_000_000, bytes(pkts[1]))]


def test_gzip_pcapng(tmp_path: Path) -> None:
    got, cap = read(tmp_path / "g", gzip.compress(pcapng_bytes([(1000, F1), (2000, F2)])))
    assert [g[4] for g in got] == [F1, F2] and cap.compression == "gzip"


def test_unknown_interface_is_counted_and_skipped(tmp_path: Path) -> None:
    got, cap = read(tmp_path / "u", shb() + idb(1) + epb(3, 1, F1) + epb(0, 2, F2) + spb(F1)[:0])
    assert [g[4] for g in got] == [F2]
    assert cap.anomalies == {Anomaly.UNKNOWN_INTERFACE: 1}


def test_packet_block_before_any_interface(tmp_path: Path) -> None:
    got, cap = read(tmp_path / "n", shb() + spb(F1) + idb(1) + epb(0, 1, F2))
    assert [g[4] for g in got] == [F2]
    assert cap.anomalies == {Anomaly.UNKNOWN_INTERFACE: 1}


def test_epb_caplen_beyond_block_is_bad_block(tmp_path: Path) -> None:
    bad = bytearray(epb(0, 1, F1))
    struct.pack_into("<I", bad, 20, 5000)
    got, cap = read(tmp_path / "c", shb() + idb(1) + bytes(bad) + epb(0, 2, F2))
    assert [g[4] for g in got] == [F2]
    assert cap.anomalies == {Anomaly.BAD_BLOCK: 1}


@pytest.mark.parametrize(
    ("claim", "anomaly"),
    [
        (0xFFFFFFF0, Anomaly.BAD_BLOCK_LENGTH),  # ~4 GB: never allocated
        (8, Anomaly.BAD_BLOCK_LENGTH),
        (1001, Anomaly.BAD_BLOCK_LENGTH),
        (200 << 20, Anomaly.TRUNCATED_FILE),  # under the cap, but the file ends first
    ],
)
def test_bad_block_lengths_stop_with_partial_results(tmp_path: Path, claim: int,
                                                     anomaly: Anomaly) -> None:
    bad = struct.pack("<II", 6, claim) + b"\x00" * 64
    with pytest.warns(CaptureWarning):
        got, cap = read(tmp_path / "a", shb() + idb(1) + epb(0, 1, F1) + bad)
    assert [g[4] for g in got] == [F1]
    assert cap.anomalies == {anomaly: 1}
    assert cap.partial


def test_trailer_mismatch(tmp_path: Path) -> None:
    bad = bytearray(epb(0, 2, F2))
    struct.pack_into("<I", bad, len(bad) - 4, 12)
    with pytest.warns(CaptureWarning):
        got, cap = read(tmp_path / "t", shb() + idb(1) + epb(0, 1, F1) + bytes(bad))
    assert [g[4] for g in got] == [F1]
    assert cap.anomalies == {Anomaly.BLOCK_LENGTH_MISMATCH: 1}


def test_truncated_pcapng(tmp_path: Path) -> None:
    data = shb() + idb(1) + epb(0, 1, F1) + epb(0, 2, F2)
    with pytest.warns(CaptureWarning):
        got, cap = read(tmp_path / "t", data[:-10])
    assert [g[4] for g in got] == [F1]
    assert cap.anomalies == {Anomaly.TRUNCATED_FILE: 1}


def test_second_section_with_bad_byte_order_magic(tmp_path: Path) -> None:
    bad = bytearray(shb())
    bad[8:12] = b"\x00\x00\x00\x00"
    with pytest.warns(CaptureWarning):
        got, cap = read(tmp_path / "s", shb() + idb(1) + epb(0, 1, F1) + bytes(bad))
    assert len(got) == 1
    assert cap.anomalies == {Anomaly.BAD_SECTION_HEADER: 1}


def test_first_section_header_invalid_is_an_error(tmp_path: Path) -> None:
    bad = bytearray(shb())
    bad[8:12] = b"abcd"
    (tmp_path / "x").write_bytes(bytes(bad))
    with pytest.raises(CaptureFormatError, match="not a pcapng file"):
        open_capture(tmp_path / "x")


@pytest.mark.parametrize("chunk", [1, 5, 12, 13, 64, 333])
@pytest.mark.parametrize("kind", ["pcap", "pcapng", "gzip"])
def test_chunk_boundaries_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int,
                                   kind: str) -> None:
    import tlswatch.capture._source as source_mod
    import tlswatch.capture.open as open_mod
    import tlswatch.capture.pcap as pcap_mod
    import tlswatch.capture.pcapng as pcapng_mod

    from .capbuild import pcap_bytes

    frames = [(1_000_000_000 * i, f) for i, f in enumerate([F1, F2, RAW[:7], F2, F1] * 3)]
    if kind == "pcap":
        data = pcap_bytes(frames)
    else:
        data = shb() + idb(1) + dsb(SECRETS_TLS_KEYLOG, b"k" * 37) + b"".join(
            epb(0, ts // 1000, f) for ts, f in frames) + shb(">") + idb(1, ">") + epb(
            0, 1, F1, ">")
        frames.append((1000, F1))
        if kind == "gzip":
            data = gzip.compress(data)
    for mod in (source_mod, open_mod, pcap_mod, pcapng_mod):
        monkeypatch.setattr(mod, "CHUNK_SIZE", chunk)
    got, cap = read(tmp_path / "c", data)
    assert [(g[0], g[4]) for g in got] == frames
    assert not cap.anomalies and not cap.partial

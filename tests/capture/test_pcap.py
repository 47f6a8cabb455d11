"""pcap reading: byte orders, resolutions, compression, damage, non-captures."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import wrpcap

from tlswatch.capture import Anomaly, CaptureFormatError, CaptureWarning, open_capture

from .capbuild import eth, pcap_bytes

FRAMES = [
    (1_700_000_000_123_456_789, bytes(eth() / IP(dst="192.0.2.1") / TCP())),
    (1_700_000_001_000_000_001, bytes(eth() / IP(dst="192.0.2.2") / TCP() / b"hello")),
]


def read_all(path: Path) -> list[tuple[int, int, int, int, bytes]]:
    with open_capture(path) as cap:
        return list(cap)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("resolution", ["us", "ns"])
def test_byte_orders_and_resolutions(tmp_path: Path, order: str, resolution: str) -> None:
    path = tmp_path / "x.cap"  # the extension means nothing
    path.write_bytes(pcap_bytes(FRAMES, order=order, resolution=resolution))
    got = read_all(path)
    assert [g[4] for g in got] == [f for _, f in FRAMES]
    want_ts = [t // 1000 * 1000 if resolution == "us" else t for t, _ in FRAMES]
    assert [g[0] for g in got] == want_ts
    assert all(isinstance(g[0], int) for g in got)
    assert [(g[1], g[2], g[3]) for g in got] == [(1, len(f), len(f)) for _, f in FRAMES]


def test_scapy_written_file(tmp_path: Path) -> None:
    pkts = [eth() / IP() / TCP(), eth() / IP() / TCP() / (b"x" * 100)]
    pkts[0].time, pkts[1].time = 1.5, 2.25
    wrpcap(str(tmp_path / "s.pcap"), pkts)
    got = read_all(tmp_path / "s.pcap")
    assert [g[0] for g in got] == [1_500_000_000, 2_250_000_000]
    assert [g[4] for g in got] == [bytes(p) for p in pkts]


def test_modified_pcap_records(tmp_path: Path) -> None:
    frame = FRAMES[0][1]
    head = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack("<IIII", 10, 5, len(frame), len(frame)) + b"\x00" * 8 + frame
    (tmp_path / "m.pcap").write_bytes(head + rec + rec)
    got = read_all(tmp_path / "m.pcap")
    assert [g[4] for g in got] == [frame, frame] and got[0][0] == 10_000_005_000


def test_linktype_fcs_bits_are_masked(tmp_path: Path) -> None:
    data = bytearray(pcap_bytes(FRAMES[:1]))
    struct.pack_into("<I", data, 20, 0x10000000 | 0x04000000 | 1)  # FCS flags + Ethernet
    (tmp_path / "f.pcap").write_bytes(bytes(data))
    assert read_all(tmp_path / "f.pcap")[0][1] == 1


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, bz2.compress])
def test_compressed(tmp_path: Path, compress: object) -> None:
    path = tmp_path / "c.pcap"
    path.write_bytes(compress(pcap_bytes(FRAMES)))  # type: ignore[operator]
    with open_capture(path) as cap:
        assert cap.compression is not None
        assert [g[4] for g in cap] == [f for _, f in FRAMES]


def test_truncated_gzip_is_partial(tmp_path: Path) -> None:
    many = FRAMES * 200
    blob = gzip.compress(pcap_bytes(many))
    path = tmp_path / "t.pcap.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.warns(CaptureWarning), open_capture(path) as cap:
        got = list(cap)
    assert 0 < len(got) < len(many)
    assert cap.partial and cap.warnings and sum(cap.anomalies.values()) == 1


def test_file_object(tmp_path: Path) -> None:
    with open_capture(io.BytesIO(pcap_bytes(FRAMES))) as cap:
        assert len(list(cap)) == 2


@pytest.mark.parametrize("cut", [24 + 5, 24 + 16 + 10, None])
def test_truncated_file_keeps_what_was_read(tmp_path: Path, cut: int | None) -> None:
    data = pcap_bytes(FRAMES)
    if cut is None:
        cut = len(data) - 3  # inside the second packet
    path = tmp_path / "t.pcap"
    path.write_bytes(data[:cut])
    with pytest.warns(CaptureWarning, match="results are partial"), open_capture(path) as cap:
        got = list(cap)
    assert len(got) == (0 if cut < 24 + 16 + len(FRAMES[0][1]) else 1)
    assert cap.anomalies == {Anomaly.TRUNCATED_FILE: 1}
    assert cap.partial and len(cap.warnings) == 1 and str(path) in cap.warnings[0]


def test_absurd_caplen_is_not_allocated(tmp_path: Path) -> None:
    data = pcap_bytes(FRAMES[:1]) + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 0xFFFFFFF0)
    (tmp_path / "a.pcap").write_bytes(data + b"x" * 100)
    with pytest.warns(CaptureWarning), open_capture(tmp_path / "a.pcap") as cap:
        assert len(list(cap)) == 1
    assert cap.anomalies == {Anomaly.PACKET_TOO_LARGE: 1}


def test_caplen_larger_than_origlen_is_counted(tmp_path: Path) -> None:
    data = bytearray(pcap_bytes(FRAMES[:1]))
    struct.pack_into("<I", data, 24 + 12, 10)  # origlen
    (tmp_path / "o.pcap").write_bytes(bytes(data))
    with open_capture(tmp_path / "o.pcap") as cap:
        assert len(list(cap)) == 1
    assert cap.anomalies == {Anomaly.CAPLEN_EXCEEDS_ORIGLEN: 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "not a pcap or pcapng file (magic 0x47455420)"),
        (b"", "not a pcap or pcapng file (file too short)"),
        (gzip.compress(b"hello world"), "not a pcap or pcapng file (magic 0x68656c6c inside gzip"),
        (b"\x28\xb5\x2f\xfd" + b"\x00" * 20, "zstd-compressed"),
        (bytes.fromhex("d4c3b2a1") + b"\x02\x00", "truncated pcap header"),
    ],
)
def test_not_a_capture_is_one_line_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "notes.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureFormatError) as exc:
        open_capture(path)
    text = str(exc.value)
    assert "\n" not in text and text.startswith(str(path)) and message in text

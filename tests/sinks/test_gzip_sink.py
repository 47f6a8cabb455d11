"""``.jsonl.gz``: gzip members per batch, readable by every gzip reader, torn member repaired."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
from sink_samples import record

from tlswatch.sinks.base import SinkError, open_sink, record_dict
from tlswatch.sinks.gzip_sink import MEMBER_HEADER, GzipJsonlSink, repair_gzip_tail
from tlswatch.sinks.readers import read_records


def _write(path: Path, n: int, batch: int, start: int = 0) -> None:
    with open_sink(path, append=True, batch=batch) as sink:
        for i in range(start, start + n):
            sink.write(record(i))


def _ids(data: bytes) -> list[str]:
    return [json.loads(line)["id"] for line in data.splitlines()]


def test_one_member_per_batch_and_any_gzip_reader_reads_it(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl.gz"
    _write(out, 10, batch=4)
    raw = out.read_bytes()
    assert raw.count(MEMBER_HEADER) == 3  # 4 + 4 + 2
    plain = gzip.decompress(raw)
    assert _ids(plain) == [f"m{i:06d}" for i in range(10)]
    assert plain == b"".join(
        json.dumps(record_dict(record(i)), separators=(",", ":")).encode() + b"\n"
        for i in range(10))
    zcat = shutil.which("gzip")
    if zcat:
        got = subprocess.run([zcat, "-dc", str(out)], capture_output=True, check=True).stdout
        assert got == plain


def test_a_torn_member_is_cut_and_its_whole_lines_kept(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl.gz"
    _write(out, 4, batch=4)
    good = out.stat().st_size
    _write(out, 4, batch=4, start=4)
    data = out.read_bytes()
    second = gzip.decompress(data[good:])
    # Cut the second member where its first two lines are complete in the compressed stream.
    for cut in range(good + 11, len(data)):
        try:
            got = zlib.decompressobj(31).decompress(data[good:cut])
        except zlib.error:  # a partial header
            continue
        if got.count(b"\n") >= 2:
            break
    torn = tmp_path / "t.jsonl.gz"
    torn.write_bytes(data[:cut])
    bad: list[str] = []
    seen = [r["id"] for r in read_records(torn, on_bad=bad.append)]
    assert seen[:6] == [f"m{i:06d}" for i in range(6)]
    assert any("torn gzip member" in b for b in bad)
    cut_bytes = repair_gzip_tail(torn)
    assert cut_bytes > 0
    fixed = gzip.decompress(torn.read_bytes())  # a valid gzip file again
    assert _ids(fixed) == seen
    assert second.startswith(b"".join(fixed.splitlines(keepends=True)[4:]))
    assert repair_gzip_tail(torn) == 0  # nothing left to repair


def test_appending_to_a_gzip_file_from_another_tool(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl.gz"
    line = json.dumps(record_dict(record(0)), separators=(",", ":")).encode() + b"\n"
    with open(out, "wb") as raw, gzip.GzipFile("orig.jsonl", "wb", fileobj=raw,
                                               mtime=12345) as f:
        f.write(line)
    _write(out, 2, batch=8, start=1)
    assert _ids(gzip.decompress(out.read_bytes())) == ["m000000", "m000001", "m000002"]


def test_damage_is_never_cut_and_readers_skip_to_the_next_member(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl.gz"
    _write(out, 12, batch=4)
    data = out.read_bytes()
    starts = [i for i in range(len(data)) if data.startswith(MEMBER_HEADER, i)]
    assert len(starts) == 3
    # Damage inside the last member (same length: not a torn write): appending refuses.
    last = bytearray(data)
    last[starts[2] + 40] ^= 0xFF
    out.write_bytes(bytes(last))
    with pytest.raises(SinkError, match="corrupt gzip data"):
        GzipJsonlSink(out)
    assert out.read_bytes() == bytes(last)
    # Damage in the middle member: the reader reports it and reads the members after it.
    middle = bytearray(data)
    middle[starts[1] + 40] ^= 0xFF
    out.write_bytes(bytes(middle))
    bad: list[str] = []
    ids = [r["id"] for r in read_records(out, on_bad=bad.append)]
    assert ids[:4] == [f"m{i:06d}" for i in range(4)]
    assert ids[-4:] == [f"m{i:06d}" for i in range(8, 12)]
    assert any("corrupt gzip data" in b and "next member" in b for b in bad)

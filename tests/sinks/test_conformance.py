"""Every sink passes the same suite: round trip, append, checkpoints, kill -9 mid-write.

Sinks that keep whole records (JSONL, .jsonl.gz, SQLite) must give back exactly the record
dicts written; flat sinks (CSV, Parquet) exactly their flat projection.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import require_module
from sink_samples import record, run_record, stream

from tlswatch.model import InputRecord, Record, RunRecord
from tlswatch.sinks.base import (
    FLAT_FORMATS,
    RecordError,
    Sink,
    SinkError,
    open_sink,
    record_dict,
    sink_format,
)
from tlswatch.sinks.flat import flatten
from tlswatch.sinks.readers import completed_ids, output_state, read_records

SUFFIXES = (".jsonl", ".jsonl.gz", ".sqlite", ".csv", ".parquet")
HERE = Path(__file__).resolve().parent

require_module("pyarrow")


def _expected(path: Path, items: Sequence[Record | RunRecord | InputRecord]
              ) -> list[dict[str, Any]]:
    if sink_format(path) in FLAT_FORMATS:
        return [dict(flatten(x)) for x in items]
    return [record_dict(x) for x in items]


def _read(path: Path) -> list[dict[str, Any]]:
    bad: list[str] = []
    rows = [dict(r) for r in read_records(path, on_bad=bad.append)]
    assert bad == []
    return rows


@pytest.fixture(params=SUFFIXES)
def out(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return tmp_path / f"out{request.param}"


def test_round_trip(out: Path) -> None:
    items = stream(0, 40)
    with open_sink(out, append=False, batch=7) as sink:
        assert isinstance(sink, Sink)
        for x in items:
            sink.write(x)
    assert _read(out) == _expected(out, items)


def test_round_trip_of_json_dicts(out: Path) -> None:
    # What readers give back can be written again (convert): same result as the records.
    items = stream(0, 6)
    with open_sink(out, append=False) as sink:
        for x in items:
            sink.write(record_dict(x))
    assert _read(out) == _expected(out, items)


def test_append_keeps_earlier_rows(out: Path) -> None:
    first, second = stream(0, 10, run=1), stream(10, 10, run=2)
    with open_sink(out, append=False, batch=3) as sink:
        for x in first:
            sink.write(x)
    with open_sink(out, append=True, batch=3) as sink:
        for x in second:
            sink.write(x)
    assert _read(out) == _expected(out, first + second)
    state = output_state(out)
    assert (state.runs, state.records) == (4, 20)
    assert state.inputs_done == {f"{1:064x}": "captures/+1+2.pcap"}  # input 2 is partial
    assert completed_ids(out) == {f"m{i:06d}" for i in range(20)}


def test_a_new_output_refuses_existing_data(out: Path) -> None:
    with open_sink(out, append=False) as sink:
        sink.write(record(0))
    with pytest.raises(SinkError, match="exists and is not empty"):
        open_sink(out, append=False)
    assert len(_read(out)) == 1


def test_checkpoint_makes_writes_visible_to_readers(out: Path) -> None:
    sink = open_sink(out, append=False, batch=1000)
    try:
        for i in range(5):
            sink.write(record(i))
        sink.checkpoint()
        assert [r["id"] for r in _read(out)] == [f"m{i:06d}" for i in range(5)]
    finally:
        sink.close()
    sink.close()  # closing twice is harmless


def test_flat_rows_go_to_flat_sinks_only(out: Path, tmp_path: Path) -> None:
    flat_src = tmp_path / "src.csv"
    with open_sink(flat_src, append=False) as sink:
        sink.write(record(1))
    row = next(iter(read_records(flat_src)))
    with open_sink(out, append=False) as sink:
        if sink_format(out) in FLAT_FORMATS:
            sink.write(row)
        else:
            with pytest.raises(RecordError, match="only a projection"):
                sink.write(row)
            sink.write(record(1))
    assert _read(out) == _expected(out, [record(1)])


_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from sink_samples import record, run_record
from tlswatch.sinks.base import open_sink
from tlswatch.sinks.parquet_sink import ParquetSink
out, start = Path(sys.argv[1]), int(sys.argv[2])
# Small parts, so a kill often lands while a part file is being written.
sink = (ParquetSink(out, batch=5, part_rows=40) if out.suffix == ".parquet"
        else open_sink(out, append=True, batch=5))
sink.write(run_record(start))
sink.checkpoint()
print("ready", flush=True)
i = start
while True:
    sink.write(record(i))
    i += 1
    if i % 13 == 0:
        sink.checkpoint()
"""


def _killed_writer(out: Path, start: int, delay: float) -> None:
    p = subprocess.Popen([sys.executable, "-c", _CHILD, str(out), str(start), str(HERE)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    # time.sleep would do; a busy wait keeps the kill from aligning with a timer tick.
    deadline = delay + float(os.times().elapsed)
    while os.times().elapsed < deadline:
        pass
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdout.close()


def _check_contiguous(out: Path, runs: int) -> int:
    rows = _read(out)
    measurements = [r for r in rows if r.get("kind") != "run"]
    n = len(measurements)
    assert measurements == _expected(out, [record(i) for i in range(n)])
    assert sum(1 for r in rows if r.get("kind") == "run") == runs
    return n


def test_killed_writer_leaves_a_readable_file(out: Path) -> None:
    rng = random.Random(7)
    start = 0
    for round_ in range(2):
        _killed_writer(out, start, rng.uniform(0.03, 0.15))
        # Readable as it is, before any repair (a torn tail is reported, never fatal):
        seen = [r for r in read_records(out, on_bad=lambda _m: None) if r.get("kind") != "run"]
        assert [r["id"] for r in seen] == [f"m{i:06d}" for i in range(len(seen))]
        with open_sink(out, append=True):
            pass  # reopening cuts a torn tail / turns staged rows into a part
        start = _check_contiguous(out, runs=round_ + 1)
        assert completed_ids(out) == {f"m{i:06d}" for i in range(start)}
    assert start > 0


def test_open_sink_chooses_by_extension(tmp_path: Path) -> None:
    assert [sink_format(tmp_path / f"a{s}") for s in SUFFIXES] == \
        ["jsonl", "jsonl.gz", "sqlite", "csv", "parquet"]
    assert sink_format("A.DB") == "sqlite"
    for bad in ("a.json", "a.txt", "a.gz", ".jsonl", "a.csv.gz"):
        with pytest.raises(SinkError, match="unknown output format"):
            open_sink(tmp_path / bad, append=False)


def test_unwritable_output_is_a_one_line_error(tmp_path: Path) -> None:
    for s in SUFFIXES:
        with pytest.raises(SinkError, match="cannot write") as e:
            open_sink(tmp_path / "no" / "such" / f"dir{s}", append=True)
        assert "\n" not in str(e.value)


def test_unreadable_inputs_are_one_line_errors(tmp_path: Path) -> None:
    for s in SUFFIXES:
        with pytest.raises(SinkError, match="no such file"):
            read_records(tmp_path / f"missing{s}")
    junk = {".jsonl": b"\x00\xff garbage\n", ".jsonl.gz": b"not gzip at all",
            ".sqlite": b"not a database, just text" * 100, ".csv": b"a,b\n1,2\n"}
    for s, data in junk.items():
        p = tmp_path / f"junk{s}"
        p.write_bytes(data)
        with pytest.raises(SinkError) as e:
            list(read_records(p))
        assert "\n" not in str(e.value) and str(p) in str(e.value)
    pq = tmp_path / "junk.parquet"
    pq.write_bytes(b"PAR1 but not really")
    with pytest.raises(SinkError, match="not a readable Parquet file"):
        list(read_records(pq))


def test_run_records_survive_every_sink(out: Path) -> None:
    items = [run_record(1), run_record(1, ended=True)]
    with open_sink(out, append=False) as sink:
        for x in items:
            sink.write(x)
    assert _read(out) == _expected(out, items)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".csv"])
def test_every_prefix_of_an_append_only_file_is_readable_and_appendable(
        tmp_path: Path, suffix: str) -> None:
    # A killed writer leaves a prefix of what it meant to write: try many cut points,
    # including inside a gzip member header and inside a CSV line.
    full = tmp_path / f"full{suffix}"
    items = stream(0, 30)
    with open_sink(full, append=False, batch=4) as sink:
        for x in items:
            sink.write(x)
    data = full.read_bytes()
    rng = random.Random(suffix)
    cuts = sorted({*rng.sample(range(1, len(data)), 25), 1, 5, 11, len(data) - 1})
    expected = _expected(full, items)
    for cut in cuts:
        out = tmp_path / f"cut{cut}{suffix}"
        out.write_bytes(data[:cut])
        got = [dict(r) for r in read_records(out, on_bad=lambda _m: None)] if cut > 20 else []
        assert got == expected[: len(got)]  # a prefix, nothing garbled
        with open_sink(out, append=True) as sink:
            sink.write(record(99))
        again = _read(out)
        assert again[:-1] == expected[: len(again) - 1]
        assert again[-1] == _expected(out, [record(99)])[0]
        if cut > 20:
            assert len(again) - 1 == len(got)  # only the torn last record is lost


def test_a_csv_row_cut_inside_its_last_cell_is_not_read(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    # The last column is control_sni_leaf_sha256: a record whose last cell is not empty.
    rec = record_dict(record(0))
    rec["control_sni"] = {"kind": "sni", "outcome": "cert/valid", "chain": [{"sha256": "ab" * 32}]}
    with open_sink(out, append=False) as sink:
        sink.write(rec)
    data = out.read_bytes()
    assert data.endswith(b"abab\r\n")
    out.write_bytes(data[:-4])  # same number of fields, last cell cut short
    bad: list[str] = []
    assert list(read_records(out, on_bad=bad.append)) == []
    assert bad and "torn" in bad[0]

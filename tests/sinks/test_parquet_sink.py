"""Parquet: part files other tools read, staged rows recovered after a kill, typed schema."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import require_module
from sink_samples import record, run_record

from tlswatch.sinks.base import SinkError, open_sink
from tlswatch.sinks.flat import flatten
from tlswatch.sinks.parquet_sink import ParquetSink, recover
from tlswatch.sinks.readers import read_records

pa = require_module("pyarrow")
pq = require_module("pyarrow.parquet")


def _ids(path: Path) -> list[str | None]:
    return [r["id"] for r in read_records(path) if r["kind"] == "measurement"]


def test_parts_roll_and_other_tools_read_the_directory(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    with ParquetSink(out, part_rows=10) as sink:
        sink.write(run_record(1))
        for i in range(25):
            sink.write(record(i))
    assert sorted(p.name for p in out.iterdir()) == [
        "part-0000.parquet", "part-0001.parquet", "part-0002.parquet"]
    table = pq.read_table(out)
    assert table.num_rows == 26
    assert table.schema.field("time").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("confidence").type == pa.float64()
    assert table.schema.field("trusted").type == pa.bool_()
    assert table.column("id").to_pylist()[1:4] == ["m000000", "m000001", "m000002"]
    assert [dict(r) for r in read_records(out)] == \
        [dict(flatten(run_record(1)))] + [dict(flatten(record(i))) for i in range(25)]


def test_staged_rows_are_durable_but_hidden_until_a_part_is_written(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    sink = ParquetSink(out, batch=1, part_rows=3)
    for i in range(5):
        sink.write(record(i))
    sink.checkpoint()
    assert sorted(p.name for p in out.iterdir()) == [".staging-0001.jsonl", "part-0000.parquet"]
    assert pq.read_table(out).num_rows == 3  # other tools: complete parts only
    assert _ids(out) == [f"m{i:06d}" for i in range(5)]  # our reader: staged rows too
    del sink  # what a kill leaves: the staged rows; reopening turns them into a part
    reopened = open_sink(out, append=True)
    assert isinstance(reopened, ParquetSink) and reopened.recovered_rows == 2
    reopened.close()
    assert sorted(p.name for p in out.iterdir()) == ["part-0000.parquet", "part-0001.parquet"]
    assert pq.read_table(out).num_rows == 5
    assert _ids(out) == [f"m{i:06d}" for i in range(5)]


def test_every_state_a_kill_can_leave_is_recovered(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    with ParquetSink(out, part_rows=3) as sink:
        for i in range(6):
            sink.write(record(i))
    staged = ParquetSink(out)
    staged.write(record(6))
    staged.write(record(7))
    staged.checkpoint()
    staging = out / ".staging-0002.jsonl"
    assert staging.exists()
    del staged  # killed: two rows staged, then a torn third one
    with open(staging, "ab") as f:
        f.write(b'{"kind": "measurement", "id": "torn')
    # Killed after part 1 was renamed into place but before its staging file was removed:
    (out / ".staging-0001.jsonl").write_text("{}\n")
    # Killed while writing part 2 (a temporary file):
    (out / ".part-0002.parquet.tmp").write_bytes(b"PAR1 half")
    assert recover(out) == 2
    assert sorted(p.name for p in out.iterdir()) == [
        "part-0000.parquet", "part-0001.parquet", "part-0002.parquet"]
    assert _ids(out) == [f"m{i:06d}" for i in range(8)]


def test_checkpoint_writes_a_part_once_rows_are_old(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.parquet"
    clock = [1000.0]
    monkeypatch.setattr("tlswatch.sinks.parquet_sink.time.monotonic", lambda: clock[0])
    sink = ParquetSink(out, part_seconds=60)
    sink.write(record(0))
    sink.checkpoint()
    assert not list(out.glob("part-*"))
    clock[0] += 61
    sink.write(record(1))
    sink.checkpoint()
    assert [p.name for p in out.glob("part-*")] == ["part-0000.parquet"]
    sink.close()
    assert _ids(out) == ["m000000", "m000001"]


def test_a_parquet_file_is_read_but_never_appended_to(tmp_path: Path) -> None:
    single = tmp_path / "single.parquet"
    with ParquetSink(tmp_path / "d.parquet") as sink:
        sink.write(record(3))
    os.replace(tmp_path / "d.parquet" / "part-0000.parquet", single)
    assert _ids(single) == ["m000003"]
    with pytest.raises(SinkError, match="is a file"):
        open_sink(single, append=True)


def test_without_pyarrow_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, *a: Any) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real(name, *a)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(SinkError, match=r"pip install 'tlswatch\[parquet\]'"):
        open_sink(tmp_path / "x.parquet", append=False)
    assert not (tmp_path / "x.parquet").exists()

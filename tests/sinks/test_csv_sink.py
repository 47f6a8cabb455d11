"""CSV: formulas neutralised, one physical line per row, header once, older headers kept."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sink_samples import HOSTILE, record, run_record

from tlswatch.sinks.base import SinkError, open_sink
from tlswatch.sinks.csv_sink import FORMULA_TRIGGERS, decode_cell, encode_cell
from tlswatch.sinks.flat import COLUMN_NAMES, flatten
from tlswatch.sinks.readers import read_records


def _raw_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def test_no_cell_a_spreadsheet_would_run_as_a_formula(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    with open_sink(out, append=False) as sink:
        for i in range(len(HOSTILE)):
            sink.write(record(i))
        sink.write(run_record(1))
    rows = _raw_rows(out)
    assert rows[0] == list(COLUMN_NAMES)
    text_cells = [c for row in rows[1:] for c in row]
    assert any(c.startswith("'=HYPERLINK") for c in text_cells)
    assert any(c == "'@SUM(A1:A9)" for c in text_cells)
    assert any(c == "''already quoted" for c in text_cells)
    assert all(not c.startswith(FORMULA_TRIGGERS[:-1]) for c in text_cells)
    # ... and the values come back exactly.
    assert [dict(r) for r in read_records(out)] == \
        [dict(flatten(record(i))) for i in range(len(HOSTILE))] + [dict(flatten(run_record(1)))]


def test_numbers_are_not_neutralised_but_negative_text_is() -> None:
    assert encode_cell("confidence", 0.5) == "0.5"
    assert encode_cell("tcp_rst_ttl", -1) == "-1"
    assert encode_cell("leaf_subject", "-1") == "'-1"
    assert decode_cell("leaf_subject", "'-1") == "-1"
    assert decode_cell("trusted", "false") is False
    with pytest.raises(ValueError):
        decode_cell("trusted", "maybe")


def test_every_row_is_one_physical_line(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    with open_sink(out, append=False) as sink:
        for i in range(20):
            sink.write(record(i))
    lines = out.read_bytes().split(b"\r\n")
    assert lines[-1] == b"" and len(lines) == 22
    assert all(b"\n" not in ln and b"\r" not in ln for ln in lines)
    assert all(b"\x1b" not in ln for ln in lines)


def test_header_once_across_appends(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    for i in range(3):
        with open_sink(out, append=True) as sink:
            sink.write(record(i))
    rows = _raw_rows(out)
    assert sum(1 for r in rows if r[0] == "kind") == 1 and len(rows) == 4


def test_appending_to_an_older_csv_keeps_its_columns(tmp_path: Path) -> None:
    out = tmp_path / "old.csv"
    old_columns = ["kind", "id", "verdict", "retired_column"]
    out.write_text(",".join(old_columns) + "\r\nmeasurement,old1,ok,x\r\n", encoding="utf-8")
    with open_sink(out, append=True) as sink:
        sink.write(record(4))
    rows = _raw_rows(out)
    assert rows[0] == old_columns and rows[2] == ["measurement", "m000004", "intercepted", ""]
    got = list(read_records(out))
    assert [(r["id"], r["verdict"]) for r in got] == [("old1", "ok"), ("m000004", "intercepted")]


def test_a_foreign_csv_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "foreign.csv"
    out.write_text("name,price\r\nx,1\r\n", encoding="utf-8")
    with pytest.raises(SinkError, match="not a tlswatch CSV"):
        open_sink(out, append=True)
    assert out.read_bytes() == b"name,price\r\nx,1\r\n"


def test_bad_rows_are_reported_with_their_line(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    with open_sink(out, append=False) as sink:
        sink.write(record(0))
    with open(out, "a", encoding="utf-8", newline="") as f:
        f.write("measurement,short\r\n")
        cells = [""] * len(COLUMN_NAMES)
        cells[0], cells[1], cells[COLUMN_NAMES.index("trusted")] = "measurement", "x", "maybe"
        f.write(",".join(cells) + "\r\n")
    with open_sink(out, append=True) as sink:
        sink.write(record(1))
    bad: list[str] = []
    assert [r["id"] for r in read_records(out, on_bad=bad.append)] == ["m000000", "m000001"]
    assert len(bad) == 2 and "line 3: 2 fields" in bad[0] and "line 4:" in bad[1]

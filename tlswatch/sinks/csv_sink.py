"""CSV of the flat projection, for spreadsheets and non-programmers.

One header line (written once, when the file is new), then one line per record: the flat
projection escapes control characters, so a row never spans lines and a killed writer
leaves at most one torn last line, cut on reopen exactly as for JSONL. UTF-8 without BOM,
CRLF line ends (RFC 4180).

Peer strings are hostile: a text cell that a spreadsheet would run as a formula (starting
with ``=``, ``+``, ``-``, ``@``, tab or CR) gets a ``'`` in front, and so does one that
starts with ``'`` itself, so readers (:func:`decode_cell`) can take exactly one ``'`` off
and get the value back. Appending to a CSV written by an older tlswatch keeps its columns.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from tlswatch.sinks.append_file import AppendFile
from tlswatch.sinks.base import SinkError
from tlswatch.sinks.flat import COLUMN_NAMES, COLUMNS, FlatRow, FlatValue, flatten
from tlswatch.sinks.jsonl import repair_tail

__all__ = ["FORMULA_TRIGGERS", "CsvSink", "decode_cell", "encode_cell", "read_header"]

#: First characters that make a spreadsheet evaluate a cell (plus the escape itself).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")
_TYPES = {c.name: c.type for c in COLUMNS}


def encode_cell(name: str, value: FlatValue) -> str:
    """The CSV text of one flat value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if _TYPES.get(name, "str") in ("str", "time") and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def decode_cell(name: str, text: str) -> FlatValue:
    """The flat value of one CSV cell; raises ValueError for a cell of the wrong type."""
    if text == "":
        return None
    kind = _TYPES.get(name, "str")
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        if text not in ("true", "false"):
            raise ValueError(f"{text!r} is not true/false")
        return text == "true"
    return text[1:] if text.startswith("'") else text


def _line(cells: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(cells)
    return buf.getvalue().encode("utf-8")


def read_header(path: Path) -> list[str] | None:
    """The header of an existing CSV (None when the file is empty)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        first = f.readline()
    if not first:
        return None
    return next(csv.reader([first]), [])


class CsvSink(AppendFile):
    """Append flat rows to a CSV file; records, run records, dicts and flat rows accepted."""

    def __init__(self, path: Path, *, batch: int = 32) -> None:
        self._batch = max(1, batch)
        self._buf: list[bytes] = []
        self.repaired_bytes = 0
        self.columns: tuple[str, ...] = COLUMN_NAMES
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory")
        if path.exists():
            self.repaired_bytes = repair_tail(path)
            header = read_header(path)
            if header is not None:
                if "kind" not in header or "id" not in header:
                    raise SinkError(f"{path}: not a tlswatch CSV (no kind/id columns in its "
                                    "header): not appending to it")
                # Keep an older file's columns: rows stay aligned with its header.
                self.columns = tuple(header)
        super().__init__(path)
        assert self._fd is not None
        if os.fstat(self._fd).st_size == 0:
            self._buf.append(_line(list(self.columns)))
            self.flush()

    def write(self, record: Any) -> None:
        row = record if isinstance(record, FlatRow) else flatten(record)
        self._buf.append(_line([encode_cell(c, row.get(c)) for c in self.columns]))
        if len(self._buf) >= self._batch:
            self.flush()

    def flush(self) -> None:
        if not self._buf or self._fd is None:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        self._write_all(data)

"""Parquet of the flat projection: a directory ``OUT.parquet/`` of part files.

A Parquet file is unreadable until it is closed (its footer comes last), so one growing
file would be lost whole by a ``kill -9``. Instead:

* rows are appended to a staging file ``OUT.parquet/.staging-NNNN.jsonl`` (crash-safe
  JSON Lines, fsync-ed at every ``checkpoint()``);
* every ``part_rows`` rows, at a checkpoint once the staged rows are ``part_seconds`` old,
  and at ``close()``, they become ``part-NNNN.parquet``: written as a hidden temporary
  file, fsync-ed, then renamed into place (atomic), and only then is the staging file
  removed;
* reopening (to append, or by :func:`recover`) turns a staging file left by a killed
  writer into its part, skips one whose part already exists, and deletes temporaries.

Tools that read the directory (pyarrow, pandas, DuckDB ``'OUT.parquet/*.parquet'``, Spark,
BigQuery loads) see complete parts only: files starting with ``.`` are ignored by all of
them. :func:`tlswatch.sinks.readers.read_records` also reads rows still staged. Needs the
optional extra ``tlswatch[parquet]`` (pyarrow).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

from tlswatch.model import rfc3339
from tlswatch.sinks.base import SinkError, fsync_dir
from tlswatch.sinks.flat import COLUMN_NAMES, COLUMNS, FlatRow, FlatValue, flatten, parse_time
from tlswatch.sinks.jsonl import JsonlWriter, read_jsonl, repair_tail

__all__ = [
    "PART_ROWS",
    "PART_SECONDS",
    "ParquetSink",
    "arrow_schema",
    "iter_parts",
    "pyarrow_modules",
    "recover",
]

PART_ROWS = 8192
PART_SECONDS = 300.0
_PART = re.compile(r"^part-(\d{4,})\.parquet$")
_STAGING = re.compile(r"^\.staging-(\d{4,})\.jsonl$")


def pyarrow_modules() -> tuple[Any, Any]:
    """(pyarrow, pyarrow.parquet), or a one-line error naming the extra to install."""
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise SinkError("Parquet needs pyarrow: pip install 'tlswatch[parquet]'") from None


def arrow_schema() -> Any:
    """The Arrow schema of every part (typed from :data:`~tlswatch.sinks.flat.COLUMNS`)."""
    pa, _ = pyarrow_modules()
    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
             "time": pa.timestamp("us", tz="UTC")}
    return pa.schema([pa.field(c.name, types[c.type]) for c in COLUMNS])


_TIME_COLUMNS = frozenset(c.name for c in COLUMNS if c.type == "time")


def _part_name(n: int) -> str:
    return f"part-{n:04d}.parquet"


def _staging_name(n: int) -> str:
    return f".staging-{n:04d}.jsonl"


def _write_part(directory: Path, n: int, rows: list[FlatRow]) -> None:
    """Write rows as part ``n``: temporary file, fsync, atomic rename, fsync the directory."""
    pa, pq = pyarrow_modules()
    columns: dict[str, list[Any]] = {name: [] for name in COLUMN_NAMES}
    for row in rows:
        for name in COLUMN_NAMES:
            v = row.get(name)
            columns[name].append(
                (parse_time(v) if isinstance(v, str) else None) if name in _TIME_COLUMNS else v)
    table = pa.Table.from_pydict(columns, schema=arrow_schema())
    tmp = directory / f".{_part_name(n)}.tmp"
    pq.write_table(table, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / _part_name(n))
    fsync_dir(directory)


def _numbers(directory: Path, pattern: re.Pattern[str]) -> list[int]:
    out = []
    for p in directory.iterdir():
        m = pattern.match(p.name)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def _staged_rows(path: Path) -> list[FlatRow]:
    return [FlatRow((k, obj.get(k)) for k in COLUMN_NAMES) for obj in read_jsonl(path)]


def recover(directory: Path) -> int:
    """Finish what a killed writer left: staged rows become parts. Returns rows recovered."""
    recovered = 0
    parts = set(_numbers(directory, _PART))
    for p in directory.iterdir():
        if p.name.startswith(".part-") and p.name.endswith(".tmp"):
            p.unlink()
    for n in _numbers(directory, _STAGING):
        staging = directory / _staging_name(n)
        if n not in parts:
            repair_tail(staging)
            rows = _staged_rows(staging)
            if rows:
                _write_part(directory, n, rows)
                recovered += len(rows)
        staging.unlink()  # its rows are in part n now (or there were none)
    fsync_dir(directory)
    return recovered


class ParquetSink:
    """Append flat rows to ``OUT.parquet/`` (see the module doc for the crash-safety)."""

    def __init__(self, path: Path, *, batch: int = 32, part_rows: int = PART_ROWS,
                 part_seconds: float = PART_SECONDS) -> None:
        pyarrow_modules()  # fail at open, before any work, when pyarrow is missing
        self.path = path
        self._batch = max(1, batch)
        self._part_rows = max(1, part_rows)
        self._part_seconds = part_seconds
        if path.exists() and not path.is_dir():
            raise SinkError(f"{path}: is a file; tlswatch writes Parquet as a directory of "
                            "part files (choose a new name)")
        path.mkdir(exist_ok=True)
        self.recovered_rows = recover(path)
        parts = _numbers(path, _PART)
        self._next = parts[-1] + 1 if parts else 0
        self._rows: list[FlatRow] = []
        self._staging: JsonlWriter | None = None
        self._since = time.monotonic()
        self._closed = False

    def write(self, record: Any) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: sink is closed")
        row = record if isinstance(record, FlatRow) else flatten(record)
        if self._staging is None:
            self._staging = JsonlWriter(self.path / _staging_name(self._next), batch=self._batch)
            self._since = time.monotonic()
        self._staging.write(dict(row))
        self._rows.append(row)
        if len(self._rows) >= self._part_rows:
            self._roll()

    def _roll(self) -> None:
        """Turn the staged rows into the next part file."""
        if self._staging is None:
            return
        self._staging.checkpoint()
        if self._rows:
            _write_part(self.path, self._next, self._rows)
        self._staging.close()
        (self.path / _staging_name(self._next)).unlink()
        fsync_dir(self.path)
        self._staging = None
        self._rows = []
        self._next += 1

    def checkpoint(self) -> None:
        """Make staged rows durable; write a part when they are ``part_seconds`` old."""
        if self._staging is None:
            return
        if time.monotonic() - self._since >= self._part_seconds:
            self._roll()
        else:
            self._staging.checkpoint()

    def close(self) -> None:
        if self._closed:
            return
        self._roll()
        self._closed = True

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _from_arrow(name: str, value: Any) -> FlatValue:
    if name in _TIME_COLUMNS and value is not None:
        return rfc3339(value.astimezone(UTC))
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def iter_parts(path: Path, on_bad: Callable[[str], None] | None = None) -> Iterator[FlatRow]:
    """Rows of a Parquet file, or of a part directory (parts in order, then staged rows)."""
    _, pq = pyarrow_modules()
    if path.is_dir():
        parts = [path / _part_name(n) for n in _numbers(path, _PART)]
        done = set(_numbers(path, _PART))
        staged = [path / _staging_name(n) for n in _numbers(path, _STAGING) if n not in done]
    else:
        parts, staged = [path], []
    for part in parts:
        try:
            table = pq.read_table(part)
        except (OSError, ValueError) as e:
            if on_bad is None:
                raise SinkError(f"{part}: not a readable Parquet file ({e})") from None
            on_bad(f"{part}: not a readable Parquet file ({str(e).splitlines()[0]})")
            continue
        names = [n for n in table.column_names if n in COLUMN_NAMES]
        for obj in table.select(names).to_pylist():
            yield FlatRow((k, _from_arrow(k, obj.get(k))) for k in COLUMN_NAMES)
    for staging in staged:
        for lineno, line in enumerate(staging.read_bytes().splitlines(), 1):
            try:
                obj = json.loads(line)
            except ValueError:
                if on_bad is not None:
                    on_bad(f"{staging}: line {lineno}: torn staged row (cut when reopened)")
                continue
            if isinstance(obj, dict):
                yield FlatRow((k, obj.get(k)) for k in COLUMN_NAMES)

"""One Sink protocol for every output format, and the choice of sink by file extension.

Every sink takes records (:class:`~tlswatch.model.Record`, :class:`~tlswatch.model.RunRecord`
or their JSON dicts), is append-only, and survives ``kill -9``: what was written before the
last ``checkpoint()`` is durable, anything later is either whole or cut cleanly when the
output is reopened. ``tests/sinks/test_conformance.py`` holds every sink to that.

=================  ==========  ===============================================================
extension          format      holds
=================  ==========  ===============================================================
``.jsonl``         jsonl       whole records, one per line
``.jsonl.gz``      jsonl.gz    whole records, gzip members appended per batch
``.sqlite``/``.db``  sqlite    whole records + flat columns + certificates once by SHA-256
``.csv``           csv         the flat projection (:mod:`tlswatch.sinks.flat`)
``.parquet``       parquet     the flat projection, a directory of part files
=================  ==========  ===============================================================
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from tlswatch.model import Record, to_dict
from tlswatch.sinks.encode import dumps, record_line

__all__ = [
    "FLAT_FORMATS",
    "FORMATS",
    "RECORD_FORMATS",
    "EncodedRecord",
    "Format",
    "RecordError",
    "Sink",
    "SinkError",
    "fsync_dir",
    "is_empty_output",
    "open_sink",
    "record_dict",
    "record_json",
    "sink_format",
]

Format = Literal["jsonl", "jsonl.gz", "sqlite", "csv", "parquet"]
FORMATS: tuple[Format, ...] = ("jsonl", "jsonl.gz", "sqlite", "csv", "parquet")
#: Formats that keep whole records (raw chains included): inputs of rejudge, any output.
RECORD_FORMATS: frozenset[Format] = frozenset({"jsonl", "jsonl.gz", "sqlite"})
#: Formats that keep only the flat projection.
FLAT_FORMATS: frozenset[Format] = frozenset({"csv", "parquet"})

_SUFFIXES: tuple[tuple[str, Format], ...] = (
    (".jsonl.gz", "jsonl.gz"), (".jsonl", "jsonl"), (".csv", "csv"), (".sqlite", "sqlite"),
    (".sqlite3", "sqlite"), (".db", "sqlite"), (".parquet", "parquet"),
)


class SinkError(ValueError):
    """An output or input the user must fix: one line naming the file and what is wrong."""


class RecordError(SinkError):
    """One record this sink cannot take (the sink stays usable: count it and go on)."""


@runtime_checkable
class Sink(Protocol):
    """Where records go. :class:`~tlswatch.sinks.jsonl.JsonlWriter` is one too.

    ``write`` takes a record (measurement, run or input record: any ``tlswatch/1`` line) or
    its JSON dict (flat sinks also take a
    :class:`~tlswatch.sinks.flat.FlatRow`); ``checkpoint`` makes everything written so far
    durable; ``close`` checkpoints and releases the file. Use as a context manager.
    """

    def write(self, record: Any) -> None: ...

    def checkpoint(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Sink: ...

    def __exit__(self, *exc: object) -> None: ...


def sink_format(path: Path | str) -> Format:
    """The format chosen by ``path``'s extension (case-insensitive)."""
    name = Path(path).name.lower()
    for suffix, fmt in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return fmt
    raise SinkError(f"{path}: unknown output format; use .jsonl, .jsonl.gz, .csv, "
                    ".sqlite (or .db), or .parquet")


def is_empty_output(path: Path) -> bool:
    """Nothing there yet: no file, an empty file, or (Parquet) a directory without parts."""
    try:
        if path.is_dir():
            return not any(p.name.endswith((".parquet", ".jsonl")) for p in path.iterdir())
        return not path.exists() or path.stat().st_size == 0
    except OSError:
        return False


class EncodedRecord(NamedTuple):
    """A record already encoded as its JSON line, with what a writer's bookkeeping needs.

    What a Dask worker sends back: a string pickles and unpickles far faster than a nested
    dict, and the JSONL writer appends it as it is (other sinks decode it)."""

    id: str
    verdict: str
    outcome: str
    line: str  # record_json() of the record

    @classmethod
    def of(cls, record: Record | dict[str, Any]) -> EncodedRecord:
        if isinstance(record, Record):
            return cls(record.id, record.verdict, record.outcome, record_json(record))
        return cls(record["id"], record["verdict"], record["outcome"], record_json(record))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.line)
        return out


def record_dict(record: Any) -> dict[str, Any]:
    """The JSON dict of a record, a run record or an already-decoded record."""
    if isinstance(record, EncodedRecord):
        return record.as_dict()
    if record.__class__ is dict:  # (the common case: not a FlatRow, no import below)
        return dict(record)
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        out: dict[str, Any] = to_dict(record)  # Record, RunRecord, InputRecord ...
        return out
    if isinstance(record, Mapping):
        from tlswatch.sinks.flat import FlatRow  # (loaded by the sinks that make flat rows)

        if isinstance(record, FlatRow):
            raise RecordError("a flat row (from CSV or Parquet) is only a projection of a "
                              "record: it can go to .csv or .parquet only")
        return dict(record)
    raise RecordError(f"not a record: {type(record).__name__}")


def record_json(record: Any) -> str:
    """One compact JSON line (no newline), encoded exactly as the JSONL writer does."""
    if isinstance(record, EncodedRecord):
        return record.line
    if record.__class__ is Record:
        return record_line(record)  # (the same text, each judged chain encoded once)
    # ensure_ascii keeps hostile peer strings (control chars, bidi marks) escaped.
    return dumps(record_dict(record))


def open_sink(path: Path | str, *, append: bool, batch: int = 32) -> Sink:
    """Open the output ``path``, its format chosen by extension.

    ``append=False`` starts a new output and refuses one that already holds data (nothing is
    ever overwritten); ``append=True`` continues it (after cutting what a killed writer left
    half-written). ``batch``: records buffered before one write (one transaction for SQLite).
    Raises :class:`SinkError` (one line) when the output cannot be written.
    """
    p = Path(path)
    fmt = sink_format(p)
    if not p.parent.is_dir():
        raise SinkError(f"{p}: cannot write (no directory {p.parent})")
    if not append and not is_empty_output(p):
        raise SinkError(f"{p} exists and is not empty: append to it, or choose another file")
    try:
        if fmt == "jsonl":
            from tlswatch.sinks.jsonl import JsonlWriter

            if p.is_dir():
                raise IsADirectoryError(21, "Is a directory")
            return JsonlWriter(p, batch=batch)
        if fmt == "jsonl.gz":
            from tlswatch.sinks.gzip_sink import GzipJsonlSink

            return GzipJsonlSink(p, batch=batch)
        if fmt == "csv":
            from tlswatch.sinks.csv_sink import CsvSink

            return CsvSink(p, batch=batch)
        if fmt == "sqlite":
            from tlswatch.sinks.sqlite_sink import SqliteSink

            return SqliteSink(p, batch=batch)
        from tlswatch.sinks.parquet_sink import ParquetSink

        return ParquetSink(p, batch=batch)
    except OSError as e:
        raise SinkError(f"{p}: cannot write ({e.strerror or e})") from None


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (best effort where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

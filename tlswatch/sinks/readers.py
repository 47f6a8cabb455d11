"""Read back what any sink wrote, and what a resumed run finds already done.

:func:`read_records` yields record dicts (``tlswatch/1`` records and run records) from
JSONL, ``.jsonl.gz`` and SQLite, and :class:`~tlswatch.sinks.flat.FlatRow` rows from CSV
and Parquet (those hold only the flat projection). A bad line or row inside a readable file
is reported through ``on_bad`` (file, line, what is wrong) and skipped; a file that cannot
be read at all, or holds no record but bad lines, raises :class:`SinkError` (one line).
"""

from __future__ import annotations

import csv
import itertools
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlswatch.sinks.base import SinkError, sink_format
from tlswatch.sinks.flat import COLUMN_NAMES, FlatRow

__all__ = [
    "OnBad",
    "OutputState",
    "completed_ids",
    "is_record",
    "output_state",
    "read_records",
]

OnBad = Callable[[str], None]
_CHUNK = 1 << 16


def is_record(obj: Any) -> bool:
    """A ``tlswatch/...`` measurement (with an id) or other record (a ``kind`` and a run_id)."""
    if not isinstance(obj, dict):
        return False
    schema = obj.get("schema")
    if not isinstance(schema, str) or not schema.startswith("tlswatch/"):
        return False
    key = "id" if obj.get("kind") in (None, "measurement") else "run_id"
    return isinstance(obj.get(key), str) and bool(obj[key])


def _parse_line(line: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        obj = json.loads(line)
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except ValueError as e:
        return None, f"not JSON ({getattr(e, 'msg', e)})"
    except RecursionError:
        return None, "not JSON (nested too deeply)"
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    if not is_record(obj):
        return None, "not a tlswatch record (no schema tlswatch/..., id or run_id)"
    return obj, ""


def _lines_jsonl(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from f


def _next_member(f: Any, start: int) -> int | None:
    """Offset of the next gzip member header at or after ``start``, or None."""
    magic = b"\x1f\x8b\x08"
    f.seek(start)
    offset = start
    tail = b""
    while chunk := f.read(_CHUNK):
        at = (tail + chunk).find(magic)
        if at >= 0:
            return int(offset - len(tail) + at)
        tail = chunk[-(len(magic) - 1):]
        offset += len(chunk)
    return None


def _lines_gzip(path: Path, bad: OnBad) -> Iterator[bytes]:
    """Lines of every gzip member in turn; damage and a torn end are reported, not raised.

    A corrupt member is skipped: reading goes on at the next member header after it.
    """
    with open(path, "rb") as f:
        head = f.read(2)
        if head and head != b"\x1f\x8b":
            raise SinkError(f"{path}: not gzip data")
        f.seek(0)
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        member_start = pos = 0
        rest = b""
        pending = b""
        while True:
            data = pending or f.read(_CHUNK)
            pending = b""
            if not data:
                break
            try:
                text = rest + d.decompress(data)
            except zlib.error as e:
                nxt = _next_member(f, member_start + 1)
                bad(f"{path}: corrupt gzip data after byte {member_start} ({e}); " + (
                    "the rest of the file is unreadable" if nxt is None
                    else f"going on at the next member (byte {nxt})"))
                if nxt is None:
                    return
                f.seek(nxt)
                member_start = pos = nxt
                d = zlib.decompressobj(zlib.MAX_WBITS | 16)
                rest = b""
                continue
            *lines, rest = text.split(b"\n")
            for line in lines:
                yield line + b"\n"
            if d.eof:
                member_start = pos + len(data) - len(d.unused_data)
                pos = member_start
                pending = d.unused_data
                d = zlib.decompressobj(zlib.MAX_WBITS | 16)
                continue
            pos += len(data)
        if member_start < pos:
            bad(f"{path}: torn gzip member at byte {member_start} (a killed writer): its "
                "complete lines were read; appending repairs it")
        if rest:
            yield rest  # a torn last line: reported as not JSON by the caller


_MAX_LEADING_BAD = 1000  # bad lines before any record: then the file is not records at all


def _json_records(path: Path, lines: Iterator[bytes], bad: OnBad) -> Iterator[dict[str, Any]]:
    # Bad lines are held back until the first record: a file with none is one error, not
    # a report per line (a binary file, a CSV named .jsonl).
    held: list[str] | None = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if not line.endswith(b"\n"):
            # Only a line whose line end was written is whole (the writer's repair agrees).
            why = "no line end (torn by a killed writer?): skipped"
            obj = None
        else:
            obj, why = _parse_line(line)
        if obj is None:
            msg = f"{path}: line {lineno}: {why}"
            if held is None:
                bad(msg)
            elif len(held) < _MAX_LEADING_BAD:
                held.append(msg)
            else:
                raise SinkError(f"{held[0]}; and the next {len(held) - 1} lines are no "
                                "records either: not a tlswatch JSONL file")
            continue
        if held:
            for msg in held:
                bad(msg)
        held = None
        yield obj
    if held:
        if len(held) == 1 and "no line end" in held[0]:
            bad(held[0])  # only a torn first line: an output a writer was killed writing
            return
        raise SinkError(f"{held[0]} (and no record in the file)")


def _sqlite_records(path: Path, bad: OnBad) -> Iterator[dict[str, Any]]:
    from tlswatch.sinks.sqlite_sink import iter_store

    for table, seq, text in iter_store(path):
        obj, why = _parse_line(text.encode())
        if obj is None:
            bad(f"{path}: {table} row seq={seq}: {why}")
            continue
        yield obj


def _csv_rows(path: Path, bad: OnBad) -> Iterator[FlatRow]:
    from tlswatch.sinks.csv_sink import decode_cell

    def complete_lines(f: Iterator[str]) -> Iterator[str]:
        # A last line without its line end is torn (a killed writer): its cut-off last
        # cell could still parse, so it is dropped here, as the writer's repair would.
        for line in f:
            if line.endswith("\n"):
                yield line
            else:
                bad(f"{path}: last line has no line end (torn by a killed writer?): skipped")

    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(complete_lines(f))
        header = next(reader, None)
        if header is None:
            return
        if "kind" not in header or "id" not in header:
            raise SinkError(f"{path}: not a tlswatch CSV (no kind/id columns in the header)")
        index = [(i, name) for i, name in enumerate(header) if name in COLUMN_NAMES]
        for cells in reader:
            where = f"{path}: line {reader.line_num}"
            if len(cells) != len(header):
                bad(f"{where}: {len(cells)} fields, the header has {len(header)} (torn?)")
                continue
            row = FlatRow((name, None) for name in COLUMN_NAMES)
            try:
                for i, name in index:
                    row[name] = decode_cell(name, cells[i])
            except ValueError as e:
                bad(f"{where}: {e}")
                continue
            yield row


def read_records(path: Path | str, *, on_bad: OnBad | None = None) -> Iterator[dict[str, Any]]:
    """Every record (or, for CSV and Parquet, every flat row) of ``path`` in write order.

    Errors that make the whole file unreadable are raised by this call, before anything
    is yielded (the iterator is primed), so a caller fails before writing any output.
    """
    p = Path(path)
    fmt = sink_format(p)
    if not p.exists():
        raise SinkError(f"{p}: cannot read (no such file)")
    if fmt != "parquet" and p.is_dir():
        raise SinkError(f"{p}: cannot read (is a directory)")
    it = _read(p, fmt, on_bad)
    try:
        first = next(it)
    except StopIteration:
        return iter(())
    return itertools.chain([first], it)


def _read(p: Path, fmt: str, on_bad: OnBad | None) -> Iterator[dict[str, Any]]:
    bad: OnBad = on_bad or (lambda _msg: None)
    try:
        if fmt == "jsonl":
            yield from _json_records(p, _lines_jsonl(p), bad)
        elif fmt == "jsonl.gz":
            yield from _json_records(p, _lines_gzip(p, bad), bad)
        elif fmt == "sqlite":
            yield from _sqlite_records(p, bad)
        elif fmt == "csv":
            yield from _csv_rows(p, bad)
        else:
            from tlswatch.sinks.parquet_sink import iter_parts

            yield from iter_parts(p, on_bad)
    except OSError as e:
        raise SinkError(f"{p}: cannot read ({e.strerror or e})") from None


@dataclass(slots=True)
class OutputState:
    """What an output already holds: ids of complete measurements, run records, and the
    SHA-256 (-> path) of every input whose analysis completed (``tlswatch analyse``)."""

    ids: set[str] = field(default_factory=set)
    runs: int = 0
    records: int = 0
    inputs_done: dict[str, str] = field(default_factory=dict)


def output_state(path: Path | str) -> OutputState:
    """Scan an output for ``--resume`` (any format; an output not there yet is empty).

    Open the sink first (``open_sink(path, append=True)``): opening cuts what a killed
    writer left half-written, so every id counted here is a complete record.
    """
    p = Path(path)
    out = OutputState()
    if not p.exists() or (p.is_file() and p.stat().st_size == 0):
        return out
    for obj in read_records(p):
        kind = obj.get("kind")
        if kind == "run":
            out.runs += 1
            continue
        if kind == "input":
            sha = obj.get("sha256", obj.get("input_sha256"))
            if obj.get("complete", obj.get("input_complete")) and isinstance(sha, str):
                out.inputs_done[sha] = str(obj.get("path", obj.get("input_path")))
            continue
        if kind not in (None, "measurement"):
            continue
        rid = obj.get("id")
        if isinstance(rid, str) and rid:
            out.ids.add(rid)
            out.records += 1
    return out


def completed_ids(path: Path | str) -> set[str]:
    """Ids of the measurements already in ``path`` (what ``--resume`` skips)."""
    return output_state(path).ids


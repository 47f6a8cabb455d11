"""``tlswatch convert``: results from one output format to another."""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

import click

from tlswatch.cli.errors import InputError
from tlswatch.sinks.base import (
    FLAT_FORMATS,
    RECORD_FORMATS,
    RecordError,
    SinkError,
    open_sink,
    sink_format,
)
from tlswatch.sinks.readers import read_records
from tlswatch.textsafe import terminal_safe

__all__ = ["AnomalyReport", "convert", "same_file"]


class AnomalyReport:
    """Counts bad lines and prints the first ``limit`` of them (FILE: line N: why)."""

    def __init__(self, err: TextIO, limit: int = 20) -> None:
        self.err = err
        self.limit = limit
        self.count = 0

    def __call__(self, message: str) -> None:
        self.count += 1
        if self.count <= self.limit:
            self.err.write(f"tlswatch: {terminal_safe(message, 300)}\n")
        elif self.count == self.limit + 1:
            self.err.write("tlswatch: (more bad lines: only counted from here on)\n")


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def _format(path: str) -> str:
    try:
        return sink_format(path)
    except SinkError as e:
        raise InputError(str(e)) from None


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="IN...")
@click.argument("output", metavar="OUT")
@click.option("--append", is_flag=True,
              help="Add to OUT when it already holds results (default: OUT must be new or "
                   "empty). SQLite skips measurements whose id it already has.")
def convert(inputs: tuple[str, ...], output: str, append: bool) -> None:
    """Convert tlswatch results between formats, chosen by file extension.

    Every IN (one or more files) goes into OUT, in order. Formats:

    \b
    .jsonl, .jsonl.gz, .sqlite/.db  whole records: convert to any format
    .csv, .parquet                  flat rows (one per observation, docs/sinks.md):
                                    convert only to .csv or .parquet
    .parquet output is a directory of part files.

    Bad lines or rows inside an input are reported on stderr as FILE: line N: why and
    skipped; the rest converts. Exit status 0 when converted (even with skipped lines); 2
    with a one-line error for an unreadable input, an unknown format, a flat input with a
    record output, or an OUT that exists (without --append) or cannot be written.
    """
    err = sys.stderr
    out_path = Path(output)
    out_fmt = _format(output)
    for name in inputs:
        in_fmt = _format(name)
        if in_fmt in FLAT_FORMATS and out_fmt in RECORD_FORMATS:
            raise InputError(f"{name}: CSV and Parquet hold only the flat projection of each "
                             f"record, not whole records: convert it to .csv or .parquet, not "
                             f".{out_fmt}")
        if same_file(Path(name), out_path):
            raise InputError(f"{name} is also the output")
    report = AnomalyReport(err)
    try:
        # Every input is opened (and its first record read) before the output is touched.
        streams = [read_records(Path(name), on_bad=report) for name in inputs]
        sink = open_sink(out_path, append=append)
    except SinkError as e:
        raise InputError(str(e)) from None
    kinds: Counter[str] = Counter()
    rejected = 0
    try:
        for stream in streams:
            for obj in stream:
                try:
                    sink.write(obj)
                except RecordError as e:
                    rejected += 1
                    report(f"record {obj.get('id') or obj.get('run_id')}: {e}")
                    continue
                kinds[str(obj.get("kind") or "measurement")] += 1
        sink.close()
    except SinkError as e:
        raise InputError(str(e)) from None
    finally:
        with contextlib.suppress(SinkError, OSError):
            sink.close()
    dupes = getattr(sink, "duplicates", 0)
    others = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()) if k != "measurement")
    parts = [f"tlswatch: converted {kinds['measurement']} records"
             + (f" (and {others} records)" if others else "") + f" to {output}"]
    if report.count:
        parts.append(f"{report.count - rejected} bad lines skipped" if report.count > rejected
                      else "")
    if rejected:
        parts.append(f"{rejected} records rejected")
    if dupes:
        parts.append(f"{dupes} measurements already there (ignored)")
    err.write("; ".join(p for p in parts if p) + "\n")

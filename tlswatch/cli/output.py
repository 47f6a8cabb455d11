"""The -o/--resume checks shared by the commands that write records."""

from __future__ import annotations

from pathlib import Path

from tlswatch.cli.errors import InputError
from tlswatch.sinks.base import RECORD_FORMATS, Format, SinkError, sink_format

__all__ = ["OUTPUT_HELP", "check_output"]

OUTPUT_HELP = ("Write records to FILE instead of stdout, in the format of its extension: "
               ".jsonl, .jsonl.gz, .sqlite (or .db), .csv or .parquet (flat rows, "
               "docs/sinks.md); appended as they come and safe against kill -9. Refuses a "
               "non-empty FILE unless --resume.")


def check_output(out_path: Path | None, resume: bool) -> Format | None:
    """The output's format; one-line errors for an unknown extension or an impossible resume."""
    if out_path is None:
        if resume:
            raise InputError("--resume needs -o FILE (the output to continue)")
        return None
    try:
        fmt = sink_format(out_path)
    except SinkError as e:
        raise InputError(f"-o {e}") from None
    if resume and fmt not in RECORD_FORMATS:
        # CSV and Parquet keep flat rows only: not enough to know which work is complete.
        raise InputError(f"--resume works with .jsonl, .jsonl.gz and .sqlite outputs, "
                         f"not {out_path.name}")
    return fmt

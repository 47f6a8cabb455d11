"""Stream ``tlswatch/1`` result files into :class:`~tlswatch.report.stats.ReportStats`.

JSON Lines (``.jsonl``, also gzip-compressed ``.jsonl.gz``) is read here line by line with
the same rules as :func:`tlswatch.sinks.jsonl.read_jsonl`, but counting the lines it skips
(a report says how much of its input it could not use). Other formats go through
``tlswatch.sinks.readers.read_records`` when that module is installed.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

from tlswatch.model import to_dict
from tlswatch.report.stats import InputStats, ReportStats

__all__ = ["ReportInputError", "read_into", "unflatten"]

_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".json")
_MAX_BAD_EXAMPLES = 5


class ReportInputError(ValueError):
    """An input that cannot be read at all (one line: file and reason)."""


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        if path.name.endswith(".gz"):
            with gzip.open(f, "rb") as g:
                yield from g
        else:
            yield from f


def _jsonl(path: Path, info: InputStats) -> Iterator[dict[str, Any]]:
    for lineno, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            problem = None if isinstance(obj, dict) else "not a JSON object"
        except json.JSONDecodeError as e:
            problem = f"not JSON ({e.msg})"
        except (UnicodeDecodeError, RecursionError):
            problem = "not UTF-8 JSON"
        if problem is not None:
            info.bad_lines += 1
            if len(info.bad_examples) < _MAX_BAD_EXAMPLES:
                info.bad_examples.append(f"line {lineno}: {problem}")
            continue
        yield obj


Reader = Callable[..., Iterable[Any]]


def _other_reader() -> Reader | None:
    try:
        mod = importlib.import_module("tlswatch.sinks.readers")
    except ImportError:
        return None
    fn = getattr(mod, "read_records", None)
    return cast("Reader", fn) if callable(fn) else None


def _split(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v for v in str(value).split("|") if v] if value else []


def unflatten(row: dict[str, Any]) -> dict[str, Any]:
    """The nested shape of a flat row (CSV/Parquet): what a report reads from it.

    A flat row keeps only the leaf of the chain and the first validation, so reports from
    CSV or Parquet show less evidence than from JSONL or SQLite.
    """
    if "target" in row or "target_domain" not in row:
        return row
    out: dict[str, Any] = {k: row.get(k) for k in ("kind", "id", "run_id", "schema", "source",
                                                  "time", "verdict", "outcome", "confidence",
                                                  "rule_id")}
    out["target"] = {"domain": row.get("target_domain"), "sni": row.get("target_sni"),
                     "ip": row.get("target_ip")}
    out["vantage"] = {"name": row.get("vantage_name"), "kind": row.get("vantage_kind")}
    if row.get("leaf_sha256"):
        out["chain"] = [{"subject": row.get("leaf_subject"), "issuer": row.get("leaf_issuer"),
                         "sha256": row.get("leaf_sha256"),
                         "not_before": row.get("leaf_not_before"),
                         "not_after": row.get("leaf_not_after")}]
    out["interception"] = {"matched": bool(row.get("interception_matched")),
                           "label": row.get("interception_label"),
                           "incident": row.get("interception_incident"),
                           "evidence": row.get("interception_evidence")}
    if row.get("control_kind"):
        out["control"] = {"kind": row.get("control_kind"), "outcome": row.get("control_outcome")}
    if row.get("control_sni_outcome"):
        out["control_sni"] = {"kind": "sni", "outcome": row.get("control_sni_outcome")}
    out["tls"] = {"failure": row.get("tls_failure")}
    out["reasons"] = _split(row.get("reasons"))
    out["anomalies"] = _split(row.get("anomalies"))
    return out


def read_into(path: Path, stats: ReportStats) -> InputStats:
    """Aggregate every record of ``path``; raises :class:`ReportInputError` if unreadable."""
    info = InputStats(str(path))
    stats.inputs.append(info)
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise ReportInputError(f"{path}: cannot read ({e.strerror or e})") from None
    def bad(message: str) -> None:
        info.bad_lines += 1
        if len(info.bad_examples) < _MAX_BAD_EXAMPLES:
            info.bad_examples.append(str(message)[:200])

    try:
        records: Iterable[Any]
        if path.name.endswith(_JSONL_SUFFIXES):
            records = _jsonl(path, info)
        else:
            reader = _other_reader()
            if reader is None:
                raise ReportInputError(f"{path}: not a .jsonl file (other formats need "
                                       "tlswatch.sinks.readers)")
            records = reader(path, on_bad=bad)
        for rec in records:
            if dataclasses.is_dataclass(rec) and not isinstance(rec, type):
                rec = to_dict(rec)
            if not isinstance(rec, dict):
                bad("not a record")
                continue
            rec = unflatten(rec)
            if rec.get("kind") == "run":
                info.runs += 1
            if stats.add(rec):
                info.records += rec.get("kind") != "run"
            else:
                bad("not a tlswatch record")
        if info.bad_lines and not info.records and not info.runs:
            # Not a results file at all (a wrong file given, or one ruined throughout).
            raise ReportInputError(f"{path}: no tlswatch record in it ({info.bad_lines} "
                                   f"unusable; {info.bad_examples[0]})")
    except ReportInputError:
        raise
    except (OSError, EOFError, zlib.error) as e:
        raise ReportInputError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") \
            from None
    except ValueError as e:  # a reader's own one-line "cannot read this file" (SinkError)
        message = str(e)
        raise ReportInputError(message if str(path) in message else f"{path}: {message}") \
            from None
    return info

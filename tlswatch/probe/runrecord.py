"""The ``run`` record of a probe campaign, and what a resumed run finds already done.

Output files are append-only, so a run is described by two run records with the same
``run_id``: one written first (``started``, no ``ended``) and one written last with ``ended``
set. A run killed before its end has only the first; a resumed run appends a new run (its own
``run_id``, ``resumed: true``) with the same pair. Readers take the last run record of each
``run_id``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.backends.openssl import backend

from tlswatch import __version__
from tlswatch.model import SCHEMA, RunRecord, Vantage, rfc3339
from tlswatch.sinks.jsonl import read_jsonl

__all__ = ["Existing", "closing_run_record", "completed", "openssl_version", "run_record"]


def openssl_version() -> str:
    """The OpenSSL that pyOpenSSL (and so the probe) links against: cryptography's, which
    pyOpenSSL binds to (asking cryptography spares ``analyse`` pyOpenSSL's ~30 ms import)."""
    return backend.openssl_version_text()


def run_record(
    *,
    run_id: str,
    started: datetime,
    command: Sequence[str],
    rules_version: str,
    registry_version: str,
    stores: Sequence[tuple[str, str]],
    resumed: bool = False,
    vantage: Vantage | None = None,
) -> RunRecord:
    """The record that opens a run (``ended`` unset)."""
    return RunRecord(
        run_id=run_id, tool="tlswatch", tool_version=__version__, started=rfc3339(started),
        command=tuple(command), rules_version=rules_version, registry_version=registry_version,
        stores=tuple(stores), openssl=openssl_version(), vantage=vantage or Vantage(),
        resumed=resumed,
    )


def closing_run_record(opening: RunRecord, ended: datetime) -> RunRecord:
    """The same run record with ``ended`` set: appended when the run finishes."""
    return dataclasses.replace(opening, ended=rfc3339(ended))


@dataclass(slots=True)
class Existing:
    """What an output file already holds: ids of complete records, and run records."""

    ids: set[str] = field(default_factory=set)
    runs: int = 0
    records: int = 0


def completed(path: Path) -> Existing:
    """Read an existing output (after its torn tail, if any, was cut).

    Every line that parses as a ``tlswatch/1`` record with an ``id`` counts as done: lines
    are written whole, so a parsed line is a complete record. Memory: one 32-character id
    per record (~90 bytes each).
    """
    out = Existing()
    if not path.exists():
        return out
    for obj in read_jsonl(path):
        if obj.get("schema") != SCHEMA:
            continue
        if obj.get("kind") == "run":
            out.runs += 1
            continue
        rid = obj.get("id")
        if isinstance(rid, str):
            out.ids.add(rid)
            out.records += 1
    return out

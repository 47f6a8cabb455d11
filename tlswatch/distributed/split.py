"""One large capture analysed by several workers: index, chunks, merge.

:func:`index_file` (a task) hashes the file and builds its offset index in one pass
(:mod:`tlswatch.capture.offset_index`) and plans the chunks; :func:`analyse_chunk` (a task
per chunk) observes one chunk (:mod:`tlswatch.capture.chunk`: a chunk owns the flows whose
first packet lies in it) and returns its judged records; :func:`merge_chunks` (in the
client) makes the file's one :class:`~tlswatch.cli.analyse.FileResult`, written like a
whole file's: its records, then its input record. Workers never write, so a chunk whose
worker died is simply run again.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tlswatch.capture import CaptureWarning
from tlswatch.capture.chunk import LOOKBACK_NS, ChunkObserver
from tlswatch.capture.observe import Observation
from tlswatch.capture.offset_index import (
    STEP,
    ChunkPlan,
    NotSplittable,
    build_index,
    plan_chunks,
)
from tlswatch.classify.capture_record import capture_record
from tlswatch.cli.analyse import (
    AnalyseOptions,
    FileResult,
    _Totals,
    _worker_engine,
    capture_bogons,
    keylog_notes,
    record_dict,
    task_error,
    verbose_line,
)
from tlswatch.model import InputRecord, Vantage
from tlswatch.sinks.base import EncodedRecord

__all__ = ["ChunkResult", "FileIndex", "analyse_chunk", "index_file", "merge_chunks"]


@dataclass(frozen=True, slots=True)
class FileIndex:
    """What :func:`index_file` sends back: the file's hash, its chunks and whole-file facts."""

    sha256: str
    size: int
    format: str
    packets: int
    key_logs: int
    plans: tuple[ChunkPlan, ...]


@dataclass(slots=True)
class ChunkResult:
    """One chunk's records (``record_dict`` form) and figures, or its error."""

    index: int
    records: list[EncodedRecord] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    totals: _Totals = field(default_factory=_Totals)
    warnings: list[str] = field(default_factory=list)
    partial: bool = False
    keylog_summary: str = ""
    error_kind: str | None = None
    error: str | None = None


def index_file(path: str, chunks: int, lookback_ns: int = LOOKBACK_NS) -> FileIndex | None:
    """Hash and index ``path`` and plan up to ``chunks`` chunks; None when the file is to be
    read whole (compressed, too small to split, headers too large)."""
    try:
        # Checkpoints at least 16 per chunk (small files in tests), else every 256 KiB.
        idx = build_index(path, step=max(1, min(STEP, os.path.getsize(path) // (16 * chunks))))
    except NotSplittable:
        return None
    plans = plan_chunks(idx, chunks, lookback_ns=lookback_ns)
    if len(plans) < 2:
        return None
    return FileIndex(idx.sha256, idx.size, idx.format, idx.total_packets, idx.key_logs,
                     tuple(plans))


def analyse_chunk(plan: ChunkPlan, options: AnalyseOptions, sha256: str) -> ChunkResult:
    """Observe and judge one chunk (the task a worker runs). Errors come back in the result."""
    result = ChunkResult(index=plan.index)
    judge, pseudonym, keylog = _worker_engine(options)
    vantage = Vantage(name=Path(plan.path).name, kind="capture")
    bogons = capture_bogons(options.routable)
    t = result.totals

    def on_observation(obs: Observation) -> None:
        out = capture_record(obs, judge, run_id=options.run_id, file_sha256=sha256,
                             vantage=vantage, pseudonym=pseudonym, bogons=bogons)
        if out is None:
            t.dns_ok += 1
            return
        rec = out[0]
        result.records.append(EncodedRecord.of(record_dict(rec)))
        if options.verbose:
            result.lines.append(verbose_line(rec))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CaptureWarning)
            obs = ChunkObserver(plan, on_observation, keylog=keylog)
            try:
                obs.run()
            finally:
                obs.close()
    except Exception as e:  # reported by the client; the other files go on
        result.error_kind, result.error = task_error(e)
        return result
    t.flows = obs.owned_flows
    t.dns_answers = obs.dns_answers
    t.add_stats(obs.stats)
    t.anomalies = Counter(obs.chunk_anomalies)
    result.warnings = list(obs.warnings)
    result.partial = obs.partial
    result.keylog_summary = obs.embedded_keylog.summary()
    return result


def merge_chunks(path: str, index: FileIndex, chunks: list[ChunkResult],
                 run_id: str) -> FileResult:
    """The file's result from all its chunks' (any order): records in chunk order, the
    input record with the figures summed (packets from the index)."""
    result = FileResult(path=path)
    chunks = sorted(chunks, key=lambda c: c.index)
    bad = next((c for c in chunks if c.error_kind is not None), None)
    if bad is not None:
        result.error_kind, result.error = bad.error_kind, bad.error
        return result
    t = result.totals
    notes: list[str] = []
    for c in chunks:
        result.records += c.records
        result.lines += c.lines
        t.add_figures(c.totals)
        notes += [w for w in c.warnings if w not in notes]
    t.packets = index.packets
    result.note, key_notes = keylog_notes(index.key_logs, chunks[-1].keylog_summary,
                                          t.decrypt_failed)
    notes += key_notes
    result.input = InputRecord(
        run_id=run_id, path=path, sha256=index.sha256, size=index.size,
        records=len(result.records), complete=True, partial=any(c.partial for c in chunks),
        format=index.format, packets=index.packets, flows=t.flows, handshakes=t.handshakes,
        anomalies=dict(sorted(t.anomalies.items())), warnings=tuple(notes),
        anonymize_key_id=None)
    return result

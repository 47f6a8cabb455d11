"""``tlswatch analyse`` on a Dask cluster: one task per capture file, or per chunk of a large
one.

A file task runs :func:`tlswatch.cli.analyse.analyse_file` in a worker and returns the file's
records and input record. A file of ``split_size`` bytes or more (uncompressed pcap/pcapng)
is first indexed by one task (:func:`tlswatch.distributed.split.index_file`: its SHA-256 and
record offsets, one pass) and then analysed by one task per chunk
(:func:`~tlswatch.distributed.split.analyse_chunk`); the client merges the chunks. Nothing is
written in a worker: the caller writes each file's result through its one sink as the file
completes, the input record after the records, so ``--resume`` works as in a single process
(a split file is complete only once all its chunks are in). A task whose worker dies is
rescheduled by Dask on another worker (and a task that raises is retried, ``retries=2``):
since workers never write, a retried file or chunk is written once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlswatch.cli.analyse import AnalyseOptions, FileResult, analyse_file
from tlswatch.distributed.cluster import require_dask
from tlswatch.distributed.split import (
    ChunkResult,
    FileIndex,
    analyse_chunk,
    index_file,
    merge_chunks,
)

__all__ = ["DEFAULT_SPLIT_SIZE", "RETRIES", "analyse_files", "chunk_count"]

RETRIES = 2
DEFAULT_SPLIT_SIZE = 256 << 20
TASK = analyse_file  # what each file task runs (tests swap it for one that kills its worker)
CHUNK_TASK = analyse_chunk  # what each chunk task runs (likewise)
INDEX_TASK = index_file


@dataclass(slots=True)
class _Job:
    path: Path
    explicit: bool
    known: str | None
    index: FileIndex | None = None
    chunks: list[ChunkResult] = field(default_factory=list)


def chunk_count(size: int, split_size: int, workers: int) -> int:
    """Chunks for a file of ``size`` bytes: one per ``split_size``, at least one per worker
    (0 or 1: not split)."""
    if split_size <= 0 or size < split_size:
        return 1
    return max(workers, -(-size // split_size))


def analyse_files(client: Any, files: Sequence[tuple[Path, bool, str | None]],
                  options: AnalyseOptions, *, split_size: int = 0
                  ) -> Iterator[tuple[Path, bool, FileResult]]:
    """Submit the tasks for each (path, given explicitly, known sha256) and yield (path,
    explicit, result) in completion order. Files of ``split_size`` bytes or more (0: none)
    are split across the workers. A task that fails for good (its worker died too often, or
    the task kept raising) gives a result with ``error_kind`` "internal"."""
    dd = require_dask()
    batch = uuid.uuid4().hex[:12]
    owner: dict[str, tuple[_Job, str]] = {}  # future key -> (job, "file"|"index"|"chunk")
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    futures = []
    n = 0

    def submit(job: _Job, kind: str, fn: Any, *args: Any) -> Any:
        nonlocal n
        n += 1
        key = f"tlswatch-analyse-{batch}-{kind}-{n}"
        owner[key] = (job, kind)
        return client.submit(fn, *args, key=key, pure=False, retries=RETRIES)

    try:
        for path, explicit, known in files:
            job = _Job(path, explicit, known)
            try:
                k = chunk_count(path.stat().st_size, split_size, workers)
            except OSError:
                k = 1  # the file task reports it
            if k > 1:
                futures.append(submit(job, "index", INDEX_TASK, str(path), k))
            else:
                futures.append(submit(job, "file", TASK, str(path), options, known))
        ac = dd.as_completed(futures, loop=client.loop)
        futures = []  # as_completed holds them now; each is dropped once its result is in
        for fut in ac:
            job, kind = owner.pop(fut.key)
            try:
                value = fut.result()
            except Exception as e:  # KilledWorker, or a task that raised on every try
                value = e
            fut.release()
            if isinstance(value, Exception):
                if kind == "chunk" and job.index is None:
                    continue  # the file already failed
                job.index = None
                yield job.path, job.explicit, FileResult(
                    path=str(job.path), error_kind="internal",
                    error=f"{type(value).__name__} on the cluster: {value}")
            elif kind == "file":
                yield job.path, job.explicit, value
            elif kind == "index":
                if value is None:  # not splittable after all: one task for the file
                    ac.add(submit(job, "file", TASK, str(job.path), options, job.known))
                    continue
                job.index = value
                for plan in value.plans:
                    ac.add(submit(job, "chunk", CHUNK_TASK, plan, options, value.sha256))
            elif job.index is not None:
                job.chunks.append(value)
                if len(job.chunks) == len(job.index.plans):
                    yield job.path, job.explicit, merge_chunks(
                        str(job.path), job.index, job.chunks, options.run_id)
    finally:
        for f in futures:
            f.cancel()


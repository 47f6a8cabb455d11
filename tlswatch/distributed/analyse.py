"""``tlswatch analyse`` on a Dask cluster: one task per capture file.

A task runs :func:`tlswatch.cli.analyse.analyse_file` in a worker and returns the file's
records and input record; nothing is written in a worker. The caller writes each result
through its one sink as tasks complete, the input record after the records, so ``--resume``
works as in a single process. A task whose worker dies is rescheduled by Dask on another
worker (and a task that raises is retried, ``retries=2``): since workers never write, a
retried file is written once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tlswatch.cli.analyse import AnalyseOptions, FileResult, analyse_file
from tlswatch.distributed.cluster import require_dask

__all__ = ["RETRIES", "analyse_files"]

RETRIES = 2
TASK = analyse_file  # what each task runs (tests swap it for one that kills its worker)


def analyse_files(client: Any, files: Sequence[tuple[Path, bool, str | None]],
                  options: AnalyseOptions) -> Iterator[tuple[Path, bool, FileResult]]:
    """Submit one task per (path, given explicitly, known sha256) and yield (path, explicit,
    result) in completion order. A task that fails for good (its worker died too often, or
    the task kept raising) yields a result with ``error_kind`` "internal"."""
    dd = require_dask()
    batch = uuid.uuid4().hex[:12]
    owner: dict[str, tuple[Path, bool]] = {}
    futures = []
    try:
        for i, (path, explicit, known) in enumerate(files):
            key = f"tlswatch-analyse-{batch}-{i}"
            owner[key] = (path, explicit)
            futures.append(client.submit(TASK, str(path), options, known, key=key,
                                         pure=False, retries=RETRIES))
        ac = dd.as_completed(futures, loop=client.loop)
        futures = []  # as_completed holds them now; each is dropped once its result is in
        for fut in ac:
            path, explicit = owner[fut.key]
            try:
                result = fut.result()
            except Exception as e:  # KilledWorker, or a task that raised on every try
                result = FileResult(path=str(path), error_kind="internal",
                                    error=f"{type(e).__name__} on the cluster: {e}")
            fut.release()
            yield path, explicit, result
    finally:
        for f in futures:
            f.cancel()

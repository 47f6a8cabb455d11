"""``tlswatch probe --jobs N``: the campaign in N forked processes on this machine.

One CPython process tops out near one core of TLS handshakes (OpenSSL plus the event loop);
``--jobs`` runs N campaigns at once without a cluster to start (the workers are forked: the
judge, stores and options are already loaded). This process reads the targets and hands them
out in batches to whichever worker asks (so a slow worker gets fewer), and writes every
record through its one sink as it comes back: ``--resume`` works as with one process, and a
record a worker sent is never lost by a later failure. Each worker runs with ``--rate``,
``--per-ip-rate`` and ``--concurrency`` divided by N, so the limits hold for the whole
campaign whichever worker measures an address.

The protocol on each worker's pipe: the worker asks ``("need",)``, gets a list of tasks (an
empty list: no more), and sends ``("records", [EncodedRecord], [error lines])`` as records
complete, then ``("done", Summary)``. Nothing is sent unasked, so neither side can block the
other with a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any, Final

from tlswatch.classify.chain import ChainJudge
from tlswatch.cli.jobs import die_with_parent
from tlswatch.distributed.probe import shard_options
from tlswatch.probe.campaign import CampaignOptions, Summary, run_campaign
from tlswatch.probe.inputs import Task
from tlswatch.sinks.base import EncodedRecord

__all__ = ["TASK_BATCH", "can_fork", "run_forked"]

TASK_BATCH: Final = 64  # tasks per hand-out: a worker asks again when it has used them
_RECORD_BATCH: Final = 32  # records per message (and at least every _FLUSH_S)
_FLUSH_S: Final = 0.2


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


class _PipeSink:
    """A worker's sink: records go to the parent in small batches."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.batch: list[EncodedRecord] = []
        self.errors: list[str] = []
        self.last = time.monotonic()

    def write(self, record: Any) -> None:
        self.batch.append(EncodedRecord.of(record))
        if len(self.batch) >= _RECORD_BATCH or time.monotonic() - self.last >= _FLUSH_S:
            self.flush()

    def checkpoint(self) -> None:
        self.flush()

    def flush(self) -> None:
        if self.batch or self.errors:
            self.conn.send(("records", self.batch, self.errors))
            self.batch, self.errors = [], []
        self.last = time.monotonic()


def _asked_tasks(conn: Connection, sink: _PipeSink) -> Iterator[Task]:
    """The worker's task stream: a batch at a time from the parent, asked for when needed."""
    while True:
        sink.flush()  # (records first: the parent writes them while it deals)
        conn.send(("need",))
        batch: list[Task] = conn.recv()
        if not batch:
            return
        yield from batch


def _worker(conn: Connection, options: CampaignOptions, judge: ChainJudge,
            run_id: str, parent: int) -> None:
    """In the forked child: one campaign over the tasks the parent hands out."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent decides what an interrupt does
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sink = _PipeSink(conn)
    summary = asyncio.run(run_campaign(_asked_tasks(conn, sink), options, sink, judge=judge,
                                       run_id=run_id, on_error=sink.errors.append))
    sink.flush()
    conn.send(("done", summary))
    conn.close()


def run_forked(tasks: Iterable[Task], options: CampaignOptions, writer: Any, *, jobs: int,
               judge: ChainJudge, run_id: str, done: set[str],
               on_record: Callable[[EncodedRecord], None],
               on_error: Callable[[str], None]) -> Summary:
    """Run the campaign in ``jobs`` forked workers; records are written here as they come
    (checkpointed as one process does). SIGINT raises KeyboardInterrupt, SIGTERM
    ``asyncio.CancelledError``, as in one process; the workers are stopped either way."""
    ctx = multiprocessing.get_context("fork")
    opts = shard_options(options, jobs, resolves=True)
    it = (t for t in tasks if t.id not in done)
    total = Summary()
    t0 = time.perf_counter()
    procs: list[Any] = []
    conns: list[Connection] = []
    written = set(done)
    since_checkpoint, last_checkpoint = 0, time.monotonic()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise asyncio.CancelledError

    previous = None
    with contextlib.suppress(ValueError):  # (not the main thread: no handler)
        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        gc.freeze()  # (the workers never walk, so never copy, what is loaded now)
        for _ in range(jobs):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(theirs, opts, judge, run_id, os.getpid()),
                               name="tlswatch-probe-job", daemon=True)
            proc.start()
            theirs.close()
            procs.append(proc)
            conns.append(mine)
        gc.unfreeze()
        open_ = list(conns)
        exhausted = False
        while open_:
            for c in wait(open_):
                assert isinstance(c, Connection)
                try:
                    msg = c.recv()
                except EOFError:  # a worker died: its unanswered tasks are not written
                    open_.remove(c)
                    total.errors += 1
                    on_error("a probe worker died; run again with --resume for the rest")
                    continue
                if msg[0] == "need":
                    batch: list[Task] = []
                    if not exhausted:
                        for task in it:
                            batch.append(task)
                            if len(batch) >= TASK_BATCH:
                                break
                        exhausted = len(batch) < TASK_BATCH
                    c.send(batch)
                elif msg[0] == "records":
                    for rec in msg[1]:
                        if rec.id in written:
                            continue
                        written.add(rec.id)
                        writer.write(rec)
                        total.count(rec.verdict, rec.outcome)
                        on_record(rec)
                    for line in msg[2]:
                        on_error(line)
                    since_checkpoint += len(msg[1])
                    if since_checkpoint >= options.checkpoint_records or (
                            time.monotonic() - last_checkpoint >= options.checkpoint_seconds):
                        writer.checkpoint()
                        since_checkpoint, last_checkpoint = 0, time.monotonic()
                else:  # done
                    s: Summary = msg[1]
                    total.add(s)
                    total.max_in_flight += s.max_in_flight  # (the workers run at once)
                    open_.remove(c)
        writer.checkpoint()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        for c in conns:
            c.close()
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join()
    total.elapsed_s = time.perf_counter() - t0
    return total

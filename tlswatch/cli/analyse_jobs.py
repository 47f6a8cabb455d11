"""``tlswatch analyse --jobs N``: one capture read by N local processes at once.

Each process (forked: the judge, key logs and trust stores are already loaded) reads the
whole file but keeps only its share of the flows (``read_flows(share=(i, N))``: the C fast
path skips the other shares' packets without decoding them), judges them and sends its
records here in batches; this process hashes the file meanwhile, if it was not already
while the command loaded (``tlswatch.cli.prehash``; the records need the hash: the workers
wait for it, holding their observations, as one process does) and writes the
records through its one sink as they arrive, then the file's input record with the shares'
figures added up. So ``--resume`` works as with one process, and a worker that dies only
costs that file (reported; its input record is not written, so a resumed run does it again).

Records come in the order the shares send them, not in one process's order; the records
themselves are the same (tests compare them). Limits: see ``read_flows``' shares in
docs/capture.md.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Final

from tlswatch.capture import open_capture
from tlswatch.capture.observe import ObserveStats
from tlswatch.cli import analyse as base
from tlswatch.cli.jobs import die_with_parent
from tlswatch.model import InputRecord
from tlswatch.sinks.base import EncodedRecord

__all__ = ["MIN_SHARED_BYTES", "can_share", "run_shared"]

#: Smaller files are read by one process: forking and merging would cost more than it saves.
MIN_SHARED_BYTES: Final = 4 << 20
_SEND_BATCH: Final = 256


def can_share() -> bool:
    """Forking is how the workers get the loaded engine: POSIX only."""
    return "fork" in multiprocessing.get_all_start_methods()


@dataclass(slots=True)
class _ShareDone:
    """What a worker sends last: its figures (records went before)."""

    input: InputRecord
    totals: base._Totals
    stats: ObserveStats
    keylog_summary: str
    reader_warnings: list[str] = field(default_factory=list)


class _PipeWriter:
    """The worker's sink: records go to the parent in batches, with their -v lines."""

    def __init__(self, conn: Connection, progress: base._CollectProgress) -> None:
        self.conn = conn
        self.progress = progress
        self.batch: list[EncodedRecord] = []

    def write(self, record: Any) -> None:
        self.batch.append(EncodedRecord.of(record))
        if len(self.batch) >= _SEND_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            lines, self.progress.lines = self.progress.lines, []
            self.conn.send(("records", self.batch, lines))
            self.batch = []


class _ShareRun(base._FileRun):
    """A worker's file run: its hash comes from the parent instead of a second read."""

    def __init__(self, sha_conn: Connection, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sha_conn = sha_conn

    def _hash(self) -> None:
        try:
            digest = self._sha_conn.recv()
        except EOFError:
            digest = ""
        if digest:
            self._digest = digest
        else:  # the parent gave up on this file (a duplicate, an error): stop quietly
            self._hash_error = OSError("stopped by the parent")


def _worker(index: int, count: int, path: Path, make_run: Callable[..., base._FileRun],
            sha_conn: Connection, out: Connection, verbose: bool, parent: int) -> None:
    """In the forked child: observe, judge and send one share of ``path``."""
    die_with_parent(parent)
    progress = base._CollectProgress(verbose=verbose)
    writer = _PipeWriter(out, progress)
    try:
        run = make_run(path, writer=writer, progress=progress, share=(index, count),
                       sha_conn=sha_conn)
        inp = run.run()
        writer.flush()
        obs = run.observer
        assert obs is not None
        out.send(("done", _ShareDone(inp, run.totals, obs.stats,
                                     obs.embedded_keylog.summary(), list(obs.warnings))))
    except BaseException as e:  # every failure goes to the parent, as data
        kind, msg = base.task_error(e) if isinstance(e, Exception) else (
            "internal", f"{type(e).__name__}")
        out.send(("error", kind, msg))
    finally:
        out.close()


def run_shared(path: Path, jobs: int, *, writer: base._Writer, existing: base._Existing,
               progress: base._FileProgress, totals: base._Totals, seen_sha: dict[str, str],
               known_sha: str | None, run_kwargs: dict[str, Any]
               ) -> tuple[InputRecord, str | None]:
    """Analyse ``path`` with ``jobs`` processes; write its records and return its input
    record (not yet written) and note. Raises what :class:`~tlswatch.cli.analyse._FileRun`
    would (``_Duplicate``, ``CaptureFormatError``, ``OSError``) and ``RuntimeError`` when a
    worker failed inside tlswatch."""
    open_capture(path).close()  # not a capture: one error here, before any fork
    ctx = multiprocessing.get_context("fork")
    verbose = progress.verbose

    def make_run(p: Path, *, writer: base._Writer, progress: base._FileProgress,
                 share: tuple[int, int], sha_conn: Connection) -> base._FileRun:
        return _ShareRun(sha_conn, p, writer=writer, progress=progress, totals=base._Totals(),
                         existing=base._Existing(), seen_sha={}, known_sha=None, share=share,
                         **run_kwargs)

    procs: list[Any] = []
    sha_out: list[Connection] = []
    inbox: list[Connection] = []
    # Objects that exist now go to the collector's permanent generation: the workers then
    # never walk (and so never copy-on-write) the loaded judge, stores and modules.
    gc.freeze()
    try:
        for i in range(jobs):
            sha_r, sha_w = ctx.Pipe(duplex=False)
            rec_r, rec_w = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker, name=f"tlswatch-share-{i}",
                               args=(i, jobs, path, make_run, sha_r, rec_w, verbose,
                                     os.getpid()),
                               daemon=True)
            proc.start()
            sha_r.close()
            rec_w.close()
            procs.append(proc)
            sha_out.append(sha_w)
            inbox.append(rec_r)
        gc.unfreeze()  # (this process's own objects are collectable again)
        sha = _hash_then_tell(path, known_sha, seen_sha, sha_out)
        done, written = _collect(inbox, writer=writer, existing=existing, progress=progress,
                                 totals=totals)
        seen_sha[sha] = str(path)
        inp, note = _merge(path, sha, done, totals)
        return replace(inp, records=written), note
    finally:
        for c in (*sha_out, *inbox):
            c.close()
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join()


def _hash_then_tell(path: Path, known: str | None, seen_sha: dict[str, str],
                    conns: list[Connection]) -> str:
    """The file's SHA-256 (from the early hash, or computed here while the workers read:
    they hold their observations until it comes), sent to every worker; a duplicate of a
    file done in this run, or a read error, tells them to stop."""
    try:
        value = known or base._sha256_now(path)
    except OSError:
        _tell(conns, "")
        raise
    if value in seen_sha:
        _tell(conns, "")
        raise base._Duplicate(seen_sha[value])
    _tell(conns, value)
    return value


def _tell(conns: list[Connection], digest: str) -> None:
    for c in conns:
        with contextlib.suppress(OSError):  # (a worker that already failed says so later)
            c.send(digest)


def _collect(inbox: list[Connection], *, writer: base._Writer, existing: base._Existing,
             progress: base._FileProgress, totals: base._Totals
             ) -> tuple[list[_ShareDone], int]:
    """Write the workers' records as they come; their final figures in share order, and
    how many records were written."""
    done: dict[int, _ShareDone] = {}
    written = 0
    failure: tuple[str, str] | None = None
    index = {id(c): i for i, c in enumerate(inbox)}
    open_ = list(inbox)
    while open_:
        for c in wait(open_):
            assert isinstance(c, Connection)
            try:
                msg = c.recv()
            except EOFError:  # the worker died without a word
                open_.remove(c)
                if index[id(c)] not in done and failure is None:
                    failure = ("internal", f"the worker for share {index[id(c)]} of "
                               f"{len(inbox)} died")
                continue
            if msg[0] == "records":
                written += base.write_encoded(msg[1], msg[2], writer=writer,
                                              existing=existing, progress=progress,
                                              totals=totals)
            elif msg[0] == "done":
                done[index[id(c)]] = msg[1]
            elif failure is None:
                failure = (msg[1], msg[2])
    if failure is not None:
        kind, text = failure
        if kind == "os":
            raise OSError(text)
        if kind == "format":
            from tlswatch.capture import CaptureFormatError

            raise CaptureFormatError(text)
        raise RuntimeError(text)
    return [done[i] for i in sorted(done)], written


def _merge(path: Path, sha: str, shares: list[_ShareDone], totals: base._Totals
           ) -> tuple[InputRecord, str | None]:
    """The file's input record from its shares' (share 0 saw the file's own anomalies and
    warnings and every packet; flows, handshakes and the rest add up)."""
    first = shares[0]
    stats = ObserveStats()
    for s in shares:
        for name in ObserveStats.__dataclass_fields__:
            if name not in ("key_logs", "reassembled"):  # (every share sees those)
                setattr(stats, name, getattr(stats, name) + getattr(s.stats, name))
        totals.add_figures(s.totals)
    stats.key_logs, stats.reassembled = first.stats.key_logs, first.stats.reassembled
    totals.packets += first.totals.packets
    # every share reassembled every fragmented datagram (before knowing whose it was)
    totals.reassembled -= sum(s.totals.reassembled for s in shares[1:])
    note, key_notes = base.keylog_notes(stats.key_logs, first.keylog_summary,
                                        stats.decrypt_failed)
    anomalies: dict[str, int] = {}
    for s in shares:
        for k, v in s.input.anomalies.items():
            anomalies[k] = anomalies.get(k, 0) + v
    inp = replace(
        first.input, sha256=sha, size=path.stat().st_size,
        records=0,  # (set by the caller: what was written)
        partial=any(s.input.partial for s in shares),
        flows=sum(s.input.flows for s in shares),
        handshakes=sum(s.input.handshakes for s in shares),
        anomalies=dict(sorted(anomalies.items())),
        warnings=(*first.reader_warnings, *key_notes))
    return inp, note


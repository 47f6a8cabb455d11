"""``tlswatch probe`` on a Dask cluster: targets × vantages sharded across workers.

The caller streams the campaign's tasks (never all in memory) into ``shards`` shards and
sends each shard's tasks in batches; a batch runs as one ordinary campaign
(:func:`tlswatch.probe.campaign.run_campaign`) in a worker and sends its records back; the
caller writes them through its one sink, skipping ids already written, so ``--resume`` works
as in one process. Rate limits stay global:

* a shard runs **one batch at a time**, with ``rate / shards`` (and ``concurrency / shards``,
  at least 1); a batch that follows another of its shard first waits one interval of each
  limit, so the spacing holds across batches too;
* **per IP** (with ``--per-ip-rate``; else tasks are dealt round-robin): a task whose IP is
  known up front (``--connect``, ``--vantages``) goes to the shard of its IP (a hash), which
  then owns every measurement of that IP: it gets the whole ``--per-ip-rate``. A batch
  with names to resolve (the IP is known only after DNS, and may be another shard's) runs
  with ``per_ip_rate / shards``, so the global per-IP rate holds however names resolve.

Workers never write: a batch whose worker dies is run again on another (Dask retries), and
its records reach the sink once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tlswatch.classify.chain import ChainJudge
from tlswatch.distributed.cluster import require_dask
from tlswatch.model import Record, to_dict
from tlswatch.probe.campaign import CampaignOptions, Summary, run_campaign
from tlswatch.probe.inputs import Task

__all__ = ["BATCH", "RETRIES", "BatchResult", "JudgeSpec", "probe_batch", "probe_sharded",
           "shard_options"]

RETRIES = 2
BATCH = 64  # tasks per batch: small enough to stream, large enough to keep workers busy


@dataclass(frozen=True, slots=True)
class JudgeSpec:
    """How to build the judge in a worker (trust stores do not pickle)."""

    stores: tuple[str, ...]
    registries: tuple[str, ...]
    at: datetime


@dataclass(slots=True)
class BatchResult:
    shard: int
    records: list[dict[str, Any]] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
    errors: list[str] = field(default_factory=list)


_JUDGES: dict[JudgeSpec, ChainJudge] = {}
_JUDGES_LOCK = threading.Lock()


def _judge(spec: JudgeSpec) -> ChainJudge:
    from tlswatch.cli.probe_options import build_judge

    with _JUDGES_LOCK:
        judge = _JUDGES.get(spec)
        if judge is None:
            judge = _JUDGES[spec] = build_judge(spec.stores, tuple(map(Path, spec.registries)),
                                                spec.at)
        return judge


def shard_options(options: CampaignOptions, shards: int, *, resolves: bool
                  ) -> CampaignOptions:
    """A shard's share of the limits (see the module doc)."""
    per_ip = options.per_ip_rate
    if per_ip is not None and resolves:
        per_ip /= shards
    return dataclasses.replace(
        options, rate=None if options.rate is None else options.rate / shards,
        per_ip_rate=per_ip, concurrency=max(1, options.concurrency // shards), keylog=None)


def probe_batch(shard: int, tasks: list[Task], options: CampaignOptions, judge: JudgeSpec,
                run_id: str, wait_s: float) -> BatchResult:
    """Run one batch as a campaign in this worker; records come back, nothing is written."""
    if wait_s > 0:
        time.sleep(wait_s)
    out = BatchResult(shard)

    class _Keep:
        def write(self, record: Any) -> None:
            out.records.append(to_dict(record) if isinstance(record, Record) else record)

        def checkpoint(self) -> None:
            pass

    out.summary = asyncio.run(run_campaign(tasks, options, _Keep(), judge=_judge(judge),
                                           run_id=run_id, on_error=out.errors.append))
    return out


TASK: Callable[..., BatchResult] = probe_batch  # tests swap it for one that kills its worker


def _shard_of(task: Task, shards: int, rr: list[int], by_ip: bool) -> int:
    ip = task.ip
    if by_ip and ip is not None:
        return zlib.crc32(ip.encode()) % shards
    rr[0] = (rr[0] + 1) % shards
    return rr[0]


def probe_sharded(client: Any, tasks: Iterable[Task], options: CampaignOptions,
                  judge: JudgeSpec, *, run_id: str, done: set[str], shards: int = 0
                  ) -> Iterator[BatchResult]:
    """Run ``tasks`` (minus ids in ``done``) on the cluster; yield each batch's result as it
    completes. ``shards`` defaults to the number of workers."""
    dd = require_dask()
    shards = shards or max(1, len(client.scheduler_info().get("workers", {})))
    batch_id = uuid.uuid4().hex[:12]
    queues: list[deque[Task]] = [deque() for _ in range(shards)]
    busy: list[bool] = [False] * shards
    started: list[bool] = [False] * shards
    rr = [-1]
    by_ip = options.per_ip_rate is not None  # else round-robin: every shard busy
    n = 0
    ac = dd.as_completed([], loop=client.loop, with_results=False)
    it = iter(tasks)
    exhausted = False

    def submit(s: int) -> None:
        nonlocal n
        batch = [queues[s].popleft() for _ in range(min(BATCH, len(queues[s])))]
        needs_dns = any(t.ip is None for t in batch)
        opts = shard_options(options, shards, resolves=needs_dns)
        wait = 0.0
        if started[s]:  # keep the spacing from the shard's previous batch
            wait = max([1.0 / r for r in (opts.rate, opts.per_ip_rate) if r] or [0.0])
        started[s] = busy[s] = True
        n += 1
        ac.add(client.submit(TASK, s, batch, opts, judge, run_id, wait, pure=False,
                             retries=RETRIES, key=f"tlswatch-probe-{batch_id}-{s}-{n}"))

    def fill() -> None:
        """Pull tasks until a busy shard has a full batch waiting (memory stays bounded)
        or the input ends; an idle shard with a full batch starts it."""
        nonlocal exhausted
        while not exhausted and not any(busy[s] and len(queues[s]) >= BATCH
                                        for s in range(shards)):
            task = next(it, None)
            if task is None:
                exhausted = True
                break
            if task.id in done:
                continue
            s = _shard_of(task, shards, rr, by_ip)
            queues[s].append(task)
            if not busy[s] and len(queues[s]) >= BATCH:
                submit(s)
        if exhausted:
            for s in range(shards):
                if not busy[s] and queues[s]:
                    submit(s)

    fill()
    while not ac.is_empty():
        fut = next(ac)
        try:
            result: BatchResult = fut.result()
        except Exception as e:  # the batch failed for good (its workers kept dying)
            shard = int(fut.key.rsplit("-", 2)[-2])
            result = BatchResult(shard, errors=[f"a batch failed on the cluster: "
                                                f"{type(e).__name__}: {e}"])
            result.summary.errors = 1
        fut.release()
        busy[result.shard] = False
        if queues[result.shard] and (exhausted or len(queues[result.shard]) >= BATCH):
            submit(result.shard)
        yield result
        fill()

"""``tlswatch probe``: live handshakes to many targets (and vantages), judged and written.

Its options (but -o, --resume, --pcap and --format) are shared with ``tlswatch watch``:
see :mod:`tlswatch.cli.probe_options`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from tlswatch.classify.rules import RULES_VERSION
from tlswatch.cli.errors import InputError
from tlswatch.cli.jobs import parse_jobs
from tlswatch.cli.output import OUTPUT_HELP, check_output
from tlswatch.cli.probe_options import (
    CHECK_OPTIONS,
    RUN_OPTIONS,
    TARGET_OPTIONS,
    VERBOSE_OPTIONS,
    ProbeParams,
    apply_options,
    captive_failure,
    check_params,
    parse_tls_versions,
    prepare,
)
from tlswatch.cli.progress import Progress, summary_table
from tlswatch.ids import new_run_id
from tlswatch.probe.campaign import CampaignOptions, Summary, run_campaign
from tlswatch.probe.inputs import Task, count_lines
from tlswatch.probe.packet_capture import CaptureUnavailable, PacketCapture
from tlswatch.probe.runrecord import closing_run_record, run_record
from tlswatch.sinks.base import Sink, SinkError, is_empty_output, open_sink
from tlswatch.sinks.jsonl import JsonlWriter
from tlswatch.sinks.readers import output_state
from tlswatch.textsafe import terminal_safe

__all__ = ["parse_tls_versions", "probe"]

_PCAP = click.option(
    "--pcap", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
    help="Record this run's packets (TCP to the probed port, DNS) with tcpdump into "
         "FILE, as evidence: tlswatch analyse FILE then tells injected resets by "
         "TTL/IP ID. Needs tcpdump and capture privileges.")
_OUTPUT = click.option(
    "-o", "--output", metavar="FILE",
    help=OUTPUT_HELP)
_RESUME = click.option(
    "--resume", is_flag=True,
    help="Continue FILE of -o: skip targets already recorded there, append the rest "
         "(give the same targets and options as the first run).")
_DISTRIBUTED = [
    click.option("--workers", type=int, metavar="N",
                 help="Measure on a local Dask cluster of N worker processes (127.0.0.1 only); "
                      "needs tlswatch[distributed]."),
    click.option("--scheduler", metavar="tcp://HOST:PORT",
                 help="Measure on an existing Dask cluster (`dask scheduler`, `dask worker`): "
                      "targets x vantages are sharded across the workers, each with its share "
                      "of --rate/--per-ip-rate/--concurrency; records are written here."),
    click.option("--jobs", "jobs", metavar="N|auto", default="1", show_default=True,
                 help="Measure with N processes on this machine (auto: one per CPU), each "
                      "with 1/N of --rate/--per-ip-rate/--concurrency; records are written "
                      "here as they come. One process is bound to one core."),
]
_FORMAT = click.option(
    "--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl",
    show_default=True, help="Format of records on stdout (an -o FILE takes the format of its "
                            "extension).")


def _signals_cancel(task: asyncio.Task[Summary]) -> None:
    loop = asyncio.get_running_loop()
    # Not possible outside the main thread (e.g. some test runners) or on every platform.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)


@click.command()
@apply_options(TARGET_OPTIONS, [_PCAP], RUN_OPTIONS, [_OUTPUT, _RESUME], CHECK_OPTIONS,
               [_FORMAT], _DISTRIBUTED, VERBOSE_OPTIONS)
def probe(pcap: Path | None, output: str | None, resume: bool, fmt: str,
          workers: int | None = None, scheduler: str | None = None, jobs: str = "1",
          **kwargs: Any) -> None:
    """Handshake with each DOMAIN (and/or each target of -i FILE), judge the chain or the
    failure, and write one tlswatch/1 record per target × vantage (JSON Lines).

    Without --connect/--vantages each name is resolved (--resolver) and the first usable
    answer is measured; bogon answers are recorded, never connected to. Controls tell
    interception from a misconfigured site, and blocking from an outage.

    The output starts with a run record (kind "run": tool, rules, registry and store
    versions, OpenSSL, command line) and ends with the same run record with "ended" set; a
    resumed run appends its own pair with "resumed": true.

    Bad input lines are reported on stderr as FILE:LINE: message and skipped; a name that
    does not resolve is a measurement (dns/...), not an input error. Exit status: 0 when the
    campaign ran (whatever the verdicts); 2 for usage or input errors; 1 when some targets
    failed inside tlswatch (reported, no record: --resume retries them); 130/143 when
    interrupted (--resume continues).

    With --workers N or --scheduler, targets x vantages are measured by Dask workers in
    shards, each with its share of the rate limits (see docs/distributed.md); the records
    (the same set) are written here as batches finish, so --resume works the same. --jobs N
    does the same with N processes on this machine, without a cluster.
    """
    err = sys.stderr
    p = ProbeParams.pop_from(kwargs)
    assert not kwargs, kwargs
    if workers is not None and scheduler is not None:
        raise InputError("--workers and --scheduler are mutually exclusive")
    if workers is not None and workers < 1:
        raise InputError("--workers must be at least 1")
    distributed = workers is not None or scheduler is not None
    n_jobs = parse_jobs(jobs)
    if n_jobs > 1 and distributed:
        raise InputError("--jobs is for this machine; with --workers/--scheduler the cluster "
                         "shares the work")
    if n_jobs > 1 and p.keylog is not None:
        raise InputError("--keylog cannot be used with --jobs (one file, several writers)")
    if n_jobs > 1:
        from tlswatch.cli import probe_jobs
        if not probe_jobs.can_fork():
            n_jobs = 1  # (no fork on this platform: one process)
    if distributed:
        if p.keylog is not None:
            raise InputError("--keylog cannot be used with --workers/--scheduler (each "
                             "worker would need the file)")
        try:
            from tlswatch.distributed import cluster as dask_cluster
            dask_cluster.require_dask()
        except ImportError:
            raise InputError("--workers/--scheduler need Dask: install tlswatch[distributed]"
                             ) from None
    # -- options -----------------------------------------------------------------------
    checked = check_params(p)
    if output == "-":
        output = None
    out_path = Path(output) if output else None
    out_format = check_output(out_path, resume)
    if out_path is not None and not resume and not is_empty_output(out_path):
        raise InputError(f"{output} exists and is not empty: add --resume to continue it, "
                         "or choose another file")

    report_count = 0
    progress = Progress(err, live=err.isatty(), verbose=p.verbose)

    def report(msg: str) -> None:
        nonlocal report_count
        report_count += 1
        progress.message(msg)

    prep = prepare(p, checked, report)
    vantages, control, port = prep.vantages, prep.control, p.port
    tasks = prep.tasks()
    if progress.live:
        try:
            lines = len(p.domains) + sum(count_lines(f) for f in p.inputs if f != "-")
            progress.total = lines * max(1, len(vantages)) if "-" not in p.inputs else None
        except OSError:
            progress.total = None

    captive = asyncio.run(captive_failure(p, prep))
    if captive is not None:
        prep.options = dataclasses.replace(prep.options, captive_portal=True)
        progress.message(f"tlswatch: captive-portal pre-check failed ({captive}): "
                         "every verdict of this run is inconclusive")
    options, judge, keylog_obj, started = prep.options, prep.judge, prep.keylog, prep.started

    # -- output --------------------------------------------------------------------------
    if out_path is not None:
        try:
            # Opening repairs what a killed run left half-written, before the scan below.
            writer: Sink = open_sink(out_path, append=resume,
                                     batch=16 if out_format == "jsonl.gz" else 1)
        except SinkError as e:
            raise InputError(str(e)) from None
        except OSError as e:
            raise InputError(f"{output}: cannot write ({e.strerror or e})") from None
        existing = output_state(out_path) if resume else None
    else:
        writer = JsonlWriter(sys.stdout, batch=1)
        existing = None
    resumed = bool(existing and (existing.runs or existing.records))
    run_id = new_run_id(started)
    opening = run_record(
        run_id=run_id, started=started, command=[Path(sys.argv[0]).name, *sys.argv[1:]],
        rules_version=RULES_VERSION, registry_version=prep.registry.version,
        stores=prep.store_versions, resumed=resumed)
    if existing is not None and progress.total:
        progress.total = max(0, progress.total - len(existing.ids))

    capture: PacketCapture | None = None
    if pcap is not None:
        try:
            ports = {port} | {v.port for v in vantages if v.port}
            if control is not None and control.endpoint is not None and control.endpoint.port:
                ports.add(control.endpoint.port)
            tcp = " or ".join(f"tcp port {p}" for p in sorted(ports))
            # Watching resets live: a reset measurement gets the RST's TTL/IP ID evidence.
            local = not distributed and n_jobs == 1
            capture = PacketCapture(pcap, f"{tcp} or udp port 53", watch_resets=local)
            if local:  # (a capture cannot travel to another process)
                options = dataclasses.replace(options, resets=capture)
        except CaptureUnavailable as e:
            writer.close()
            raise InputError(f"--pcap {pcap}: {e}") from None

    summary: Summary | None = None
    status = 0
    try:
        writer.write(opening)
        writer.checkpoint()

        async def main() -> Summary:
            current = asyncio.current_task()
            assert current is not None
            _signals_cancel(current)
            return await run_campaign(
                tasks, options, writer, judge=judge, run_id=run_id,
                done=existing.ids if existing else frozenset(),
                on_record=progress.record,
                on_error=lambda m: progress.message(f"tlswatch: {m}"))

        if n_jobs > 1:
            summary = probe_jobs.run_forked(
                tasks, options, writer, jobs=n_jobs, judge=judge, run_id=run_id,
                done=set(existing.ids) if existing else set(),
                on_record=lambda rec: _progress_record(
                    progress, rec.verdict, rec.outcome,
                    lambda: json.loads(rec.line).get("target", {}).get("domain", "")),
                on_error=lambda m: progress.message(f"tlswatch: {m}"))
        elif distributed:
            summary = _run_distributed(
                tasks, options, writer, p=p, started=started, run_id=run_id,
                done=set(existing.ids) if existing else set(), progress=progress,
                workers=workers, scheduler=scheduler)
        else:
            summary = asyncio.run(main())
        writer.write(closing_run_record(opening, datetime.now(UTC)))
        status = 1 if summary.errors else 0
    except (KeyboardInterrupt, asyncio.CancelledError) as e:
        progress.message("tlswatch: interrupted; run again with --resume to finish")
        status = 130 if isinstance(e, KeyboardInterrupt) else 128 + signal.SIGTERM
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as other filters do.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    finally:
        if capture is not None:
            capture.stop()
        progress.close()
        try:
            writer.close()
        except BrokenPipeError:
            status = status or 1
        if keylog_obj is not None:
            keylog_obj.close()
    if summary is not None:
        err.write(summary_table(summary, bad_lines=report_count) + "\n")
    if status:
        sys.exit(status)



def _progress_record(progress: Progress, verdict: str, outcome: str,
                     domain: Callable[[], str]) -> None:
    """A record another process measured, written here: count it, say it (-v)."""
    progress.done += 1
    progress.counts[verdict] += 1
    if progress.verbose:
        progress.message(f"{verdict:<12} {outcome}  {terminal_safe(domain())}")


def _run_distributed(tasks: Iterable[Task], options: CampaignOptions, writer: Sink, *,
                     p: ProbeParams, started: datetime, run_id: str, done: set[str],
                     progress: Progress, workers: int | None, scheduler: str | None
                     ) -> Summary:
    """The campaign on a Dask cluster: batches' records written here as they come back."""
    import time

    from tlswatch.distributed import cluster as dask_cluster
    from tlswatch.distributed.probe import JudgeSpec, probe_sharded

    spec = JudgeSpec(tuple(p.stores), tuple(map(str, p.registries)), started)
    total = Summary()
    written = set(done)
    t0 = time.perf_counter()
    with dask_cluster.open_client(workers=workers, scheduler=scheduler) as client:
        for res in probe_sharded(client, tasks, options, spec, run_id=run_id, done=done):
            for msg in res.errors:
                progress.message(f"tlswatch: {msg}")
            for rec in res.records:
                if rec["id"] in written:  # (a batch run twice is written once)
                    continue
                written.add(rec["id"])
                writer.write(rec)
                total.count(rec["verdict"], rec["outcome"])
                _progress_record(progress, rec["verdict"], rec["outcome"],
                                 functools.partial(str, rec["target"]["domain"]))
            writer.checkpoint()
            total.add(res.summary)
            total.max_in_flight = max(total.max_in_flight, res.summary.max_in_flight)
    total.elapsed_s = time.perf_counter() - t0
    return total

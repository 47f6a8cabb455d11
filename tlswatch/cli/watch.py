"""``tlswatch watch``: repeat a probe campaign on a schedule and serve Prometheus metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from tlswatch.classify.rules import RULES_VERSION
from tlswatch.cli.errors import InputError
from tlswatch.cli.probe_options import (
    CHECK_OPTIONS,
    RUN_OPTIONS,
    TARGET_OPTIONS,
    VERBOSE_OPTIONS,
    ProbeParams,
    apply_options,
    captive_failure,
    check_params,
    prepare,
)
from tlswatch.cli.progress import Progress
from tlswatch.ids import new_run_id
from tlswatch.model import Record
from tlswatch.probe.campaign import Summary, run_campaign
from tlswatch.probe.runrecord import closing_run_record, run_record
from tlswatch.sinks.base import Sink, SinkError, open_sink
from tlswatch.sinks.jsonl import JsonlWriter
from tlswatch.watch.loop import (
    is_loopback_host,
    parse_duration,
    parse_listen,
    stop_on_signals,
    watch_loop,
)
from tlswatch.watch.metrics import Metrics

__all__ = ["watch"]

_WATCH_OPTIONS = [
    click.option("-o", "--output", metavar="FILE",
                 help="Append every campaign's records (each between its run records) to "
                      "FILE; the format follows the extension (.jsonl, .jsonl.gz, .csv, "
                      ".sqlite, .parquet). Default: JSON Lines on stdout."),
    click.option("--every", default="10m", show_default=True, metavar="DURATION",
                 help="Start a campaign on every tick of DURATION (e.g. 30s, 10m, 1h); a "
                      "campaign that overruns skips the ticks it missed."),
    click.option("--count", type=click.IntRange(1), metavar="N",
                 help="Stop after N campaigns (default: run until SIGINT/SIGTERM)."),
    click.option("--metrics", "metrics_addr", default="127.0.0.1:9109", show_default=True,
                 metavar="HOST:PORT",
                 help="Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: any "
                      "free port, printed on stderr)."),
    click.option("--metrics-public", is_flag=True,
                 help="Allow a --metrics address that is not loopback."),
]


@click.command()
@apply_options(TARGET_OPTIONS, RUN_OPTIONS, _WATCH_OPTIONS, CHECK_OPTIONS, VERBOSE_OPTIONS)
def watch(output: str | None, every: str, count: int | None, metrics_addr: str,
          metrics_public: bool, **kwargs: Any) -> None:
    """Measure the targets of a probe campaign again on every --every tick, write the records
    to -o FILE, and serve Prometheus metrics on --metrics (loopback by default).

    Takes the options of `tlswatch probe` (but --resume, --pcap and --format). Metrics:
    tlswatch_measurements_total{domain,vantage,verdict,outcome_class},
    tlswatch_interceptions_total{domain,vantage,incident},
    tlswatch_last_success_timestamp_seconds{domain,vantage},
    tlswatch_campaign_duration_seconds and tlswatch_campaigns_total. Label values are only
    the targets and vantage names given here and fixed vocabularies; anything else is
    counted as "other".

    SIGINT or SIGTERM stops it (a running campaign is cut short; its records so far stay).
    Exit status: 0 when stopped or after --count campaigns; 2 for usage or input errors;
    1 when some targets failed inside tlswatch.
    """
    err = sys.stderr
    p = ProbeParams.pop_from(kwargs)
    assert not kwargs, kwargs
    # -- options (all checked before anything is opened or probed) -----------------------
    checked = check_params(p)
    try:
        interval = parse_duration(every)
    except ValueError as e:
        raise InputError(f"--every {e}") from None
    try:
        host, port = parse_listen(metrics_addr)
    except ValueError as e:
        raise InputError(f"--metrics {e}") from None
    if not is_loopback_host(host) and not metrics_public:
        raise InputError(f"--metrics {metrics_addr}: not a loopback address; add "
                         "--metrics-public to serve metrics to other machines")
    if output == "-":
        output = None

    report_count = 0
    progress = Progress(err, live=False, verbose=p.verbose)

    def report(msg: str) -> None:
        nonlocal report_count
        report_count += 1
        progress.message(msg)

    # -- output (an unwritable one fails before any probing) ------------------------------
    try:
        sink: Sink = (open_sink(output, append=True, batch=1) if output
                      else JsonlWriter(sys.stdout, batch=1))
    except SinkError as e:
        raise InputError(str(e)) from None
    try:
        prep = prepare(p, checked, report, materialize=True)
    except BaseException:
        sink.close()
        raise
    assert prep.targets is not None
    metrics = Metrics((t.domain for t in prep.targets), (v.name for v in prep.vantages),
                      (e.incident for e in prep.registry.entries))

    # -- the metrics endpoint --------------------------------------------------------------
    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as e:
        sink.close()
        raise InputError(f"--metrics {metrics_addr}: cannot listen ({e.strerror or e})") \
            from None
    shown = f"[{host}]" if ":" in host else host
    progress.message(f"tlswatch: metrics on http://{shown}:{server.server_port}/metrics; "
                     f"a campaign every {every}")
    command = [Path(sys.argv[0]).name, *sys.argv[1:]]
    errors = 0

    async def campaign(n: int) -> None:
        nonlocal errors
        options = prep.options
        captive = await captive_failure(p, prep)
        if captive is not None:
            options = dataclasses.replace(options, captive_portal=True)
            progress.message(f"tlswatch: campaign {n}: captive-portal pre-check failed "
                             f"({captive}): its verdicts are inconclusive")
        started = datetime.now(UTC)
        opening = run_record(
            run_id=new_run_id(started), started=started, command=command,
            rules_version=RULES_VERSION, registry_version=prep.registry.version,
            stores=prep.store_versions)
        sink.write(opening)

        def on_record(rec: Record) -> None:
            metrics.observe(rec)
            progress.record(rec)

        summary = Summary()
        try:
            summary = await run_campaign(
                prep.tasks(), options, sink, judge=prep.judge, run_id=opening.run_id,
                on_record=on_record, on_error=lambda m: progress.message(f"tlswatch: {m}"))
            sink.write(closing_run_record(opening, datetime.now(UTC)))
        finally:
            sink.checkpoint()
        metrics.campaign_done(summary)
        errors += summary.errors
        verdicts = ", ".join(f"{v} {c}" for v, c in sorted(summary.verdicts.items()))
        progress.message(f"tlswatch: campaign {n}: {summary.records} records "
                         f"({verdicts or 'none'}) in {summary.elapsed_s:.1f}s")

    async def main() -> tuple[int, bool]:
        stop = asyncio.Event()
        undo = stop_on_signals(stop)
        try:
            return await watch_loop(campaign, every=interval, stop=stop, count=count)
        finally:
            undo()

    try:
        n, cut = asyncio.run(main())
        if cut:
            progress.message(f"tlswatch: stopped during campaign {n}")
        else:
            progress.message(f"tlswatch: stopped after {n} campaign(s)")
    except KeyboardInterrupt:
        progress.message("tlswatch: interrupted")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        progress.close()
        sink.close()
        if prep.keylog is not None:
            prep.keylog.close()
    if errors:
        sys.exit(1)

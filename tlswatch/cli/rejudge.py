"""``tlswatch rejudge``: recompute verdicts of stored results with today's rules and data."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from tlswatch.classify.chain import ChainJudge
from tlswatch.classify.rejudge import JudgeFor, Rejudge, RejudgeSummary
from tlswatch.classify.rules import RULES_VERSION
from tlswatch.cli.convert import AnomalyReport, same_file
from tlswatch.cli.errors import InputError
from tlswatch.ids import new_run_id
from tlswatch.probe.runrecord import closing_run_record, run_record
from tlswatch.sinks.base import FLAT_FORMATS, SinkError, open_sink, sink_format
from tlswatch.sinks.readers import read_records
from tlswatch.textsafe import terminal_safe
from tlswatch.x509.registry import InterceptionRegistry, RegistryError, load_registry
from tlswatch.x509.stores import StoreError, load_stores

__all__ = ["rejudge", "render_summary"]


def _judge_for(specs: tuple[str, ...], registry: InterceptionRegistry) -> JudgeFor:
    if not specs or specs == ("auto",):
        auto = ChainJudge(None, registry)  # auto: the Mozilla snapshot per record time
        return lambda _at: auto
    if "auto" not in specs:
        fixed = ChainJudge(load_stores(specs), registry)
        return lambda _at: fixed
    # auto mixed with named stores: the set differs by time; one judge (and cache) per set.
    judges: dict[tuple[tuple[str, str], ...], ChainJudge] = {}

    def judge_for(at: datetime) -> ChainJudge:
        stores = load_stores(specs, at=at)
        key = tuple((s.name, s.version) for s in stores)
        if key not in judges:
            judges[key] = ChainJudge(stores, registry)
        return judges[key]

    return judge_for


def render_summary(s: RejudgeSummary, show: int) -> str:
    """What changed: counts old -> new of verdicts and outcome classes, and example ids."""
    lines = [f"re-judged {s.records} records: {s.changed} changed, "
             f"{s.records - s.changed - s.skipped} unchanged, {s.skipped} not re-judgeable"]
    if s.details:
        lines.append(f"({s.details} of the unchanged differ in details only: validation, "
                     "chain facts, store versions or reasons)")
    if s.verdicts:
        lines.append("verdict changes (old -> new):")
        lines += [f"  {n:>7}  {a} -> {b}" for (a, b), n in s.verdicts.most_common()]
    if s.outcome_classes:
        lines.append("outcome class changes (old -> new):")
        lines += [f"  {n:>7}  {a} -> {b}" for (a, b), n in s.outcome_classes.most_common()]
    if s.examples and show:
        lines.append(f"first changed records (up to {show}):")
        for rid, old_v, new_v, old_o, new_o in s.examples[:show]:
            lines.append(f"  {terminal_safe(rid, 64)}  {old_v} -> {new_v}  "
                         f"({terminal_safe(old_o, 90)} -> {terminal_safe(new_o, 90)})")
    if s.skip_reasons:
        lines.append("not re-judgeable (passed through unchanged):")
        lines += [f"  {n:>7}  {terminal_safe(why, 100)}"
                  for why, n in s.skip_reasons.most_common(5)]
    return "\n".join(lines)


@click.command()
@click.argument("results", metavar="RESULTS")
@click.option("-o", "--output", required=True, metavar="NEW",
              help="Write the re-judged records here (.jsonl, .jsonl.gz, .sqlite/.db, .csv or "
                   ".parquet); must be new or empty.")
@click.option("--store", "stores", multiple=True, metavar="NAME|PATH|all|auto",
              help="Trust store(s) to validate against (repeatable). Default: auto, the "
                   "Mozilla snapshot nearest before each record's time.")
@click.option("--registry", "registries", multiple=True, type=click.Path(path_type=Path),
              help="Extra interception-CA registry file (JSON or PEM), repeatable; the "
                   "built-in registry is always used.")
@click.option("--show", type=click.IntRange(0), default=10, show_default=True, metavar="N",
              help="How many changed record ids to list.")
def rejudge(results: str, output: str, stores: tuple[str, ...],
            registries: tuple[Path, ...], show: int) -> None:
    """Re-judge stored results with today's rules, registry and trust stores.

    Every measurement in RESULTS (.jsonl, .jsonl.gz or .sqlite/.db) gets its verdict
    recomputed from its raw fields and is written, with the same id, to NEW; stdout says
    what changed: counts of old -> new verdicts and outcome classes, and the first changed
    ids. With unchanged rules, registry and stores every record comes back byte for byte.

    Raw fields used: the chain as presented (chain[].der_b64) for target.sni (or domain) at
    the record's time, the stage failure (dns/tcp/tls), blockpage and control. Only the
    judged parts (chain facts, validation, interception, verdict, outcome, confidence,
    rule_id, rules_version, reasons) change; a record without DER is copied unchanged and
    counted. Run (and input) records are copied; a run record of the re-judging is added.

    Exit status 0 when done; 2 with a one-line error for unreadable or flat (CSV/Parquet)
    RESULTS, a bad --store/--registry, or a NEW that exists or cannot be written.
    """
    err = sys.stderr
    try:
        in_fmt, _ = sink_format(results), sink_format(output)
    except SinkError as e:
        raise InputError(str(e)) from None
    if in_fmt in FLAT_FORMATS:
        raise InputError(f"{results}: CSV and Parquet hold only the flat projection, without "
                         "the raw chains: rejudge needs .jsonl, .jsonl.gz or .sqlite results")
    if same_file(Path(results), Path(output)):
        raise InputError(f"{results} is also the output")
    started = datetime.now(UTC)
    try:
        registry = load_registry(registries)
        judge_for = _judge_for(stores, registry)
    except (StoreError, RegistryError) as e:
        raise InputError(str(e)) from None
    report = AnomalyReport(err)
    try:
        stream = read_records(Path(results), on_bad=report)
        sink = open_sink(Path(output), append=False)
    except SinkError as e:
        raise InputError(str(e)) from None

    work = Rejudge(judge_for, max_examples=show)
    fixed_stores = [] if not stores or "auto" in stores else [
        (s.name, s.version) for s in load_stores(stores)]
    opening = run_record(
        run_id=new_run_id(started), started=started,
        command=[Path(sys.argv[0]).name, *sys.argv[1:]], rules_version=RULES_VERSION,
        registry_version=registry.version, stores=fixed_stores)
    others = 0
    try:
        sink.write(opening)
        for obj in stream:
            if obj.get("kind") not in (None, "measurement"):
                others += 1  # run and input records: copied as they are
                sink.write(obj)
                continue
            try:
                sink.write(work(obj))
            except StoreError as e:  # e.g. no auto snapshot for this time
                raise InputError(f"{results}: record {obj.get('id')}: {e}") from None
        # The stores actually used (auto picks one per record time) go in the closing record.
        sink.write(dataclasses.replace(closing_run_record(opening, datetime.now(UTC)),
                                       stores=tuple(work.summary.stores) or opening.stores))
        sink.close()
    except SinkError as e:
        raise InputError(str(e)) from None
    finally:
        with contextlib.suppress(SinkError, OSError):
            sink.close()
    click.echo(render_summary(work.summary, show))
    click.echo(f"wrote {work.summary.records} records, {others} run/input records copied "
               f"and this re-judging's run record to {output}"
               + (f"; {report.count} bad lines skipped" if report.count else ""))

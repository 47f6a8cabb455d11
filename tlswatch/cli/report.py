"""``tlswatch report``: summarise result files in the terminal, and optionally as HTML."""

from __future__ import annotations

import os
from pathlib import Path

import click

from tlswatch.cli.errors import InputError
from tlswatch.report import ReportInputError, ReportStats, read_into, render_html, render_summary

__all__ = ["report"]


@click.command()
@click.argument("results", nargs=-1, required=True, metavar="RESULTS...")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE",
              help="Also write a self-contained HTML report to FILE: charts (verdicts per "
                   "domain, interception over time, issuers seen) and the evidence of each "
                   "finding. It loads nothing from the network and runs no script.")
@click.option("--title", default="tlswatch report", show_default=True,
              help="Title of the HTML report.")
def report(results: tuple[str, ...], html_path: Path | None, title: str) -> None:
    """Summarise tlswatch/1 result files: verdicts per domain and vantage, interception
    CAs seen (with first and last seen), blocking methods per domain, and anomalies.

    RESULTS are JSON Lines (.jsonl, .jsonl.gz), or any other format the sinks write
    (SQLite, CSV, Parquet), read through tlswatch.sinks.readers; CSV and Parquet hold only
    the flat projection, so their evidence shows the leaf certificate only.

    Files are streamed, so they may be larger than memory. Lines that are not records are
    counted and listed under Anomalies. Exit status 0 when every file was read; 2 with a
    one-line error when a file cannot be read or holds no record at all, or when FILE
    cannot be written.
    """
    stats = ReportStats()
    paths = [Path(r) for r in results]
    for p in paths:  # fail before reading anything large
        if not os.access(p, os.R_OK) or p.is_dir():
            raise InputError(f"{p}: cannot read")
    for p in paths:
        try:
            read_into(p, stats)
        except ReportInputError as e:
            raise InputError(str(e)) from None
    click.echo(render_summary(stats), nl=False)
    if html_path is not None:
        page = render_html(stats, title=title)
        tmp = html_path.with_name(html_path.name + ".tmp")
        try:
            # Written whole, then renamed: a reader never sees half a report.
            tmp.write_text(page, encoding="utf-8")
            tmp.replace(html_path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise InputError(f"--html {html_path}: cannot write ({e.strerror or e})") from None
        click.echo(f"HTML report: {html_path}")

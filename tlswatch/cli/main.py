"""The ``tlswatch`` command group. Commands live in their own modules; no protocol logic here."""

from __future__ import annotations

import click

from tlswatch import __version__

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tlswatch")
def cli() -> None:
    """Detect TLS interception and blocking from live probes and packet captures.

    Every command writes tlswatch/1 records (JSON Lines) or reads them.
    """


def _register() -> None:
    from tlswatch.cli.analyse import analyse
    from tlswatch.cli.anchors import anchors
    from tlswatch.cli.convert import convert
    from tlswatch.cli.fingerprints import fingerprints
    from tlswatch.cli.lab import lab
    from tlswatch.cli.ooni import ooni
    from tlswatch.cli.probe import probe
    from tlswatch.cli.rejudge import rejudge
    from tlswatch.cli.report import report
    from tlswatch.cli.trace import trace
    from tlswatch.cli.verify import verify
    from tlswatch.cli.watch import watch

    cli.add_command(verify)
    cli.add_command(anchors)
    cli.add_command(probe)
    cli.add_command(lab)
    cli.add_command(report)
    cli.add_command(ooni)
    cli.add_command(analyse)
    cli.add_command(convert)
    cli.add_command(rejudge)
    cli.add_command(watch)
    cli.add_command(fingerprints)
    cli.add_command(trace)


_register()


def main() -> None:
    cli(prog_name="tlswatch")

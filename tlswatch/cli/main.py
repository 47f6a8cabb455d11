"""The ``tlswatch`` command group. Commands live in their own modules; no protocol logic here."""

from __future__ import annotations

import importlib

import click

from tlswatch import __version__

__all__ = ["cli", "main"]


#: Command name -> "module:attribute". Commands are imported when used, so ``tlswatch
#: analyse`` does not pay for the probe, lab and report stacks (~0.15 s at every start).
COMMANDS: dict[str, str] = {
    "analyse": "tlswatch.cli.analyse:analyse",
    "anchors": "tlswatch.cli.anchors:anchors",
    "convert": "tlswatch.cli.convert:convert",
    "fingerprints": "tlswatch.cli.fingerprints:fingerprints",
    "lab": "tlswatch.cli.lab:lab",
    "ooni": "tlswatch.cli.ooni:ooni",
    "probe": "tlswatch.cli.probe:probe",
    "rejudge": "tlswatch.cli.rejudge:rejudge",
    "report": "tlswatch.cli.report:report",
    "trace": "tlswatch.cli.trace:trace",
    "verify": "tlswatch.cli.verify:verify",
    "watch": "tlswatch.cli.watch:watch",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, _, attr = COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


@click.group(cls=_LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tlswatch")
def cli() -> None:
    """Detect TLS interception and blocking from live probes and packet captures.

    Every command writes tlswatch/1 records (JSON Lines) or reads them.
    """


def main() -> None:
    cli(prog_name="tlswatch")

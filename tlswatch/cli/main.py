"""The ``tlswatch`` command group. Commands live in their own modules; no protocol logic here."""

from __future__ import annotations

import gc
import importlib
import os
import sys

import click

from tlswatch import __version__

__all__ = ["cli", "main", "tune_gc"]


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


#: Commands that end without the interpreter's teardown: everything they write is closed (and
#: fsync-ed) before they return, and freeing the judge's caches, trust stores and modules
#: object by object costs ~0.05-0.1 s at the end of every run (mypy does the same).
FAST_EXIT: frozenset[str] = frozenset({"analyse"})


#: Commands that allocate many short-lived objects per packet or handshake (see tune_gc).
GC_TUNED: frozenset[str] = frozenset({"analyse", "probe"})


def tune_gc() -> None:
    """Collect cycles every 50,000 allocations instead of 700: tlswatch's per-packet and
    per-record objects are acyclic and freed by reference counting, and with the default
    threshold the collector walks the young objects ~1,000 times a second for nothing (7-10%
    of ``tlswatch analyse``'s time here; memory unchanged). Cycles are still collected."""
    gc.set_threshold(50_000, 50, 100)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in GC_TUNED:
        tune_gc()
    if not (len(sys.argv) > 1 and sys.argv[1] in FAST_EXIT):
        cli(prog_name="tlswatch")
        return
    if sys.argv[1] == "analyse":
        from tlswatch.cli import prehash

        prehash.start(sys.argv[2:])  # the first capture's SHA-256, while analyse loads
    try:
        cli(prog_name="tlswatch")
    except SystemExit as e:
        if not (e.code is None or isinstance(e.code, int)):
            raise
        code = e.code or 0
    else:  # pragma: no cover - click's standalone mode always exits
        code = 0
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # (a reader that went away: analyse said so already)
            code = code or 1
    os._exit(code)

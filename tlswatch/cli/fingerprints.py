"""``tlswatch fingerprints``: ClientHello fingerprints (JA4/JA3) per client network, from
captures taken at a server, with known interception boxes and rare fingerprints flagged."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from tlswatch.capture import CaptureFormatError, open_capture
from tlswatch.cli.errors import InputError
from tlswatch.fingerprints import CaptureStats, FingerprintCounter, Row, load_known
from tlswatch.fingerprints.count import hellos_in
from tlswatch.textsafe import terminal_safe

__all__ = ["fingerprints"]

_MAGICS = (
    bytes.fromhex("d4c3b2a1"), bytes.fromhex("a1b2c3d4"), bytes.fromhex("4d3cb2a1"),
    bytes.fromhex("a1b23c4d"), bytes.fromhex("34cdb2a1"), bytes.fromhex("a1b2cd34"),
    b"\x0a\x0d\x0d\x0a", b"\x1f\x8b", b"\xfd7zXZ\x00", b"BZh",
)


def _looks_like_capture(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8).startswith(_MAGICS)
    except OSError:
        return False


def _inputs(args: tuple[str, ...], note: Callable[[str], None]) -> Iterator[Path]:
    """Files named (checked: one-line error if unreadable) and captures found in directories."""
    seen: set[str] = set()
    for arg in args:
        p = Path(arg)
        if not p.exists():
            raise InputError(f"{terminal_safe(arg)}: no such file or directory")
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    f = Path(root) / name
                    if f.is_file() and str(f) not in seen:
                        seen.add(str(f))
                        if _looks_like_capture(f):
                            yield f
                        else:
                            note(f"{terminal_safe(str(f))}: not a capture, skipped")
        elif str(p) not in seen:
            seen.add(str(p))
            try:
                open_capture(p).close()
            except CaptureFormatError as e:
                raise InputError(terminal_safe(str(e), 400)) from None
            except OSError as e:
                raise InputError(f"{terminal_safe(arg)}: cannot read ({e.strerror or e})"
                                 ) from None
            yield p


def _table(rows: list[Row]) -> list[str]:
    head = ("NETWORK", "JA4", "JA3", "COUNT", "SHARE", "FLAG", "SNI")
    cells = [(terminal_safe(r.network), terminal_safe(r.ja4), terminal_safe(r.ja3),
              str(r.count), f"{r.share * 100:.2f}%", terminal_safe(r.flag or "-"),
              terminal_safe(r.sni, 80)) for r in rows]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head) - 1)]
    return ["  ".join([*(c[i].ljust(widths[i]) for i in range(len(widths))), c[-1]]).rstrip()
            for c in [head, *cells]]


@click.command()
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE|DIR...")
@click.option("--format", "out_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="A table, or one JSON object per line.")
@click.option("--min-share", type=click.FloatRange(0.0, 1.0), default=0.01, show_default=True,
              help="Flag a fingerprint 'rare' below this share of all hellos "
                   "(and seen from at most --max-networks networks).")
@click.option("--max-networks", type=click.IntRange(min=0), default=2, show_default=True,
              help="A 'rare' fingerprint comes from at most this many client networks.")
@click.option("--top", type=click.IntRange(min=0), default=0,
              help="Print only the first N rows (flagged first, then by count); 0: all.")
@click.option("--max-keys", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Memory bound: distinct (network, fingerprint) rows kept; hellos past it "
                   "are counted as overflow.")
@click.option("--anonymize-key", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Pseudonymise client networks (prefix-preserving, with the "
                                 "32-byte key in this file; created if absent).")
@click.option("--known", "known_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Use this known-fingerprint list instead of the bundled one.")
def fingerprints(captures: tuple[str, ...], out_format: str, min_share: float,
                 max_networks: int, top: int, max_keys: int, anonymize_key: Path | None,
                 known_path: Path | None) -> None:
    """Count ClientHello fingerprints (JA4, JA3) per client network (/24, /48) in captures
    taken at a server; flag known interception boxes (known:LABEL) and rare fingerprints.

    Only each flow's first ClientHello is read. A summary goes to stderr.
    """
    def note(msg: str) -> None:
        click.echo(f"tlswatch: {msg}", err=True)

    try:
        known = load_known(known_path)
    except (ValueError, OSError) as e:
        raise InputError(terminal_safe(f"--known: {e}", 400)) from None

    pseudonym: Callable[[str], str] | None = None
    if anonymize_key is not None:
        from tlswatch.anonymize import (
            AnonymizeKeyError,
            PrefixPreservingAnonymizer,
            load_or_create_key,
        )
        try:
            pseudonym = PrefixPreservingAnonymizer(load_or_create_key(anonymize_key)).anonymize
        except AnonymizeKeyError as e:
            raise InputError(terminal_safe(str(e), 400)) from None
        except OSError as e:
            raise InputError(f"--anonymize-key {terminal_safe(str(anonymize_key))}: "
                             f"{e.strerror or e}") from None

    paths = list(_inputs(captures, note))
    if not paths:
        raise InputError("no capture among the inputs")
    counter = FingerprintCounter(known, max_keys=max_keys)
    stats = CaptureStats()
    for path in paths:
        try:
            for h in hellos_in(path, pseudonym=pseudonym, stats=stats):
                counter.add(h)
        except CaptureFormatError as e:
            raise InputError(terminal_safe(str(e), 400)) from None
        except OSError as e:
            raise InputError(f"{terminal_safe(str(path))}: cannot read ({e.strerror or e})"
                             ) from None

    rows = counter.rows(min_share=min_share, max_networks=max_networks)
    flagged_known = sum(1 for r in rows if r.flag.startswith("known:"))
    flagged_rare = sum(1 for r in rows if r.flag == "rare")
    if top:
        rows = rows[:top]
    if out_format == "json":
        for r in rows:
            click.echo(json.dumps(r.as_json(), sort_keys=True))
    else:
        for line in _table(rows):
            click.echo(line)
    note(f"{counter.total} hellos in {stats.flows} flows of {len(paths)} capture(s); "
         f"{counter.networks} networks, {counter.fingerprints} fingerprints; rows flagged: "
         f"{flagged_known} known, {flagged_rare} rare; overflow: {counter.overflow} hellos "
         f"(--max-keys {max_keys})")

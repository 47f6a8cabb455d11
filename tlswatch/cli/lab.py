"""``tlswatch lab``: the emulated censoring network on this machine (loopback only)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from tlswatch.cli.errors import InputError
from tlswatch.cli.verify import parse_time
from tlswatch.lab import LabConfig, LabConfigError, LabError, load_config, run_lab_forever

__all__ = ["lab", "lab_config_from_options"]


def lab_config_from_options(config: Path | None, targets: Path | None, port: int | None,
                            seed: int | None, now: datetime | None,
                            **extra: Any) -> LabConfig:
    """A LabConfig from a file (if any) with command-line options winning."""
    overrides = {k: v for k, v in {"targets_file": targets, "port": port, "seed": seed,
                                   "now": now, **extra}.items() if v is not None}
    try:
        if config is not None:
            return load_config(config, **overrides)
        return dataclasses.replace(LabConfig(), **overrides)
    except LabConfigError as e:
        raise InputError(str(e)) from None


_common = [
    click.option("--config", type=click.Path(path_type=Path),
                 help="Lab config file (.json or .toml): blockers, extra domains, seed, clock."),
    click.option("--targets", type=click.Path(path_type=Path),
                 help="Interception target list (one domain per line). Default: the 2019 "
                      "Kazakhstan list (37 domains)."),
    click.option("--port", type=click.IntRange(0, 65535),
                 help="TCP port of every lab service. Default: 443 as root, else a free port."),
    click.option("--seed", type=int, help="Seed of every lab key and serial (default 0)."),
    click.option("--now", "now_text", metavar="ISO-8601",
                 help="Fixed clock for the lab's certificates (reproducible runs)."),
]


def common_options(f: Any) -> Any:
    for opt in reversed(_common):
        f = opt(f)
    return f


@click.group()
def lab() -> None:
    """An emulated censoring network on 127.0.0.0/8: origins, a 2019-style interceptor,
    sslsplit, DNS tampering, blockers and hostile servers, with a control path."""


@lab.command("up")
@common_options
def up(config: Path | None, targets: Path | None, port: int | None, seed: int | None,
       now_text: str | None) -> None:
    """Run the lab in the foreground; print its JSON description; stop on Ctrl-C.

    The description gives every address: the censored resolver, the control resolver (the
    path without the middlebox), each domain's origin and middlebox address, the store file
    that trusts the lab's "public" CA, blockers and hostile servers.
    """
    cfg = lab_config_from_options(config, targets, port, seed,
                                  parse_time(now_text) if now_text else None)
    try:
        code = run_lab_forever(cfg)
    except (LabError, LabConfigError) as e:
        raise InputError(str(e)) from None
    raise SystemExit(code)

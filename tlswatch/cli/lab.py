"""``tlswatch lab``: the emulated censoring network on this machine (loopback, or network
namespaces with ``lab up --mode netns``)."""

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
    sslsplit, DNS tampering, blockers and hostile servers, with a control path.
    ``lab up --mode netns`` builds one in network namespaces instead (root only)."""


@lab.command("up")
@click.option("--mode", type=click.Choice(["loopback", "netns"]), default="loopback",
              show_default=True,
              help="loopback: every service on 127.77.0.0/16 in this process. netns: client, "
                   "routers, middlebox and server namespaces joined by veth pairs "
                   "(198.18.0.0/15), packets cross real hops; needs root, ip, iptables, "
                   "ethtool (docs/lab-netns.md).")
@click.option("--hops-before", type=click.IntRange(0, 12), default=2, show_default=True,
              help="netns: routers between the client and the middlebox.")
@click.option("--hops-after", type=click.IntRange(0, 12), default=1, show_default=True,
              help="netns: routers between the middlebox and the server.")
@common_options
def up(mode: str, hops_before: int, hops_after: int, config: Path | None,
       targets: Path | None, port: int | None, seed: int | None, now_text: str | None) -> None:
    """Run the lab in the foreground; print its JSON description; stop on Ctrl-C.

    The description gives every address: the censored resolver, the control resolver (the
    path without the middlebox), each domain's origin and middlebox address, the store file
    that trusts the lab's "public" CA, blockers and hostile servers.

    With --mode netns it gives the namespaces, the hops (the address each answers ICMP
    from), the middlebox and server hop numbers, the resolver (also the client namespace's
    resolv.conf), each domain's origin address and treatment (intercept, pass, reset, alert)
    and the store file. Everything is torn down on exit, Ctrl-C, SIGTERM or a SIGKILL.
    """
    now = parse_time(now_text) if now_text else None
    if mode == "netns":
        raise SystemExit(_up_netns(config, targets, port, seed, now, hops_before, hops_after))
    cfg = lab_config_from_options(config, targets, port, seed, now)
    try:
        code = run_lab_forever(cfg)
    except (LabError, LabConfigError) as e:
        raise InputError(str(e)) from None
    raise SystemExit(code)


def _up_netns(config: Path | None, targets: Path | None, port: int | None, seed: int | None,
              now: datetime | None, hops_before: int, hops_after: int) -> int:
    from tlswatch.lab.netns import NetnsConfig, NetnsError, run_netns_lab_forever

    if config is not None:
        raise InputError("--config describes a loopback lab; it does not apply to --mode netns")
    if port is not None:
        raise InputError("--port does not apply to --mode netns (every service is on 443)")
    try:
        cfg = NetnsConfig(hops_before_middlebox=hops_before, hops_after_middlebox=hops_after,
                          seed=seed or 0, now=now, targets_file=targets)
        cfg.target_list()  # a bad target file is an input error before anything is built
        return run_netns_lab_forever(cfg)
    except NetnsError as e:
        raise InputError(str(e)) from None


@lab.command("demo")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("tlswatch-demo"), show_default=True,
              help="Where the results (results.jsonl), the capture (demo.pcap), the TLS "
                   "key log (keylog.txt) and the lab's store (lab-public-root.pem) are left.")
@click.option("--tls-timeout", type=click.FloatRange(0.1, 60), default=3.0, show_default=True,
              help="Seconds to wait for a ServerHello (silently dropped domains take this).")
@click.option("--mode", type=click.Choice(["loopback", "netns"]), default="loopback",
              show_default=True,
              help="netns: the namespace lab (root): probe, trace and analyse run inside its "
                   "client namespace and must find the middlebox's hop.")
@common_options
def demo(out_dir: Path, tls_timeout: float, mode: str, config: Path | None,
         targets: Path | None, port: int | None, seed: int | None,
         now_text: str | None) -> None:
    """Start the lab, probe the 2019 target list through it with a control path, and print
    each domain's verdict next to what the lab did to it.

    Targeted domains must come out intercepted (known CA: the Qaznet-named lab root),
    sslsplit's domains intercepted (control path), untargeted and in-country ones ok (one is
    served by a private CA on every path: still ok), and blocked ones blocked with how.
    Exit 0 when every verdict is as expected, 1 otherwise.

    With --mode netns: the namespace lab (client - r1 - r2 - mb - r3 - server); `tlswatch
    probe` (with --pcap: resets carry their TTL/IP ID), `tlswatch trace` for an intercepted,
    a reset, an alerted and a clean domain, and `tlswatch analyse` of the probe's capture run
    in the client namespace. Interception and injection must be located at the middlebox's
    hop and the injected resets told apart by their TTL.
    """
    import sys

    if mode == "netns":
        if config is not None or port is not None:
            raise InputError("--config and --port describe a loopback lab; they do not apply "
                             "to --mode netns")
        _demo_netns(out_dir, min(tls_timeout, 2.0), targets, seed,
                    parse_time(now_text) if now_text else None)
        return

    from tlswatch.lab.demo import run_demo
    from tlswatch.textsafe import terminal_safe

    # Validate here for a clean one-line error; the lab itself runs as a child process.
    lab_config_from_options(config, targets, port, seed,
                            parse_time(now_text) if now_text else None)
    lab_args: list[str] = []
    for flag, value in (("--config", config), ("--targets", targets), ("--port", port),
                        ("--seed", seed), ("--now", now_text)):
        if value is not None:
            lab_args += [flag, str(value)]
    try:
        result = run_demo(out_dir, lab_args, tls_timeout=tls_timeout, command=tuple(sys.argv[1:]),
                          log=lambda s: click.echo(s, err=True))
    except (LabError, LabConfigError) as e:
        raise InputError(str(e)) from None
    header = f"{'domain':<28} {'how measured':<20} {'lab did':<22} {'verdict':<12} outcome"
    click.echo(header)
    click.echo("-" * len(header))
    for r in result.rows:
        mark = "" if r.ok else f"   <-- expected {r.expected}"
        click.echo(f"{terminal_safe(r.domain, 28):<28} {r.style:<20} {r.lab_path:<22} "
                   f"{r.record.verdict:<12} {terminal_safe(r.record.outcome, 60)}{mark}")
    verdicts: dict[str, int] = {}
    for r in result.rows:
        verdicts[r.record.verdict] = verdicts.get(r.record.verdict, 0) + 1
    click.echo("")
    click.echo("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())))
    click.echo(f"results: {out_dir / 'results.jsonl'}   key log: {out_dir / 'keylog.txt'}   "
               + (f"capture: {result.capture}" if result.capture else result.capture_note))
    bad = result.failures
    if bad:
        click.echo(f"demo: {len(bad)} of {len(result.rows)} verdicts differ from what the lab "
                   "did", err=True)
        raise SystemExit(1)
    click.echo(f"demo: all {len(result.rows)} verdicts match what the lab did "
               f"({result.elapsed_s:.1f} s)")


def _demo_netns(out_dir: Path, tls_timeout: float, targets: Path | None, seed: int | None,
                now: datetime | None) -> None:
    from tlswatch.lab.demo_netns import run_netns_demo
    from tlswatch.lab.netns import NetnsConfig, NetnsError, NetnsLab
    from tlswatch.textsafe import terminal_safe

    try:
        cfg = NetnsConfig(seed=seed or 0, now=now, targets_file=targets)
        cfg.target_list()
        with NetnsLab(cfg) as lab:
            click.echo(f"namespace lab {lab.tag}: client {lab.client_ip}, middlebox at hop "
                       f"{lab.middlebox_hop}, server at hop {lab.server_hop}", err=True)
            result = run_netns_demo(out_dir, lab, tls_timeout=tls_timeout,
                                    log=lambda s: click.echo(s, err=True))
    except NetnsError as e:
        raise InputError(str(e)) from None
    header = f"{'what':<8} {'domain':<24} {'lab did':<10} {'expected':<26} {'seen':<26} detail"
    click.echo(header)
    click.echo("-" * len(header))
    for r in result.rows:
        mark = "" if r.ok else "   <-- differs"
        click.echo(f"{r.what:<8} {terminal_safe(r.subject, 24):<24} {r.lab_did:<10} "
                   f"{r.expected:<26} {terminal_safe(r.seen, 26):<26} "
                   f"{terminal_safe(r.detail, 90)}{mark}")
    for problem in result.errors:
        click.echo(f"demo: {terminal_safe(problem, 400)}", err=True)
    click.echo(f"results: {out_dir}/results.jsonl  traces: {out_dir}/traces.jsonl  "
               f"capture: {out_dir}/demo.pcap  analysed: {out_dir}/analysed.jsonl")
    bad = result.failures
    if bad or result.errors or not result.rows:
        click.echo(f"demo: {len(bad)} of {len(result.rows)} results differ from what the lab "
                   "did", err=True)
        raise SystemExit(1)
    click.echo(f"demo: all {len(result.rows)} results match what the lab did "
               f"({result.elapsed_s:.1f} s)")

"""``tlswatch probe``: live handshakes to many targets (and vantages), judged and written."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import click

from tlswatch.classify.chain import ChainJudge
from tlswatch.classify.rules import RULES_VERSION
from tlswatch.cli.errors import InputError
from tlswatch.cli.progress import Progress, summary_table
from tlswatch.ids import new_run_id
from tlswatch.probe.campaign import (
    CampaignOptions,
    ControlSpec,
    Summary,
    captive_portal_check,
    run_campaign,
    system_resolver,
)
from tlswatch.probe.dns import DEFAULT_BOGONS, LAB_BOGONS, IpVersion, parse_resolver
from tlswatch.probe.inputs import (
    Endpoint,
    InputLineError,
    Task,
    VantageSpec,
    count_lines,
    iter_targets,
    iter_tasks,
    load_vantages,
    parse_endpoint,
    to_a_label,
)
from tlswatch.probe.measure import Timeouts
from tlswatch.probe.packet_capture import CaptureUnavailable, PacketCapture
from tlswatch.probe.runrecord import closing_run_record, completed, run_record
from tlswatch.probe.tls_client import KeyLog, TlsVersion
from tlswatch.sinks.jsonl import JsonlWriter
from tlswatch.x509.registry import RegistryError, load_registry
from tlswatch.x509.stores import StoreError, TrustStore, auto_store, load_stores

__all__ = ["parse_tls_versions", "probe"]

_VERSIONS: dict[str, TlsVersion] = {"1.0": "TLSv1", "1.1": "TLSv1.1", "1.2": "TLSv1.2",
                                    "1.3": "TLSv1.3"}
assert set(_VERSIONS.values()) == set(get_args(TlsVersion))


def parse_tls_versions(text: str) -> tuple[TlsVersion, TlsVersion]:
    """``1.2`` (exactly) or ``1.2-1.3`` (a range) -> (min, max)."""
    lo, _, hi = text.partition("-")
    hi = hi or lo
    if lo not in _VERSIONS or hi not in _VERSIONS or float(lo) > float(hi):
        raise InputError(f"--tls-version {text!r}: expected V or MIN-MAX with V in "
                         "1.0, 1.1, 1.2, 1.3 (e.g. 1.2-1.3)")
    return _VERSIONS[lo], _VERSIONS[hi]


def _resolver(option: str, value: str) -> tuple[str, int]:
    try:
        return parse_resolver(value)
    except ValueError:
        raise InputError(f"{option} {value!r}: expected IP[:PORT] (e.g. 127.0.0.1:5353)") \
            from None


def _endpoint(option: str, value: str) -> Endpoint:
    try:
        return parse_endpoint(value)
    except InputLineError as e:
        raise InputError(f"{option}: {e}") from None


def _stores(specs: tuple[str, ...], at: datetime) -> tuple[list[TrustStore] | None,
                                                          list[tuple[str, str]]]:
    try:
        if not specs or specs == ("auto",):
            st = auto_store(at)
            return None, [(st.name, st.version)]
        stores = load_stores(specs, at=at)
    except StoreError as e:
        raise InputError(str(e)) from None
    return stores, [(s.name, s.version) for s in stores]


def _signals_cancel(task: asyncio.Task[Summary]) -> None:
    loop = asyncio.get_running_loop()
    # Not possible outside the main thread (e.g. some test runners) or on every platform.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)


@click.command()
@click.argument("domains", nargs=-1, metavar="[DOMAIN]...")
@click.option("-i", "--input", "inputs", multiple=True, metavar="FILE",
              help="Targets file (repeatable; - is stdin): one domain or URL per line, # "
                   "comments; or a Citizen Lab test-list CSV (header url,category_code,...). "
                   "Streamed, never loaded whole. A URL's scheme, port and path are ignored.")
@click.option("--connect", "connect", metavar="IP[:PORT]",
              help="Send every handshake to this IP with the target's SNI, without DNS "
                   "(the Censored Planet method).")
@click.option("--vantages", "vantages_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Like --connect for each line 'name IP[:PORT]' or 'IP[:PORT]' (# comments): "
                   "every target is measured at every vantage.")
@click.option("--port", type=click.IntRange(1, 65535), default=443, show_default=True, metavar="N",
              help="Destination port (a vantage's own :PORT wins).")
@click.option("--resolver", metavar="IP[:PORT]",
              help="DNS resolver for targets without a vantage (queried directly, A/AAAA). "
                   "Default: this system's first nameserver.")
@click.option("--control-resolver", metavar="IP[:PORT]",
              help="Control: resolve each name with this resolver too and measure that "
                   "address (control kind 'resolver').")
@click.option("--control-sni", metavar="NAME",
              help="Control: the same IP with this SNI instead (control kind 'sni').")
@click.option("--control-connect", metavar="IP[:PORT]",
              help="Control: the same SNI sent to this IP, another network path (control "
                   "kind 'path'). At most one --control-* option per run.")
@click.option("--ip-version", type=click.Choice(["4", "6", "both"]), default="4",
              show_default=True, help="Which DNS answers to ask for and connect to.")
@click.option("--dns-timeout", type=click.FloatRange(0, min_open=True), default=5.0,
              show_default=True, metavar="S", help="Seconds for the DNS stage.")
@click.option("--connect-timeout", type=click.FloatRange(0, min_open=True), default=5.0,
              show_default=True, metavar="S", help="Seconds for the TCP connect.")
@click.option("--tls-timeout", type=click.FloatRange(0, min_open=True), default=10.0,
              show_default=True, metavar="S", help="Seconds for the TLS handshake.")
@click.option("--http-timeout", type=click.FloatRange(0, min_open=True), default=10.0,
              show_default=True, metavar="S", help="Seconds for the GET / of --http.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=30.0,
              show_default=True, metavar="S",
              help="Seconds for one whole measurement (all stages).")
@click.option("--tls-version", default="1.2-1.3", show_default=True, metavar="V|MIN-MAX",
              help="TLS versions offered: 1.0, 1.1, 1.2, 1.3 or a range like 1.2-1.3.")
@click.option("--alpn", multiple=True, metavar="PROTO",
              help="ALPN protocol to offer (repeatable or comma-separated, e.g. h2,http/1.1).")
@click.option("--no-sni", is_flag=True, help="Send no SNI at all.")
@click.option("--http", "http", is_flag=True,
              help="After the handshake, GET / with the Host header; record status, title, "
                   "body hash; match blockpages.")
@click.option("--keylog", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Append TLS secrets to FILE (SSLKEYLOGFILE format).")
@click.option("--pcap", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Record this run's packets (TCP to the probed port, DNS) with tcpdump into "
                   "FILE, as evidence: tlswatch analyse FILE then tells injected resets by "
                   "TTL/IP ID. Needs tcpdump and capture privileges.")
@click.option("--store", "stores", multiple=True, metavar="NAME|PATH|all|auto",
              help="Trust store(s) to judge chains against (repeatable). Default: auto, the "
                   "Mozilla snapshot nearest before the time of the handshake.")
@click.option("--registry", "registries", multiple=True, type=click.Path(path_type=Path),
              metavar="FILE", help="Extra interception-CA registry (JSON or PEM), repeatable.")
@click.option("--retries", type=click.IntRange(0, 20), default=2, show_default=True,
              metavar="N",
              help="Repeat a result whose verdict is not ok up to N more times (exponential "
                   "backoff with jitter; 0 turns retries off). An ok attempt ends the "
                   "retries and wins; otherwise the most common outcome wins. The record's "
                   "attempts {count, agreeing} tell how many agreed.")
@click.option("--backoff", type=click.FloatRange(0), default=1.0, show_default=True,
              metavar="S", help="Seconds before the first retry; doubles with each retry.")
@click.option("--concurrency", type=click.IntRange(1, 10_000), default=50, show_default=True,
              metavar="N", help="Targets in flight at once (with a control, each target "
                                "has two measurements in flight).")
@click.option("--rate", type=click.FloatRange(0, min_open=True), metavar="R",
              help="At most R measurements started per second overall (default: unlimited).")
@click.option("--per-ip-rate", type=click.FloatRange(0, min_open=True), metavar="R",
              help="At most R measurements started per second to any one destination IP "
                   "(default: unlimited). Be gentle with vantages.")
@click.option("-o", "--output", metavar="FILE",
              help="Write records to FILE (.jsonl) instead of stdout; appended as they come "
                   "and safe against kill -9. Refuses a non-empty FILE unless --resume.")
@click.option("--resume", is_flag=True,
              help="Continue FILE of -o: skip targets already recorded there, append the rest "
                   "(give the same targets and options as the first run).")
@click.option("--captive-check", metavar="URL",
              help="Before the campaign, GET this http:// URL; any answer but "
                   "--captive-expect marks every verdict inconclusive (a captive portal).")
@click.option("--captive-expect", type=click.IntRange(100, 599), default=204,
              show_default=True, metavar="STATUS", help="The status --captive-check expects.")
@click.option("--allow-loopback-answers", is_flag=True,
              help="Lab use: DNS answers on loopback are not bogons (they are connected to).")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl",
              show_default=True, help="Output format (more with the outputs issue).")
@click.option("-v", "--verbose", is_flag=True,
              help="Print one line per measurement on stderr.")
def probe(domains: tuple[str, ...], inputs: tuple[str, ...], connect: str | None,
          vantages_file: str | None, port: int, resolver: str | None,
          control_resolver: str | None, control_sni: str | None, control_connect: str | None,
          ip_version: str, dns_timeout: float, connect_timeout: float, tls_timeout: float,
          http_timeout: float, timeout: float, tls_version: str, alpn: tuple[str, ...],
          no_sni: bool, http: bool, keylog: Path | None, pcap: Path | None,
          stores: tuple[str, ...],
          registries: tuple[Path, ...], retries: int, backoff: float, concurrency: int,
          rate: float | None, per_ip_rate: float | None, output: str | None, resume: bool,
          captive_check: str | None, captive_expect: int, allow_loopback_answers: bool,
          fmt: str, verbose: bool) -> None:
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
    """
    err = sys.stderr
    # -- options -----------------------------------------------------------------------
    if connect and vantages_file:
        raise InputError("--connect and --vantages exclude each other")
    controls = [c for c in (control_sni, control_connect, control_resolver) if c]
    if len(controls) > 1:
        raise InputError("give at most one of --control-sni, --control-connect, "
                         "--control-resolver")
    if no_sni and control_sni:
        raise InputError("--control-sni needs SNI: drop --no-sni")
    if not domains and not inputs:
        raise InputError("no targets: give DOMAIN arguments or -i FILE")
    min_v, max_v = parse_tls_versions(tls_version)
    alpn_list = tuple(p.strip() for a in alpn for p in a.split(",") if p.strip())
    if any(len(p.encode()) > 255 for p in alpn_list):
        raise InputError("--alpn: a protocol name is at most 255 bytes")
    if output == "-":
        output = None
    out_path = Path(output) if output else None
    if out_path is not None and out_path.suffix != ".jsonl":
        raise InputError(f"-o {output}: only .jsonl output for now")
    if resume and out_path is None:
        raise InputError("--resume needs -o FILE (the output to continue)")
    if out_path is not None and not resume and out_path.exists() \
            and out_path.stat().st_size > 0:
        raise InputError(f"{output} exists and is not empty: add --resume to continue it, "
                         "or choose another file")
    for f in inputs:
        if f != "-" and (os.path.isdir(f) or not os.access(f, os.R_OK)):
            raise InputError(f"{f}: cannot read")

    control: ControlSpec | None = None
    if control_sni:
        try:
            control = ControlSpec("sni", sni=to_a_label(control_sni))
        except InputLineError as e:
            raise InputError(f"--control-sni: {e}") from None
    elif control_connect:
        control = ControlSpec("path", endpoint=_endpoint("--control-connect", control_connect))
    elif control_resolver:
        control = ControlSpec("resolver",
                              resolver=_resolver("--control-resolver", control_resolver))

    report_count = 0
    progress = Progress(err, live=err.isatty(), verbose=verbose)

    def report(msg: str) -> None:
        nonlocal report_count
        report_count += 1
        progress.message(msg)

    vantages: list[VantageSpec] = []
    if connect:
        ep = _endpoint("--connect", connect)
        vantages = [VantageSpec(str(ep), ep.ip, ep.port)]
    elif vantages_file:
        try:
            vantages = load_vantages(vantages_file, report=report)
        except OSError as e:
            raise InputError(f"{vantages_file}: cannot read ({e.strerror or e})") from None
        if not vantages:
            raise InputError(f"{vantages_file}: no usable vantage")

    res_addr: tuple[str, int] | None = None
    if resolver:
        res_addr = _resolver("--resolver", resolver)
    elif not vantages or captive_check:
        try:
            res_addr = system_resolver()
        except ValueError:
            raise InputError("no --resolver given and no nameserver configured here") from None

    started = datetime.now(UTC)
    store_list, store_versions = _stores(stores, started)
    try:
        registry = load_registry(registries)
    except RegistryError as e:
        raise InputError(str(e)) from None
    judge = ChainJudge(store_list, registry)

    # -- the task stream (peeked: a run with no usable target is an input error) --------
    targets = iter_targets(domains, inputs, report=report)
    tasks: Iterator[Task] = iter_tasks(targets, vantages, port=port, send_sni=not no_sni)
    first = next(tasks, None)
    if first is None:
        raise InputError("no usable target in the input")
    tasks = itertools.chain([first], tasks)
    if progress.live:
        try:
            lines = len(domains) + sum(count_lines(f) for f in inputs if f != "-")
            progress.total = lines * max(1, len(vantages)) if "-" not in inputs else None
        except OSError:
            progress.total = None

    bogons = LAB_BOGONS if allow_loopback_answers else DEFAULT_BOGONS
    captive = False
    if captive_check:
        try:
            res = asyncio.run(captive_portal_check(
                captive_check, resolver=res_addr, expect_status=captive_expect,
                timeout=min(timeout, dns_timeout + connect_timeout + http_timeout),
                bogons=bogons))
        except ValueError as e:
            raise InputError(f"--captive-check: {e}") from None
        if not res.ok:
            captive = True
            progress.message(f"tlswatch: captive-portal pre-check failed ({res.detail}): "
                             "every verdict of this run is inconclusive")

    try:
        keylog_obj = KeyLog(keylog) if keylog else None
    except OSError as e:
        raise InputError(f"--keylog {keylog}: cannot open ({e.strerror or e})") from None

    options = CampaignOptions(
        resolver=res_addr, control=control,
        timeouts=Timeouts(dns=dns_timeout, connect=connect_timeout, tls=tls_timeout,
                          http=http_timeout, overall=timeout),
        ip_version=_ip_version(ip_version), min_version=min_v, max_version=max_v,
        alpn=alpn_list, http=http, keylog=keylog_obj, bogons=bogons, retries=retries,
        backoff=backoff, concurrency=concurrency, rate=rate, per_ip_rate=per_ip_rate,
        captive_portal=captive)

    # -- output --------------------------------------------------------------------------
    if out_path is not None:
        try:
            writer = JsonlWriter(out_path, batch=1)  # cuts a torn tail left by a kill
        except OSError as e:
            raise InputError(f"{output}: cannot write ({e.strerror or e})") from None
        existing = completed(out_path) if resume else None
    else:
        writer = JsonlWriter(sys.stdout, batch=1)
        existing = None
    resumed = bool(existing and (existing.runs or existing.records))
    run_id = new_run_id(started)
    opening = run_record(
        run_id=run_id, started=started, command=[Path(sys.argv[0]).name, *sys.argv[1:]],
        rules_version=RULES_VERSION, registry_version=registry.version,
        stores=store_versions, resumed=resumed)
    if existing is not None and progress.total:
        progress.total = max(0, progress.total - len(existing.ids))

    capture: PacketCapture | None = None
    if pcap is not None:
        try:
            ports = {port} | {v.port for v in vantages if v.port}
            if control is not None and control.endpoint is not None and control.endpoint.port:
                ports.add(control.endpoint.port)
            tcp = " or ".join(f"tcp port {p}" for p in sorted(ports))
            capture = PacketCapture(pcap, f"{tcp} or udp port 53")
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


def _ip_version(value: str) -> IpVersion:
    if value == "6":
        return "6"
    return "both" if value == "both" else "4"

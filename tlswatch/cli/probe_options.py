"""The options ``tlswatch probe`` and ``tlswatch watch`` share, and what both build from them.

The option decorators live here in groups (:data:`TARGET_OPTIONS`, :data:`RUN_OPTIONS`,
:data:`CHECK_OPTIONS`, :data:`VERBOSE_OPTIONS`); :func:`apply_options` puts a command's own
options between them. :func:`check_params` and :func:`prepare` turn the parsed values into
the campaign's inputs (tasks, :class:`CampaignOptions`, judge), raising
:class:`~tlswatch.cli.errors.InputError` for anything the user must fix.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, get_args

import click

from tlswatch.classify.chain import ChainJudge
from tlswatch.cli.errors import InputError
from tlswatch.probe.campaign import (
    CampaignOptions,
    ControlSpec,
    captive_portal_check,
    system_resolver,
)
from tlswatch.probe.dns import (
    DEFAULT_BOGONS,
    LAB_BOGONS,
    BogonKind,
    IpVersion,
    parse_resolver,
    routable_policy,
)
from tlswatch.probe.inputs import (
    Endpoint,
    InputLineError,
    Report,
    TargetSpec,
    Task,
    VantageSpec,
    iter_targets,
    iter_tasks,
    load_vantages,
    parse_endpoint,
    to_a_label,
)
from tlswatch.probe.measure import Timeouts
from tlswatch.probe.tls_client import GroupsError, KeyLog, TlsVersion, check_groups
from tlswatch.x509.registry import InterceptionRegistry, RegistryError, load_registry
from tlswatch.x509.stores import StoreError, TrustStore, auto_store, load_stores

__all__ = [
    "CHECK_OPTIONS",
    "RUN_OPTIONS",
    "TARGET_OPTIONS",
    "VERBOSE_OPTIONS",
    "Checked",
    "Prepared",
    "ProbeParams",
    "apply_options",
    "build_judge",
    "captive_failure",
    "check_params",
    "parse_tls_versions",
    "prepare",
]

F = TypeVar("F", bound=Callable[..., Any])
_Decorator = Callable[[Any], Any]

_VERSIONS: dict[str, TlsVersion] = {"1.0": "TLSv1", "1.1": "TLSv1.1", "1.2": "TLSv1.2",
                                    "1.3": "TLSv1.3"}
assert set(_VERSIONS.values()) == set(get_args(TlsVersion))

#: Targets, vantages, controls, timeouts and handshake shape.
TARGET_OPTIONS: list[_Decorator] = [
    click.argument("domains", nargs=-1, metavar="[DOMAIN]..."),
    click.option("-i", "--input", "inputs", multiple=True, metavar="FILE",
                 help="Targets file (repeatable; - is stdin): one domain or URL per line, # "
                      "comments; or a Citizen Lab test-list CSV (header url,category_code,...). "
                      "Streamed, never loaded whole. A URL's scheme, port and path are ignored."),
    click.option("--connect", "connect", metavar="IP[:PORT]",
                 help="Send every handshake to this IP with the target's SNI, without DNS "
                      "(the Censored Planet method)."),
    click.option("--vantages", "vantages_file", metavar="FILE", type=click.Path(dir_okay=False),
                 help="Like --connect for each line 'name IP[:PORT]' or 'IP[:PORT]' (# comments): "
                      "every target is measured at every vantage."),
    click.option("--port", type=click.IntRange(1, 65535), default=443, show_default=True,
                 metavar="N", help="Destination port (a vantage's own :PORT wins)."),
    click.option("--resolver", metavar="IP[:PORT]",
                 help="DNS resolver for targets without a vantage (queried directly, A/AAAA). "
                      "Default: this system's first nameserver."),
    click.option("--control-resolver", metavar="IP[:PORT]",
                 help="Control: resolve each name with this resolver too and measure that "
                      "address (control kind 'resolver')."),
    click.option("--control-sni", metavar="NAME",
                 help="Control: the same IP with this SNI instead (control kind 'sni'). May "
                      "be combined with --control-connect or --control-resolver: both controls "
                      "are measured and weighed, the SNI one recorded as control_sni."),
    click.option("--control-connect", metavar="IP[:PORT]",
                 help="Control: the same SNI sent to this IP, another network path (control "
                      "kind 'path'). Excludes --control-resolver."),
    click.option("--ip-version", type=click.Choice(["4", "6", "both"]), default="4",
                 show_default=True, help="Which DNS answers to ask for and connect to."),
    click.option("--dns-timeout", type=click.FloatRange(0, min_open=True), default=5.0,
                 show_default=True, metavar="S", help="Seconds for the DNS stage."),
    click.option("--connect-timeout", type=click.FloatRange(0, min_open=True), default=5.0,
                 show_default=True, metavar="S", help="Seconds for the TCP connect."),
    click.option("--tls-timeout", type=click.FloatRange(0, min_open=True), default=10.0,
                 show_default=True, metavar="S", help="Seconds for the TLS handshake."),
    click.option("--http-timeout", type=click.FloatRange(0, min_open=True), default=10.0,
                 show_default=True, metavar="S", help="Seconds for the GET / of --http."),
    click.option("--timeout", type=click.FloatRange(0, min_open=True), default=30.0,
                 show_default=True, metavar="S",
                 help="Seconds for one whole measurement (all stages)."),
    click.option("--tls-version", default="1.2-1.3", show_default=True, metavar="V|MIN-MAX",
                 help="TLS versions offered: 1.0, 1.1, 1.2, 1.3 or a range like 1.2-1.3."),
    click.option("--alpn", multiple=True, metavar="PROTO",
                 help="ALPN protocol to offer (repeatable or comma-separated, e.g. h2,http/1.1)."),
    click.option("--groups", metavar="LIST",
                 help="Key-exchange groups to offer, in OpenSSL's syntax (e.g. X25519:P-256). "
                      "Default: OpenSSL's, which includes a post-quantum X25519MLKEM768 share "
                      "(a ClientHello of ~1.5 KB, two TCP segments: some middleboxes only "
                      "see the first)."),
    click.option("--no-sni", is_flag=True, help="Send no SNI at all."),
    click.option("--http", "http", is_flag=True,
                 help="After the handshake, GET / with the Host header; record status, title, "
                      "body hash; match blockpages."),
    click.option("--keylog", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
                 help="Append TLS secrets to FILE (SSLKEYLOGFILE format)."),
]

#: Judging, retries and pacing.
RUN_OPTIONS: list[_Decorator] = [
    click.option("--store", "stores", multiple=True, metavar="NAME|PATH|all|auto",
                 help="Trust store(s) to judge chains against (repeatable). Default: auto, the "
                      "Mozilla snapshot nearest before the time of the handshake."),
    click.option("--registry", "registries", multiple=True, type=click.Path(path_type=Path),
                 metavar="FILE", help="Extra interception-CA registry (JSON or PEM), repeatable."),
    click.option("--retries", type=click.IntRange(0, 20), default=2, show_default=True,
                 metavar="N",
                 help="Repeat a result whose verdict is not ok up to N more times (exponential "
                      "backoff with jitter; 0 turns retries off). An ok attempt ends the "
                      "retries and wins; otherwise the most common outcome wins. The record's "
                      "attempts {count, agreeing} tell how many agreed."),
    click.option("--backoff", type=click.FloatRange(0), default=1.0, show_default=True,
                 metavar="S", help="Seconds before the first retry; doubles with each retry."),
    click.option("--concurrency", type=click.IntRange(1, 10_000), default=50, show_default=True,
                 metavar="N", help="Targets in flight at once (each control adds one "
                                   "measurement in flight per target)."),
    click.option("--rate", type=click.FloatRange(0, min_open=True), metavar="R",
                 help="At most R measurements started per second overall (default: unlimited)."),
    click.option("--per-ip-rate", type=click.FloatRange(0, min_open=True), metavar="R",
                 help="At most R measurements started per second to any one destination IP "
                      "(default: unlimited). Be gentle with vantages."),
]

#: The captive-portal pre-check and the lab's loopback answers.
CHECK_OPTIONS: list[_Decorator] = [
    click.option("--captive-check", metavar="URL",
                 help="Before the campaign, GET this http:// URL; any answer but "
                      "--captive-expect marks every verdict inconclusive (a captive portal)."),
    click.option("--captive-expect", type=click.IntRange(100, 599), default=204,
                 show_default=True, metavar="STATUS", help="The status --captive-check expects."),
    click.option("--allow-loopback-answers", is_flag=True,
                 help="Lab use: DNS answers on loopback are not bogons (they are connected to)."),
    click.option("--routable", "routable", multiple=True, metavar="CIDR",
                 help="DNS answers in this network are not bogons: private space that stands "
                      "for public addresses (a testbed; the namespace lab's 198.18.0.0/15). "
                      "Repeatable."),
]

VERBOSE_OPTIONS: list[_Decorator] = [
    click.option("-v", "--verbose", is_flag=True,
                 help="Print one line per measurement on stderr."),
]


def apply_options(*groups: Sequence[_Decorator]) -> Callable[[F], F]:
    """Apply the decorators of ``groups`` so that ``--help`` lists them in this order."""
    decorators = [d for g in groups for d in g]

    def wrap(f: F) -> F:
        for d in reversed(decorators):
            f = d(f)
        return f

    return wrap


@dataclass(frozen=True, slots=True)
class ProbeParams:
    """The parsed values of the shared options (the names are click's parameter names)."""

    domains: tuple[str, ...]
    inputs: tuple[str, ...]
    connect: str | None
    vantages_file: str | None
    port: int
    resolver: str | None
    control_resolver: str | None
    control_sni: str | None
    control_connect: str | None
    ip_version: str
    dns_timeout: float
    connect_timeout: float
    tls_timeout: float
    http_timeout: float
    timeout: float
    tls_version: str
    alpn: tuple[str, ...]
    groups: str | None
    no_sni: bool
    http: bool
    keylog: Path | None
    stores: tuple[str, ...]
    registries: tuple[Path, ...]
    retries: int
    backoff: float
    concurrency: int
    rate: float | None
    per_ip_rate: float | None
    captive_check: str | None
    captive_expect: int
    allow_loopback_answers: bool
    routable: tuple[str, ...]
    verbose: bool

    @classmethod
    def pop_from(cls, kwargs: dict[str, Any]) -> ProbeParams:
        """Take this class's fields out of a command's keyword arguments (the rest stay)."""
        names = [f for f in cls.__dataclass_fields__]
        return cls(**{n: kwargs.pop(n) for n in names})


def bogon_policy(kinds: frozenset[BogonKind], cidrs: tuple[str, ...],
                 option: str) -> frozenset[BogonKind]:
    """``kinds``, with the networks given as ``option`` exempted (one-line error if bad)."""
    try:
        return routable_policy(kinds, cidrs, option)
    except ValueError as e:
        raise InputError(str(e)) from None


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


def build_judge(stores: tuple[str, ...], registries: tuple[Path, ...], at: datetime
                ) -> ChainJudge:
    """The judge of --store/--registry as :func:`prepare` builds it (a Dask worker rebuilds
    it from these plain values: trust stores do not pickle)."""
    store_list, _versions = _stores(stores, at)
    try:
        registry = load_registry(registries)
    except RegistryError as e:
        raise InputError(str(e)) from None
    return ChainJudge(store_list, registry)


def _ip_version(value: str) -> IpVersion:
    if value == "6":
        return "6"
    return "both" if value == "both" else "4"


@dataclass(frozen=True, slots=True)
class Checked:
    """What :func:`check_params` parsed: the option values that need no I/O."""

    min_version: TlsVersion
    max_version: TlsVersion
    alpn: tuple[str, ...]
    groups: str | None = None


def check_params(p: ProbeParams) -> Checked:
    """The checks of option combinations that need no I/O (run before any output check)."""
    if p.connect and p.vantages_file:
        raise InputError("--connect and --vantages exclude each other")
    if p.control_connect and p.control_resolver:
        raise InputError("give at most one path control: --control-connect or "
                         "--control-resolver (--control-sni may go with either)")
    if p.no_sni and p.control_sni:
        raise InputError("--control-sni needs SNI: drop --no-sni")
    if not p.domains and not p.inputs:
        raise InputError("no targets: give DOMAIN arguments or -i FILE")
    min_v, max_v = parse_tls_versions(p.tls_version)
    alpn_list = tuple(x.strip() for a in p.alpn for x in a.split(",") if x.strip())
    if any(len(x.encode()) > 255 for x in alpn_list):
        raise InputError("--alpn: a protocol name is at most 255 bytes")
    if p.groups is not None:
        try:
            check_groups(p.groups)
        except GroupsError as e:
            raise InputError(f"--groups: {e}") from None
    return Checked(min_v, max_v, alpn_list, p.groups)


@dataclass(slots=True)
class Prepared:
    """Everything a campaign needs, built from the options (see :func:`prepare`)."""

    started: datetime
    judge: ChainJudge
    registry: InterceptionRegistry
    store_versions: list[tuple[str, str]]
    vantages: list[VantageSpec]
    resolver: tuple[str, int] | None
    control: ControlSpec | None
    options: CampaignOptions
    bogons: frozenset[BogonKind]
    keylog: KeyLog | None
    port: int
    send_sni: bool
    #: Every target, when read up front (``materialize``); else None.
    targets: list[TargetSpec] | None = None
    _stream: Iterator[Task] | None = field(default=None, repr=False)

    def tasks(self) -> Iterator[Task]:
        """The task stream: from the target list each time, or the one streamed pass."""
        if self.targets is not None:
            return iter_tasks(self.targets, self.vantages, port=self.port,
                              send_sni=self.send_sni)
        stream, self._stream = self._stream, None
        if stream is None:
            raise RuntimeError("the streamed targets were taken already")
        return stream


def prepare(p: ProbeParams, checked: Checked, report: Report, *,
            materialize: bool = False) -> Prepared:
    """Vantages, resolver, stores, registry, judge, targets and :class:`CampaignOptions`.

    ``materialize``: read every target now (``watch`` measures them again and again);
    otherwise they are streamed and only the first task is peeked at. A run without a usable
    target is an input error either way. ``options.captive_portal`` is False: see
    :func:`captive_failure`.
    """
    for f in p.inputs:
        if f != "-" and (os.path.isdir(f) or not os.access(f, os.R_OK)):
            raise InputError(f"{f}: cannot read")

    # The path (or resolver) control is `control`; an SNI control beside it is the second.
    control: ControlSpec | None = None
    sni_control: ControlSpec | None = None
    if p.control_sni:
        try:
            sni_control = ControlSpec("sni", sni=to_a_label(p.control_sni))
        except InputLineError as e:
            raise InputError(f"--control-sni: {e}") from None
    if p.control_connect:
        control = ControlSpec("path",
                              endpoint=_endpoint("--control-connect", p.control_connect))
    elif p.control_resolver:
        control = ControlSpec("resolver",
                              resolver=_resolver("--control-resolver", p.control_resolver))
    if control is None:
        control, sni_control = sni_control, None  # a lone SNI control is the control

    vantages: list[VantageSpec] = []
    if p.connect:
        ep = _endpoint("--connect", p.connect)
        vantages = [VantageSpec(str(ep), ep.ip, ep.port)]
    elif p.vantages_file:
        try:
            vantages = load_vantages(p.vantages_file, report=report)
        except OSError as e:
            raise InputError(f"{p.vantages_file}: cannot read ({e.strerror or e})") from None
        if not vantages:
            raise InputError(f"{p.vantages_file}: no usable vantage")

    res_addr: tuple[str, int] | None = None
    if p.resolver:
        res_addr = _resolver("--resolver", p.resolver)
    elif not vantages or p.captive_check:
        try:
            res_addr = system_resolver()
        except ValueError:
            raise InputError("no --resolver given and no nameserver configured here") from None

    started = datetime.now(UTC)
    store_list, store_versions = _stores(p.stores, started)
    try:
        registry = load_registry(p.registries)
    except RegistryError as e:
        raise InputError(str(e)) from None
    judge = ChainJudge(store_list, registry)

    # -- the task stream (peeked: a run with no usable target is an input error) --------
    targets: Iterable[TargetSpec] = iter_targets(p.domains, p.inputs, report=report)
    if materialize:
        targets = list(targets)
    tasks = iter_tasks(targets, vantages, port=p.port, send_sni=not p.no_sni)
    first = next(tasks, None)
    if first is None:
        raise InputError("no usable target in the input")
    stream = itertools.chain([first], tasks)

    bogons = bogon_policy(LAB_BOGONS if p.allow_loopback_answers else DEFAULT_BOGONS,
                          p.routable, "--routable")
    try:
        keylog_obj = KeyLog(p.keylog) if p.keylog else None
    except OSError as e:
        raise InputError(f"--keylog {p.keylog}: cannot open ({e.strerror or e})") from None

    options = CampaignOptions(
        resolver=res_addr, control=control, sni_control=sni_control,
        timeouts=Timeouts(dns=p.dns_timeout, connect=p.connect_timeout, tls=p.tls_timeout,
                          http=p.http_timeout, overall=p.timeout),
        ip_version=_ip_version(p.ip_version), min_version=checked.min_version,
        max_version=checked.max_version, alpn=checked.alpn, groups=checked.groups,
        http=p.http, keylog=keylog_obj,
        bogons=bogons, retries=p.retries, backoff=p.backoff, concurrency=p.concurrency,
        rate=p.rate, per_ip_rate=p.per_ip_rate)
    return Prepared(started=started, judge=judge, registry=registry,
                    store_versions=store_versions, vantages=vantages, resolver=res_addr,
                    control=control, options=options, bogons=bogons, keylog=keylog_obj,
                    port=p.port, send_sni=not p.no_sni,
                    targets=targets if isinstance(targets, list) else None,
                    _stream=None if isinstance(targets, list) else stream)


async def captive_failure(p: ProbeParams, prep: Prepared) -> str | None:
    """Run ``--captive-check`` (if given): None when the network answered as expected, else
    what was seen (every verdict of the campaign is then inconclusive)."""
    if not p.captive_check:
        return None
    try:
        res = await captive_portal_check(
            p.captive_check, resolver=prep.resolver, expect_status=p.captive_expect,
            timeout=min(p.timeout, p.dns_timeout + p.connect_timeout + p.http_timeout),
            bogons=prep.bogons)
    except ValueError as e:
        raise InputError(f"--captive-check: {e}") from None
    return None if res.ok else res.detail


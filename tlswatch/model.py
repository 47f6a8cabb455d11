"""Frozen records shared by every stage: the ``tlswatch/1`` record and its parts.

The JSON shape is the contract (``tlswatch/schema/tlswatch-1.schema.json``): keys are
stable, new keys may be added, none are renamed. Times are RFC 3339 UTC strings in the
record; inside the program they are timezone-aware ``datetime`` objects or integer
nanoseconds, never floats.
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar

__all__ = [
    "SCHEMA",
    "Attempts",
    "CertFacts",
    "Control",
    "DnsInfo",
    "Flow",
    "HttpInfo",
    "InputRecord",
    "Interception",
    "KeyInfo",
    "Record",
    "RstInfo",
    "RunRecord",
    "Target",
    "TcpInfo",
    "TlsInfo",
    "Validation",
    "Vantage",
    "from_dict",
    "rfc3339",
    "to_dict",
    "to_plain",
]

SCHEMA = "tlswatch/1"

Source = Literal["probe", "pcap", "ooni"]


def rfc3339(t: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix; microseconds only when present."""
    if t.tzinfo is None:
        raise ValueError("naive datetime: tlswatch times must carry a timezone")
    if t.tzinfo is not UTC:
        t = t.astimezone(UTC)
    if t.year < 1000:  # (strftime does not pad such years; isoformat does)
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if t.microsecond else "%Y-%m-%dT%H:%M:%SZ")
    # isoformat() is strftime's text at half the cost (one per record), "+00:00" for "Z".
    return t.isoformat()[:-6] + "Z"


@dataclass(frozen=True, slots=True)
class Target:
    domain: str | None = None
    sni: str | None = None
    ip: str | None = None
    port: int = 443


@dataclass(frozen=True, slots=True)
class Vantage:
    name: str = "local"
    kind: str = "local"


@dataclass(frozen=True, slots=True)
class Flow:
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    transport: str = "tcp"


@dataclass(frozen=True, slots=True)
class DnsInfo:
    resolver: str | None = None
    answers: tuple[str, ...] = ()
    failure: str | None = None
    rcode: str | None = None


@dataclass(frozen=True, slots=True)
class RstInfo:
    ttl: int | None = None
    ip_id: int | None = None
    injected_evidence: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TcpInfo:
    failure: str | None = None
    connect_ms: float | None = None
    rst: RstInfo | None = None


@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    alert: str | None = None
    failure: str | None = None
    history: str | None = None
    ja3: str | None = None
    ja3s: str | None = None
    ja4: str | None = None
    handshake_ms: float | None = None
    bytes_read: int | None = None


@dataclass(frozen=True, slots=True)
class HttpInfo:
    status: int | None = None
    title: str | None = None
    body_sha256: str | None = None
    body_len: int | None = None
    blockpage: str | None = None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    type: str
    bits: int | None = None
    exponent: int | None = None
    curve: str | None = None


@dataclass(frozen=True, slots=True)
class CertFacts:
    """What one presented certificate says about itself (peer data: treat as hostile)."""

    sha256: str
    der_b64: str
    spki_sha256: str | None = None
    subject: str | None = None
    issuer: str | None = None
    serial: str | None = None
    not_before: str | None = None
    not_after: str | None = None
    key: KeyInfo | None = None
    sans: tuple[str, ...] = ()
    sct: bool = False
    extensions: tuple[str, ...] = ()
    self_signed: bool = False
    ski: str | None = None
    aki: str | None = None
    is_ca: bool | None = None
    parse_error: str | None = None


@dataclass(frozen=True, slots=True)
class Validation:
    """The result of validating one chain against one trust store at one time."""

    store: str
    store_version: str
    trusted: bool
    at: str
    error: str | None = None
    anchor_sha256: str | None = None
    anchor_subject: str | None = None
    hostname_ok: bool | None = None
    path_len: int | None = None


@dataclass(frozen=True, slots=True)
class Interception:
    matched: bool
    label: str | None = None
    incident: str | None = None
    matched_sha256: str | None = None
    evidence: str | None = None
    pattern: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Control:
    kind: str
    outcome: str | None = None
    tls: TlsInfo | None = None
    chain: tuple[CertFacts, ...] = ()
    target: Target | None = None


@dataclass(frozen=True, slots=True)
class Attempts:
    count: int = 1
    agreeing: int = 1


@dataclass(frozen=True, slots=True)
class Record:
    """One observation and its verdict."""

    id: str
    run_id: str
    source: str
    time: str
    target: Target
    vantage: Vantage = field(default_factory=Vantage)
    flow: Flow | None = None
    dns: DnsInfo | None = None
    tcp: TcpInfo | None = None
    tls: TlsInfo | None = None
    http: HttpInfo | None = None
    chain: tuple[CertFacts, ...] = ()
    validation: tuple[Validation, ...] = ()
    interception: Interception | None = None
    control: Control | None = None
    #: The SNI control when a run has two controls (``control`` is then the path control).
    control_sni: Control | None = None
    attempts: Attempts | None = None
    verdict: str = "inconclusive"
    outcome: str = "setup/system_failure"
    confidence: float = 0.0
    rule_id: str | None = None
    rules_version: str | None = None
    reasons: tuple[str, ...] = ()
    anomalies: tuple[str, ...] = ()
    schema: str = SCHEMA


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One per output (and one more per resume): how the results were made."""

    run_id: str
    tool: str
    tool_version: str
    started: str
    command: tuple[str, ...] = ()
    ended: str | None = None
    rules_version: str | None = None
    registry_version: str | None = None
    stores: tuple[tuple[str, str], ...] = ()
    openssl: str | None = None
    vantage: Vantage | None = None
    resumed: bool = False
    kind: str = "run"
    schema: str = SCHEMA


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One per input file an analysis finished (``tlswatch analyse``), after its records.

    ``complete``: the analysis of the file finished, so every record of it is above this
    line (a resumed run skips such files, matched by ``sha256``). ``partial``: the file itself
    was truncated or damaged, so it was read up to the damage (``warnings`` says where).
    ``anomalies`` counts what was odd in the file or on the wire, by name.
    ``anonymize_key_id`` identifies the pseudonymisation key (a hash of it), if any.
    """

    run_id: str
    path: str
    sha256: str
    size: int
    records: int
    complete: bool = True
    partial: bool = False
    format: str | None = None
    packets: int = 0
    flows: int = 0
    handshakes: int = 0
    anomalies: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    anonymize_key_id: str | None = None
    kind: str = "input"
    schema: str = SCHEMA


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
# class -> its JSON-ready converter, built on first sight (asking ``dataclasses.fields`` for
# every object was most of a record's cost; per-class converters read all fields at once).
_CONVERTERS: dict[type, Callable[[Any], Any]] = {}


def to_plain(value: Any) -> Any:
    """JSON-ready form of any part of a record (None kept)."""
    cls = value.__class__
    if cls in _SCALARS:
        return value
    convert = _CONVERTERS.get(cls)
    if convert is None:
        convert = _CONVERTERS[cls] = _converter(value)
    return convert(value)


def _converter(value: Any) -> Callable[[Any], Any]:
    if isinstance(value, tuple | list):
        return _plain_list
    if isinstance(value, dict):
        return _plain_dict
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_converter(value.__class__, omit_none=False)
    return _same


def _same(value: Any) -> Any:
    return value


def _plain_list(value: Any) -> list[Any]:
    out = list(value)
    for i, v in enumerate(out):
        if v.__class__ not in _SCALARS:
            out[i] = to_plain(v)
    return out


def _plain_dict(value: Any) -> dict[Any, Any]:
    return {k: to_plain(v) for k, v in value.items()}


def _dataclass_converter(cls: type, *, omit_none: bool) -> Callable[[Any], dict[str, Any]]:
    """A converter of ``cls``'s instances to dicts (all fields read by one attrgetter)."""
    names = tuple(f.name for f in dataclasses.fields(cls))
    if len(names) == 1:  # (attrgetter of one name returns the value, not a tuple)
        one = names[0]
        if omit_none:
            return lambda obj: {} if getattr(obj, one) is None \
                else {one: to_plain(getattr(obj, one))}
        return lambda obj: {one: to_plain(getattr(obj, one))}
    get = operator.attrgetter(*names)

    def convert(obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, v in zip(names, get(obj), strict=True):
            if v.__class__ in _SCALARS:
                if v is not None or not omit_none:
                    out[name] = v
            else:
                out[name] = to_plain(v)
        return out

    return convert


_RECORD_DICTS: dict[type, Callable[[Any], dict[str, Any]]] = {}


def to_dict(obj: Any) -> Any:
    """JSON-ready dict of a record. Absent (None) top-level sections are omitted."""
    cls = obj.__class__
    if cls is not Record and cls is not RunRecord and cls is not InputRecord \
            and not isinstance(obj, Record | RunRecord | InputRecord):
        return to_plain(obj)
    convert = _RECORD_DICTS.get(cls)
    if convert is None:
        convert = _RECORD_DICTS[cls] = _dataclass_converter(cls, omit_none=True)
    out = convert(obj)
    if isinstance(obj, RunRecord):
        out["stores"] = [{"name": n, "version": v} for n, v in obj.stores]
    return out


T = TypeVar("T")


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(args[0], value) if len(args) == 1 else value
    if origin is tuple:
        targs = typing.get_args(tp)
        inner = targs[0] if targs else Any
        if inner is tuple or typing.get_origin(inner) is tuple:
            return tuple(tuple(v) for v in value)
        return tuple(_convert(inner, v) for v in value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value)
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a record (or part) from its JSON dict; unknown keys are ignored (forward compat)."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        if cls is RunRecord and f.name == "stores":
            kwargs["stores"] = tuple((s["name"], s["version"]) for s in data["stores"])
            continue
        kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)

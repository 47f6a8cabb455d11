"""Read OONI measurements and pull out what tlswatch judges: TLS handshakes and early failures.

One measurement is one JSON object per line (the OONI data format, ``df-000-base``); the
handshakes follow ``df-006-tlshandshake``. Where they sit depends on the nettest:

* ``web_connectivity``, ``urlgetter`` and most others: ``test_keys.tls_handshakes[]``;
* ``sni_blocking``: ``test_keys.target.tls_handshakes[]``, measured against a test helper
  (so the name is not checked: the helper never holds the target's certificate), with
  ``test_keys.control.tls_handshakes[]`` (the control SNI on the same helper) as control;
* ``tlsping``: ``test_keys.pings[].tls_handshake`` (a list before 2022-06-22);
* ``tlsmiddlebox``: ``test_keys.iterative_trace[].target_trace.iterations[].handshake``, with
  ``control_trace`` as control; only the last iteration of a trace counts (the earlier ones
  are TTL-limited on purpose and fail by design).

Everything here is data from a file: types are checked, sizes capped, and what does not fit
becomes an anomaly note (or, for a line that is not a measurement at all,
:class:`MeasurementError`), never a crash.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import gzip
import ipaddress
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tlswatch.ooni.failures import OoniStage

__all__ = [
    "MAX_CERTS",
    "MAX_LINE_BYTES",
    "Measurement",
    "MeasurementError",
    "MeasurementInfo",
    "OoniFailure",
    "OoniHandshake",
    "open_measurements",
    "parse_measurement",
    "read_measurements",
]

MAX_CERTS = 100  # a chain longer than this is hostile, not a chain
MAX_CERT_BYTES = 256 * 1024
MAX_LINE_BYTES = 64 * 1024 * 1024  # web_connectivity lines with bodies reach a few MB
MAX_ANSWERS = 16
_MAX_T = 24 * 3600.0  # a handshake "t" seconds after the start; more is nonsense


class MeasurementError(ValueError):
    """A line that is not a usable OONI measurement (message without file/line)."""


@dataclass(frozen=True, slots=True)
class MeasurementInfo:
    """The measurement-level fields every record carries (provenance and vantage)."""

    report_id: str
    input: str | None
    test_name: str
    start: datetime
    start_text: str
    probe_cc: str
    probe_asn: str
    measurement_uid: str | None = None


@dataclass(frozen=True, slots=True)
class OoniHandshake:
    """One ``df-006`` handshake as observed; ``path`` says where it sits in ``test_keys``."""

    path: str
    at: datetime
    server_name: str | None
    ip: str | None
    port: int | None
    failure: str | None
    certs: tuple[bytes, ...]
    tls_version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    handshake_ms: float | None = None
    name_check: bool = True
    ttl: int | None = None
    anomalies: tuple[str, ...] = ()
    control: OoniHandshake | None = None


@dataclass(frozen=True, slots=True)
class OoniFailure:
    """A measurement that failed before any TLS handshake (DNS or TCP)."""

    path: str
    stage: OoniStage
    failure: str
    at: datetime
    ip: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class Measurement:
    info: MeasurementInfo
    domain: str | None
    sni: str | None
    port: int
    handshakes: tuple[OoniHandshake, ...]
    failures: tuple[OoniFailure, ...]
    resolver: str | None
    answers: tuple[str, ...]
    dns_failure: str | None
    anomalies: tuple[str, ...]


# -- reading -----------------------------------------------------------------------------


@contextlib.contextmanager
def open_measurements(path: Path) -> Iterator[Iterable[bytes]]:
    """The lines of a measurement file (``.gz`` transparently); OSError when unreadable.

    A corrupt gzip stream raises while iterating (OSError, EOFError or ``zlib.error``).
    """
    with open(path, "rb") as f:
        if path.name.endswith(".gz"):
            with gzip.open(f, "rb") as g:
                yield g
        else:
            yield f


def read_measurements(f: Iterable[bytes]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yield ``(line number, measurement object)`` or ``(line number, error message)``.

    Blank lines are skipped; a line that is not a JSON object yields its error, so the caller
    counts it and goes on. Reading errors of the file itself (OSError, a corrupt gzip stream)
    propagate.
    """
    for lineno, line in enumerate(f, 1):
        if len(line) > MAX_LINE_BYTES:
            yield lineno, f"longer than {MAX_LINE_BYTES} bytes"
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield lineno, f"not JSON ({e.msg})"
            continue
        except UnicodeDecodeError:
            yield lineno, "not UTF-8"
            continue
        except RecursionError:
            yield lineno, "nested too deeply"
            continue
        if not isinstance(obj, dict):
            yield lineno, "not a JSON object"
            continue
        yield lineno, obj


# -- typed access to untyped JSON ----------------------------------------------------------


def _str(d: dict[str, Any], key: str) -> str | None:
    v = d.get(key)
    return v if isinstance(v, str) and v else None


def _dict(d: dict[str, Any], key: str) -> dict[str, Any] | None:
    v = d.get(key)
    return v if isinstance(v, dict) else None


def _dicts(v: Any) -> list[dict[str, Any]]:
    """A list of objects (``null`` and non-objects dropped); a lone object counts as one."""
    if isinstance(v, dict):
        return [v]
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _num(d: dict[str, Any], key: str) -> float | None:
    v = d.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _short(text: str, limit: int = 120) -> str:
    clean = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return clean + ("…" if len(text) > limit else "")


def parse_start(text: str) -> datetime:
    """``measurement_start_time`` ("2020-01-28 15:27:18", UTC) or an ISO-8601 time."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MeasurementError(f"measurement_start_time {_short(text, 40)!r}: not a time") \
            from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _at(start: datetime, entry: dict[str, Any], notes: list[str], where: str) -> datetime:
    t = _num(entry, "t")
    if t is None:
        return start
    if not 0 <= t <= _MAX_T:
        notes.append(f"{where}: t={t!r} is not a time after the measurement start; using the start")
        return start
    # Microseconds as integers: the float only says how far after the start.
    return start + timedelta(microseconds=round(t * 1_000_000))


def _address(text: str | None) -> tuple[str | None, int | None]:
    """``1.2.3.4:443`` / ``[2001:db8::1]:443`` -> (ip, port); a name gives (None, port)."""
    if not text:
        return None, None
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, ""
    host = host.strip("[]")
    port = int(port_text) if port_text.isdigit() and 0 < int(port_text) < 65536 else None
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        return None, port


def _certs(value: Any, where: str, notes: list[str]) -> tuple[bytes, ...]:
    """Decode ``peer_certificates`` (``df-001`` BinaryData, or a PEM/base64 string)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        notes.append(f"{where}.peer_certificates: not a list")
        return ()
    if len(value) > MAX_CERTS:
        notes.append(f"{where}.peer_certificates: {len(value)} entries, only the first "
                     f"{MAX_CERTS} judged")
        value = value[:MAX_CERTS]
    out: list[bytes] = []
    for i, item in enumerate(value):
        data: str | None = None
        if isinstance(item, dict):
            fmt = item.get("format", "base64")
            data = item.get("data") if fmt == "base64" else None
            if fmt != "base64":
                notes.append(f"{where}.peer_certificates[{i}]: format {_short(str(fmt), 20)!r} "
                             "unknown")
        elif isinstance(item, str):
            data = item
            if "-----BEGIN" in item:  # legacy (Measurement Kit) PEM strings
                body = item.split("-----", 4)[2] if item.count("-----") >= 4 else ""
                data = "".join(body.split())
        der = b""
        if isinstance(data, str) and len(data) <= MAX_CERT_BYTES * 4 // 3 + 4:
            try:
                der = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                notes.append(f"{where}.peer_certificates[{i}]: not base64")
        elif data is not None:
            notes.append(f"{where}.peer_certificates[{i}]: too large or not a string")
        # An undecodable entry stays in place (as nothing), so positions in the chain hold;
        # the chain engine reports it as an unparseable certificate.
        out.append(der)
    return tuple(out)


def _handshake(entry: dict[str, Any], path: str, start: datetime, *,
               conn_ips: dict[int, tuple[str, int | None]],
               name_check: bool = True, ttl: int | None = None,
               control: OoniHandshake | None = None,
               default_sni: str | None = None) -> OoniHandshake:
    notes: list[str] = []
    at = _at(start, entry, notes, path)
    ip, port = _address(_str(entry, "address"))
    conn = entry.get("conn_id")
    if ip is None and isinstance(conn, int) and conn in conn_ips:
        ip, port = conn_ips[conn]  # sni_blocking keeps the address on tcp_connect only
    failure = entry.get("failure")
    if failure is not None and not isinstance(failure, str):
        notes.append(f"{path}.failure: not a string")
        failure = "unknown_failure"
    t, t0 = _num(entry, "t"), _num(entry, "t0")
    ms = round((t - t0) * 1000, 3) if t is not None and t0 is not None and t >= t0 else None
    return OoniHandshake(
        path=path, at=at, server_name=_str(entry, "server_name") or default_sni, ip=ip,
        port=port,
        failure=failure or None, certs=_certs(entry.get("peer_certificates"), path, notes),
        tls_version=_str(entry, "tls_version"), cipher=_str(entry, "cipher_suite"),
        alpn=_str(entry, "negotiated_protocol"), handshake_ms=ms, name_check=name_check,
        ttl=ttl, anomalies=tuple(notes), control=control)


def _conn_ips(tcp_connect: Any) -> dict[int, tuple[str, int | None]]:
    out: dict[int, tuple[str, int | None]] = {}
    for c in _dicts(tcp_connect):
        conn, ip = c.get("conn_id"), _str(c, "ip")
        port = c.get("port")
        if isinstance(conn, int) and ip:
            out[conn] = (ip, port if isinstance(port, int) else None)
    return out


def _tcp_failures(tcp_connect: Any, prefix: str, start: datetime,
                  port: int) -> list[OoniFailure]:
    out: list[OoniFailure] = []
    for i, c in enumerate(_dicts(tcp_connect)):
        status = _dict(c, "status") or {}
        failure = _str(status, "failure")
        c_port = c.get("port")
        if failure is None or (isinstance(c_port, int) and c_port != port):
            continue
        ip = _str(c, "ip")
        out.append(OoniFailure(f"{prefix}tcp_connect[{i}]", OoniStage.TCP, failure,
                               _at(start, c, [], ""), ip,
                               c_port if isinstance(c_port, int) else None))
    return out


def _dns(tk: dict[str, Any], host: str | None) -> tuple[str | None, tuple[str, ...], str | None]:
    """(resolver, answers for ``host``, first failure) from ``queries[]``."""
    resolver: str | None = None
    answers: list[str] = []
    failure: str | None = None
    for q in _dicts(tk.get("queries")):
        if host is not None and q.get("hostname") != host:
            continue
        resolver = resolver or _str(q, "resolver_address") or _str(q, "engine")
        failure = failure or _str(q, "failure")
        for a in _dicts(q.get("answers")):
            value = _str(a, "ipv4") or _str(a, "ipv6")
            if value and value not in answers and len(answers) < MAX_ANSWERS:
                answers.append(value)
    return resolver, tuple(answers), failure


def _target_of(input_text: str | None) -> tuple[str | None, int | None, bool]:
    """(host, port, is_tls) of the measurement's input (a URL, or a bare name/IP)."""
    if not input_text:
        return None, None, False
    if "://" not in input_text:
        return input_text.strip().lower() or None, None, True
    try:
        u = urlsplit(input_text)
        port = u.port
    except ValueError:
        return None, None, False
    scheme = u.scheme.lower()
    return ((u.hostname or None), port,
            scheme in ("https", "tlshandshake", "tlstrace", "dot", "quichandshake"))


# -- the measurement -----------------------------------------------------------------------


def parse_measurement(obj: dict[str, Any]) -> Measurement:
    """Pull the TLS-relevant observations out of one measurement."""
    tk = obj.get("test_keys")
    if not isinstance(tk, dict):
        raise MeasurementError("no test_keys object")
    start_text = obj.get("measurement_start_time")
    if not isinstance(start_text, str):
        raise MeasurementError("no measurement_start_time")
    start = parse_start(start_text)
    test_name = _str(obj, "test_name") or "unknown"
    input_text = obj.get("input") if isinstance(obj.get("input"), str) else None
    info = MeasurementInfo(
        report_id=_str(obj, "report_id") or "", input=input_text, test_name=test_name,
        start=start, start_text=start_text, probe_cc=_str(obj, "probe_cc") or "ZZ",
        probe_asn=_str(obj, "probe_asn") or "AS0",
        measurement_uid=_str(obj, "measurement_uid"))
    host, in_port, is_tls = _target_of(input_text)
    port = in_port or 443
    notes: list[str] = []
    handshakes: list[OoniHandshake] = []
    failures: list[OoniFailure] = []
    sni = host
    dns_tk = tk

    if test_name == "sni_blocking":
        target, control = _dict(tk, "target") or {}, _dict(tk, "control") or {}
        sni = _str(target, "sni") or host
        dns_tk = target
        c_entries = _dicts(control.get("tls_handshakes"))
        ctl = (_handshake(c_entries[-1], f"control.tls_handshakes[{len(c_entries) - 1}]", start,
                          conn_ips=_conn_ips(control.get("tcp_connect")),
                          default_sni=_str(control, "sni"))
               if c_entries else None)
        ips = _conn_ips(target.get("tcp_connect"))
        for i, e in enumerate(_dicts(target.get("tls_handshakes"))):
            handshakes.append(_handshake(e, f"target.tls_handshakes[{i}]", start, conn_ips=ips,
                                         name_check=False, control=ctl, default_sni=sni))
        if not handshakes:
            failures += _tcp_failures(target.get("tcp_connect"), "target.", start, port)
    elif test_name == "tlsping":
        for i, ping in enumerate(_dicts(tk.get("pings"))):
            entries = _dicts(ping.get("tls_handshake")) or _dicts(ping.get("tls_handshakes"))
            for j, e in enumerate(entries):
                suffix = "" if isinstance(ping.get("tls_handshake"), dict) else f"[{j}]"
                handshakes.append(_handshake(e, f"pings[{i}].tls_handshake{suffix}", start,
                                             conn_ips={}))
            if not entries:
                failures += _tcp_failures(ping.get("tcp_connect"), f"pings[{i}].", start, port)
    elif test_name == "tlsmiddlebox":
        for i, trace in enumerate(_dicts(tk.get("iterative_trace"))):
            last: dict[str, OoniHandshake | None] = {}
            for side in ("control_trace", "target_trace"):
                iters = _dicts((_dict(trace, side) or {}).get("iterations"))
                if not iters or not isinstance(iters[-1].get("handshake"), dict):
                    last[side] = None
                    continue
                it = iters[-1]
                ttl = it.get("ttl") if isinstance(it.get("ttl"), int) else None
                last[side] = _handshake(
                    it["handshake"], f"iterative_trace[{i}].{side}.iterations[{len(iters) - 1}]"
                    ".handshake", start, conn_ips={}, name_check=side == "control_trace",
                    ttl=ttl)
            tgt = last["target_trace"]
            if tgt is not None:
                handshakes.append(dataclasses.replace(tgt, control=last["control_trace"]))
        sni = host
    else:
        for i, e in enumerate(_dicts(tk.get("tls_handshakes"))):
            handshakes.append(_handshake(e, f"tls_handshakes[{i}]", start, conn_ips={}))
        if not handshakes and is_tls:
            failures += _tcp_failures(tk.get("tcp_connect"), "", start, port)

    resolver, answers, q_failure = _dns(dns_tk, host)
    dns_failure = _str(tk, "dns_experiment_failure") or q_failure
    if not handshakes and not failures and is_tls:
        # Nothing was connected to: the failure (if any) is in DNS or in test_keys.failure.
        top = _str(tk, "failure")
        op = _str(tk, "failed_operation") or ""
        if dns_failure:
            failures.append(OoniFailure("queries", OoniStage.DNS, dns_failure, start))
        elif top:
            stage = (OoniStage.DNS if "resolve" in op else
                     OoniStage.TLS if "tls" in op else OoniStage.TCP)
            failures.append(OoniFailure("failure", stage, top, start))
    return Measurement(info=info, domain=host, sni=sni, port=port,
                       handshakes=tuple(handshakes), failures=tuple(failures),
                       resolver=resolver or _str(obj, "resolver_ip"), answers=answers,
                       dns_failure=dns_failure, anomalies=tuple(notes))

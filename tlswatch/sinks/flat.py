"""The flat projection: one row per record, stable typed columns (DESIGN.md §5).

CSV, SQLite (``measurements``) and Parquet dashboards read the same columns, defined once in
:data:`COLUMNS` and documented in ``docs/sinks.md``. A row is a projection, not the record:
lists are joined with ``|``, only the leaf and the first trust anchor are kept, and peer
strings have control and format characters escaped (``\\n``, ``\\x1b``, ``\\u202e``) so no
dashboard or terminal renders them. Columns are added over time, never renamed.

Run records project to rows with ``kind = "run"`` (``time`` is when the run started), the
input records of ``tlswatch analyse`` to ``kind = "input"``, and every observation to
``kind = "measurement"``. Dashboards filter on ``kind``.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from tlswatch.model import Record, RunRecord, rfc3339, to_dict

__all__ = [
    "COLUMNS",
    "COLUMN_NAMES",
    "JOIN",
    "MAX_CELL",
    "Column",
    "ColumnType",
    "FlatRow",
    "FlatValue",
    "clean_text",
    "flatten",
    "parse_time",
]

ColumnType = Literal["str", "int", "float", "bool", "time"]
FlatValue = str | int | float | bool | None

#: Separator of joined list columns (``dns_answers``, ``stores``, ``reasons`` ...).
JOIN = "|"
#: Longest text cell (Excel's limit is 32,767 characters); longer text is cut with "…".
MAX_CELL = 32000


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    doc: str


def _c(name: str, type_: ColumnType, doc: str) -> Column:
    return Column(name, type_, doc)


COLUMNS: tuple[Column, ...] = (
    _c("kind", "str", "measurement | run | input"),
    _c("id", "str", "record id (deterministic; empty for run rows)"),
    _c("run_id", "str", "the run that made the record"),
    _c("schema", "str", "tlswatch/1"),
    _c("source", "str", "probe | pcap | ooni | file"),
    _c("time", "time", "RFC 3339 UTC time of the handshake (run rows: when the run started)"),
    _c("target_domain", "str", "target.domain"),
    _c("target_sni", "str", "target.sni (the SNI sent)"),
    _c("target_ip", "str", "target.ip"),
    _c("target_port", "int", "target.port"),
    _c("vantage_name", "str", "vantage.name"),
    _c("vantage_kind", "str", "vantage.kind"),
    _c("flow_client_ip", "str", "flow.client_ip (captures)"),
    _c("flow_client_port", "int", "flow.client_port"),
    _c("flow_server_ip", "str", "flow.server_ip"),
    _c("flow_server_port", "int", "flow.server_port"),
    _c("flow_transport", "str", "flow.transport"),
    _c("dns_resolver", "str", "dns.resolver"),
    _c("dns_answers", "str", "dns.answers joined with |"),
    _c("dns_failure", "str", "dns.failure (dns/...)"),
    _c("dns_rcode", "str", "dns.rcode"),
    _c("tcp_failure", "str", "tcp.failure (tcp/...)"),
    _c("tcp_connect_ms", "float", "tcp.connect_ms"),
    _c("tcp_rst_ttl", "int", "tcp.rst.ttl (TTL of a RST: injection evidence)"),
    _c("tcp_rst_ip_id", "int", "tcp.rst.ip_id"),
    _c("tcp_rst_injected_evidence", "str", "tcp.rst.injected_evidence joined with |"),
    _c("tls_version", "str", "tls.version"),
    _c("tls_cipher", "str", "tls.cipher"),
    _c("tls_alpn", "str", "tls.alpn"),
    _c("tls_alert", "str", "tls.alert (name of the alert the server sent)"),
    _c("tls_failure", "str", "tls.failure (tls/...)"),
    _c("tls_history", "str", "tls.history (handshake history string)"),
    _c("tls_ja3", "str", "tls.ja3"),
    _c("tls_ja3s", "str", "tls.ja3s"),
    _c("tls_ja4", "str", "tls.ja4"),
    _c("tls_handshake_ms", "float", "tls.handshake_ms"),
    _c("tls_bytes_read", "int", "tls.bytes_read"),
    _c("http_status", "int", "http.status"),
    _c("http_title", "str", "http.title (peer text)"),
    _c("http_body_sha256", "str", "http.body_sha256"),
    _c("http_body_len", "int", "http.body_len"),
    _c("http_blockpage", "str", "http.blockpage (fingerprint id)"),
    _c("chain_len", "int", "number of certificates presented (0 when none)"),
    _c("chain_sha256", "str", "SHA-256 of each presented certificate, leaf first, joined with |"),
    _c("leaf_sha256", "str", "chain[0].sha256"),
    _c("leaf_spki_sha256", "str", "chain[0].spki_sha256"),
    _c("leaf_subject", "str", "chain[0].subject (peer text)"),
    _c("leaf_issuer", "str", "chain[0].issuer (peer text)"),
    _c("leaf_serial", "str", "chain[0].serial"),
    _c("leaf_not_before", "str", "chain[0].not_before"),
    _c("leaf_not_after", "str", "chain[0].not_after"),
    _c("leaf_key_type", "str", "chain[0].key.type"),
    _c("leaf_key_bits", "int", "chain[0].key.bits"),
    _c("leaf_key_exponent", "int", "chain[0].key.exponent (3 in the 2019 KZ forgeries)"),
    _c("leaf_sans", "str", "chain[0].sans joined with | (peer text)"),
    _c("leaf_self_signed", "bool", "chain[0].self_signed"),
    _c("leaf_sct", "bool", "chain[0].sct"),
    _c("anchor_sha256", "str", "trust anchor of the first validation that found one"),
    _c("anchor_subject", "str", "its subject (peer text for untrusted roots)"),
    _c("stores", "str", "validation[].store joined with | (run rows: the run's stores)"),
    _c("store_versions", "str", "the stores' versions, same order, joined with |"),
    _c("trusted", "bool", "trusted in every store used (empty when nothing was validated)"),
    _c("validation_error", "str", "distinct validation errors in store order, joined with |"),
    _c("hostname_ok", "bool", "the name matched in every validation that checked it"),
    _c("interception_matched", "bool", "interception.matched"),
    _c("interception_label", "str", "interception.label (registry CA label)"),
    _c("interception_incident", "str", "interception.incident"),
    _c("interception_evidence", "str",
       "interception.evidence: verified_signature | issuer_name_only | forgery_pattern"),
    _c("interception_matched_sha256", "str", "interception.matched_sha256"),
    _c("interception_pattern", "str", "interception.pattern (2019 forgery traits) joined with |"),
    _c("control_kind", "str", "control.kind: sni | path | resolver"),
    _c("control_outcome", "str", "control.outcome"),
    _c("control_outcome_class", "str", "control.outcome without its detail"),
    _c("control_leaf_sha256", "str", "control.chain[0].sha256"),
    _c("attempts_count", "int", "attempts.count"),
    _c("attempts_agreeing", "int", "attempts.agreeing"),
    _c("verdict", "str", "ok | intercepted | blocked | anomaly | down | inconclusive"),
    _c("outcome", "str", "stage/class[:detail]"),
    _c("outcome_class", "str", "stage/class (group and chart by this, never by outcome)"),
    _c("outcome_stage", "str", "dns | tcp | tls | cert | http | setup"),
    _c("confidence", "float", "0-1"),
    _c("rule_id", "str", "the rule that decided (docs/verdicts.md)"),
    _c("rules_version", "str", "version of the rules (run rows: of the run)"),
    _c("reasons", "str", "reasons joined with |"),
    _c("anomalies", "str", "anomalies joined with |"),
    _c("run_tool", "str", "run rows: tool"),
    _c("run_tool_version", "str", "run rows: tool_version"),
    _c("run_ended", "time", "run rows: when the run ended (empty while running or if killed)"),
    _c("run_command", "str", "run rows: the command line, arguments joined with spaces"),
    _c("run_resumed", "bool", "run rows: a resumed run"),
    _c("run_registry_version", "str", "run rows: interception-CA registry version"),
    _c("run_openssl", "str", "run rows: OpenSSL version"),
    _c("input_path", "str", "input rows: the capture file analysed"),
    _c("input_sha256", "str", "input rows: its SHA-256"),
    _c("input_size", "int", "input rows: its size in bytes"),
    _c("input_format", "str", "input rows: pcap | pcapng"),
    _c("input_records", "int", "input rows: records written for it"),
    _c("input_complete", "bool", "input rows: its analysis finished"),
    _c("input_partial", "bool", "input rows: the file was truncated or damaged"),
    _c("input_packets", "int", "input rows: packets read"),
    _c("input_flows", "int", "input rows: flows seen"),
    _c("input_handshakes", "int", "input rows: TLS handshakes seen"),
    _c("input_anomalies", "str", "input rows: anomaly counts as name=count joined with |"),
    _c("input_warnings", "str", "input rows: warnings joined with |"),
    # Appended, not placed beside control_*: tools that combine old and new files by column
    # position (DuckDB's default over Parquet parts) and SQLite's ADD COLUMN keep lining up.
    _c("control_sni_outcome", "str", "control_sni.outcome (the SNI control of a run with two)"),
    _c("control_sni_outcome_class", "str", "control_sni.outcome without its detail"),
    _c("control_sni_leaf_sha256", "str", "control_sni.chain[0].sha256"),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
_TYPES: dict[str, ColumnType] = {c.name: c.type for c in COLUMNS}


class FlatRow(dict[str, FlatValue]):
    """A flat row (column -> value). Readers of CSV and Parquet yield these, not records."""


_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def clean_text(text: str) -> str:
    """Escape control, format and line-separator characters; cut to :data:`MAX_CELL`."""
    if text.isprintable() and len(text) <= MAX_CELL:
        return text  # the common case: nothing to escape
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            code = ord(ch)
            out.append(_ESCAPES.get(ch) or (f"\\x{code:02x}" if code < 0x100 else
                                            f"\\u{code:04x}" if code < 0x10000 else
                                            f"\\U{code:08x}"))
        else:
            out.append(ch)  # e.g. spaces other than ' ' (Zs): shown as they are
    s = "".join(out)
    return s if len(s) <= MAX_CELL else s[: MAX_CELL - 1] + "…"


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time as an aware UTC datetime, or None when it is not one."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def _get(obj: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(key, int):
            if not isinstance(obj, list) or len(obj) <= key:
                return None
            obj = obj[key]
        else:
            if not isinstance(obj, Mapping):
                return None
            obj = obj.get(key)
    return obj


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return clean_text(json.dumps(value, ensure_ascii=True, separators=(",", ":")))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _time(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    t = parse_time(value)
    return rfc3339(t) if t is not None else clean_text(value)


def _joined(values: Any) -> str | None:
    if not isinstance(values, list) or not values:
        return None
    parts = [_text(v) or "" for v in values]
    return clean_text(JOIN.join(parts)) or None


def _coerce(name: str, value: Any) -> FlatValue:
    kind = _TYPES[name]
    if kind == "str":
        return _text(value)
    if kind == "int":
        return _int(value)
    if kind == "float":
        return _float(value)
    if kind == "bool":
        return _bool(value)
    return _time(value)


def _all_or_none(values: list[Any]) -> bool | None:
    known = [v for v in values if isinstance(v, bool)]
    return all(known) if known else None


def _measurement(d: Mapping[str, Any]) -> dict[str, Any]:
    raw_chain, raw_validation = d.get("chain"), d.get("validation")
    chain: list[Any] = raw_chain if isinstance(raw_chain, list) else []
    validations: list[Mapping[str, Any]] = [
        v for v in raw_validation if isinstance(v, Mapping)] \
        if isinstance(raw_validation, list) else []
    anchor = next((v for v in validations if v.get("trusted") and v.get("anchor_sha256")),
                  next((v for v in validations if v.get("anchor_sha256") or
                        v.get("anchor_subject")), {}))
    errors: list[str] = []
    for v in validations:
        err = v.get("error")
        if isinstance(err, str) and err and err not in errors:
            errors.append(err)
    outcome = d.get("outcome") if isinstance(d.get("outcome"), str) else None
    ctl_outcome = _get(d, "control", "outcome")
    ctl_outcome = ctl_outcome if isinstance(ctl_outcome, str) else None
    sni_outcome = _get(d, "control_sni", "outcome")
    sni_outcome = sni_outcome if isinstance(sni_outcome, str) else None
    return {
        "kind": "measurement",
        "id": d.get("id"), "run_id": d.get("run_id"), "schema": d.get("schema"),
        "source": d.get("source"), "time": d.get("time"),
        "target_domain": _get(d, "target", "domain"), "target_sni": _get(d, "target", "sni"),
        "target_ip": _get(d, "target", "ip"), "target_port": _get(d, "target", "port"),
        "vantage_name": _get(d, "vantage", "name"), "vantage_kind": _get(d, "vantage", "kind"),
        "flow_client_ip": _get(d, "flow", "client_ip"),
        "flow_client_port": _get(d, "flow", "client_port"),
        "flow_server_ip": _get(d, "flow", "server_ip"),
        "flow_server_port": _get(d, "flow", "server_port"),
        "flow_transport": _get(d, "flow", "transport"),
        "dns_resolver": _get(d, "dns", "resolver"),
        "dns_answers": _joined(_get(d, "dns", "answers")),
        "dns_failure": _get(d, "dns", "failure"), "dns_rcode": _get(d, "dns", "rcode"),
        "tcp_failure": _get(d, "tcp", "failure"),
        "tcp_connect_ms": _get(d, "tcp", "connect_ms"),
        "tcp_rst_ttl": _get(d, "tcp", "rst", "ttl"),
        "tcp_rst_ip_id": _get(d, "tcp", "rst", "ip_id"),
        "tcp_rst_injected_evidence": _joined(_get(d, "tcp", "rst", "injected_evidence")),
        **{f"tls_{k}": _get(d, "tls", k) for k in (
            "version", "cipher", "alpn", "alert", "failure", "history", "ja3", "ja3s", "ja4",
            "handshake_ms", "bytes_read")},
        **{f"http_{k}": _get(d, "http", k) for k in (
            "status", "title", "body_sha256", "body_len", "blockpage")},
        "chain_len": len(chain),
        "chain_sha256": _joined([_get(c, "sha256") for c in chain]),
        "leaf_sha256": _get(chain, 0, "sha256"), "leaf_spki_sha256": _get(chain, 0, "spki_sha256"),
        "leaf_subject": _get(chain, 0, "subject"), "leaf_issuer": _get(chain, 0, "issuer"),
        "leaf_serial": _get(chain, 0, "serial"),
        "leaf_not_before": _get(chain, 0, "not_before"),
        "leaf_not_after": _get(chain, 0, "not_after"),
        "leaf_key_type": _get(chain, 0, "key", "type"),
        "leaf_key_bits": _get(chain, 0, "key", "bits"),
        "leaf_key_exponent": _get(chain, 0, "key", "exponent"),
        "leaf_sans": _joined(_get(chain, 0, "sans")),
        "leaf_self_signed": _get(chain, 0, "self_signed"), "leaf_sct": _get(chain, 0, "sct"),
        "anchor_sha256": anchor.get("anchor_sha256"),
        "anchor_subject": anchor.get("anchor_subject"),
        "stores": _joined([v.get("store") for v in validations]),
        "store_versions": _joined([v.get("store_version") for v in validations]),
        "trusted": _all_or_none([v.get("trusted") for v in validations]),
        "validation_error": _joined(errors),
        "hostname_ok": _all_or_none([v.get("hostname_ok") for v in validations]),
        **{f"interception_{k}": _get(d, "interception", k) for k in (
            "matched", "label", "incident", "evidence", "matched_sha256")},
        "interception_pattern": _joined(_get(d, "interception", "pattern")),
        "control_kind": _get(d, "control", "kind"), "control_outcome": ctl_outcome,
        "control_outcome_class": ctl_outcome.split(":", 1)[0] if ctl_outcome else None,
        "control_leaf_sha256": _get(d, "control", "chain", 0, "sha256"),
        "control_sni_outcome": sni_outcome,
        "control_sni_outcome_class": sni_outcome.split(":", 1)[0] if sni_outcome else None,
        "control_sni_leaf_sha256": _get(d, "control_sni", "chain", 0, "sha256"),
        "attempts_count": _get(d, "attempts", "count"),
        "attempts_agreeing": _get(d, "attempts", "agreeing"),
        "verdict": d.get("verdict"), "outcome": outcome,
        "outcome_class": outcome.split(":", 1)[0] if outcome else None,
        "outcome_stage": outcome.split("/", 1)[0] if outcome and "/" in outcome else None,
        "confidence": d.get("confidence"), "rule_id": d.get("rule_id"),
        "rules_version": d.get("rules_version"),
        "reasons": _joined(d.get("reasons")), "anomalies": _joined(d.get("anomalies")),
    }


def _run(d: Mapping[str, Any]) -> dict[str, Any]:
    stores = [s for s in d.get("stores") or [] if isinstance(s, Mapping)] \
        if isinstance(d.get("stores"), list) else []
    command = d.get("command")
    return {
        "kind": "run", "run_id": d.get("run_id"), "schema": d.get("schema"),
        "time": d.get("started"),
        "vantage_name": _get(d, "vantage", "name"), "vantage_kind": _get(d, "vantage", "kind"),
        "stores": _joined([s.get("name") for s in stores]),
        "store_versions": _joined([s.get("version") for s in stores]),
        "rules_version": d.get("rules_version"),
        "run_tool": d.get("tool"), "run_tool_version": d.get("tool_version"),
        "run_ended": d.get("ended"),
        "run_command": " ".join(str(a) for a in command) if isinstance(command, list) else None,
        "run_resumed": d.get("resumed"),
        "run_registry_version": d.get("registry_version"), "run_openssl": d.get("openssl"),
    }


def _input(d: Mapping[str, Any]) -> dict[str, Any]:
    anomalies = d.get("anomalies")
    counts = [f"{k}={v}" for k, v in anomalies.items()] if isinstance(anomalies, Mapping) \
        else None
    return {
        "kind": "input", "run_id": d.get("run_id"), "schema": d.get("schema"),
        **{f"input_{k}": d.get(k) for k in (
            "path", "sha256", "size", "format", "records", "complete", "partial", "packets",
            "flows", "handshakes")},
        "input_anomalies": _joined(counts), "input_warnings": _joined(d.get("warnings")),
    }


def flatten(record: Record | RunRecord | Mapping[str, Any] | Any) -> FlatRow:
    """The flat row of a record, a run or input record, or their JSON dicts.

    Hostile input is welcome: values of the wrong type become empty cells, and nothing here
    raises on odd input. A record of another ``kind`` keeps its kind, run_id and schema.
    """
    if isinstance(record, FlatRow):
        return FlatRow(record)
    d: Any = record if isinstance(record, Mapping) else to_dict(record)
    kind = d.get("kind")
    if kind == "run":
        raw = _run(d)
    elif kind == "input":
        raw = _input(d)
    elif kind is None or kind == "measurement":
        raw = _measurement(d)
    else:
        raw = {"kind": kind, "run_id": d.get("run_id"), "schema": d.get("schema")}
    return FlatRow((name, _coerce(name, raw.get(name))) for name in COLUMN_NAMES)

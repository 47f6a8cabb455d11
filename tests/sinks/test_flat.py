"""The flat projection: stable documented columns, hostile strings made harmless."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sink_samples import HOSTILE, input_record, record, run_record

from tlswatch.model import to_dict
from tlswatch.sinks.flat import COLUMN_NAMES, COLUMNS, JOIN, MAX_CELL, clean_text, flatten

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sinks.md"


def test_columns_are_unique_snake_case_and_documented() -> None:
    assert len(set(COLUMN_NAMES)) == len(COLUMN_NAMES)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in COLUMN_NAMES)
    documented = re.findall(r"^\| `([a-z0-9_]+)` \| (\w+) \|", DOCS.read_text(), re.M)
    assert [n for n, _ in documented] == list(COLUMN_NAMES)
    assert [t for _, t in documented] == [c.type for c in COLUMNS]


def test_brief_columns_are_all_there() -> None:
    wanted = " ".join((
        "id run_id source time target_domain target_sni target_ip target_port",
        "vantage_name vantage_kind flow_client_ip dns_failure dns_answers tcp_failure",
        "tls_version tls_cipher tls_alert tls_failure tls_ja3 tls_ja3s tls_ja4",
        "leaf_sha256 leaf_subject leaf_issuer anchor_subject chain_len stores trusted",
        "validation_error interception_label interception_incident interception_evidence",
        "control_kind control_outcome attempts_count attempts_agreeing verdict outcome",
        "outcome_class confidence rule_id rules_version reasons")).split()
    assert set(wanted) <= set(COLUMN_NAMES)


def test_a_record_and_its_json_dict_project_the_same() -> None:
    for i in range(12):
        assert flatten(record(i)) == flatten(to_dict(record(i)))
    row = flatten(record(0))
    assert row["kind"] == "measurement" and row["id"] == "m000000"
    assert row["chain_len"] == 3 and row["leaf_key_exponent"] == 3
    assert row["dns_answers"] == "127.0.0.1|::1"
    assert row["stores"] == "mozilla@2019-06|apple" and row["trusted"] is False
    assert row["validation_error"] == "untrusted_root"  # distinct errors only
    assert row["outcome_class"] == "cert/known_interception_ca"
    assert row["outcome_stage"] == "cert"
    assert row["control_kind"] == "path" and row["control_outcome_class"] == "cert/valid"
    failed = flatten(record(2))
    assert failed["chain_len"] == 0 and failed["leaf_sha256"] is None
    assert failed["tcp_failure"] == "tcp/reset" and failed["trusted"] is None


def test_run_and_input_rows() -> None:
    run = flatten(run_record(2, ended=True))
    assert (run["kind"], run["run_id"], run["time"], run["run_ended"]) == (
        "run", "run-2", "2019-08-01T12:00:00Z", "2019-08-01T13:00:00.500000Z")
    assert run["run_command"] == "tlswatch probe -o out file.jsonl =cmd"
    assert run["run_resumed"] is True and run["stores"] == "auto" and run["id"] is None
    inp = flatten(input_record(3))
    assert inp["kind"] == "input" and inp["input_complete"] is True
    assert inp["input_anomalies"] == "tcp_gap=2|weird\\x1b=1"
    assert flatten({"schema": "tlswatch/1", "kind": "future", "run_id": "r"})["kind"] == "future"


def test_time_is_canonical_rfc3339_utc() -> None:
    for raw, want in (("2019-08-01T12:00:00+00:00", "2019-08-01T12:00:00Z"),
                      ("2019-08-01T14:00:00.5+02:00", "2019-08-01T12:00:00.500000Z"),
                      ("not a time", "not a time"), ("", None)):
        assert flatten({"id": "x", "time": raw})["time"] == want


def _safe(text: str) -> bool:
    return all(unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp", "Cs") for c in text)


def test_hostile_peer_strings_are_escaped() -> None:
    assert clean_text("a\nb\r\tc\x1b[31m\u202e\u2028\U000e0041") == \
        "a\\nb\\r\\tc\\x1b[31m\\u202e\\u2028\\U000e0041"
    assert clean_text("Қазақстан ok") == "Қазақстан ok"
    assert len(clean_text("x" * (MAX_CELL + 10))) == MAX_CELL
    for i in range(len(HOSTILE)):
        for v in flatten(record(i)).values():
            assert not isinstance(v, str) or (_safe(v) and v != "")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)
_keys = st.sampled_from(["id", "kind", "time", "target", "tls", "chain", "validation",
                         "control", "reasons", "stores", "command", "anomalies", "outcome",
                         "confidence", "interception", "dns", "tcp", "warnings"])


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=10), st.data())
def test_any_json_object_projects_without_error(obj: dict[str, Any], data: st.DataObject) -> None:
    if "target" in obj and data.draw(st.booleans()):
        obj["target"] = {"domain": data.draw(st.text(max_size=10)), "port": data.draw(_json)}
    row = flatten(obj)
    assert list(row) == list(COLUMN_NAMES)
    types = {c.name: c.type for c in COLUMNS}
    for name, v in row.items():
        if v is None:
            continue
        kind = types[name]
        assert isinstance(v, {"str": str, "time": str, "int": int, "float": float,
                              "bool": bool}[kind]), (name, v)
        if isinstance(v, str):
            assert _safe(v) and v != ""
        if kind == "int":
            assert not isinstance(v, bool)


def test_joined_lists_use_the_separator() -> None:
    row = flatten({"id": "x", "reasons": ["a", "b c", 3], "dns": {"answers": []}})
    assert row["reasons"] == JOIN.join(["a", "b c", "3"]) and row["dns_answers"] is None

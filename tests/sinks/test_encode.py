"""The fast record encoder writes exactly what ``json.dumps(to_dict(record))`` would."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sink_samples import HOSTILE, cert, record

from tlswatch.failures import Verdict
from tlswatch.model import InputRecord, Record, RunRecord, Target, TlsInfo, Validation, to_dict
from tlswatch.sinks.base import EncodedRecord, record_json
from tlswatch.sinks.encode import dumps, record_line


def reference(obj: Any) -> str:
    """The JSONL writer's encoding before the fast path: the standard library's, in full."""
    return json.dumps(to_dict(obj), ensure_ascii=True, separators=(",", ":"))


@pytest.mark.parametrize("i", range(30))
def test_sample_records_are_encoded_as_json_dumps_does(i: int) -> None:
    rec = record(i)  # hostile peer strings, chains of 3 or none, controls, failed flows
    assert record_line(rec) == record_json(rec) == reference(rec)
    assert json.loads(record_line(rec)) == to_dict(rec)


@settings(max_examples=200, deadline=None)
@given(st.from_type(Record))
def test_any_record_is_encoded_as_json_dumps_does(rec: Record) -> None:
    assert record_line(rec) == reference(rec)


@settings(max_examples=50, deadline=None)
@given(st.from_type(RunRecord) | st.from_type(InputRecord))
def test_run_and_input_records_keep_the_standard_encoding(rec: RunRecord | InputRecord) -> None:
    assert record_json(rec) == reference(rec) == record_json(to_dict(rec))


def test_a_chain_is_encoded_once_per_tuple_and_never_confused_with_another() -> None:
    chain = (cert(1, 0), cert(1, 1))
    a = dataclasses.replace(record(0), chain=chain)
    b = dataclasses.replace(record(0), id="other", chain=chain)  # the same tuple: cached text
    c = dataclasses.replace(record(0), chain=(cert(2, 0),))  # another chain
    for rec in (a, b, c, a):
        assert record_line(rec) == reference(rec)
    assert record_line(a) != record_line(c)


def test_absent_sections_and_a_missing_chain_are_left_out() -> None:
    rec = Record(id="i", run_id="r", source="pcap", time="t", target=Target(),
                 chain=None)  # type: ignore[arg-type]  # (to_dict drops any None field)
    assert record_line(rec) == reference(rec)
    assert '"chain"' not in record_line(rec)


def test_peer_strings_stay_escaped_and_odd_numbers_as_json_writes_them() -> None:
    hostile = "\u202e\x1b[31m\u2028\"\\" + "".join(HOSTILE)
    rec = Record(id=hostile, run_id="r", source="pcap", time="t",
                 target=Target(domain=hostile, port=-1),
                 tls=TlsInfo(handshake_ms=math.inf, bytes_read=2**70, cipher=hostile),
                 validation=(Validation("s", "1", False, "t", error=hostile,
                                        path_len=0),),
                 verdict=Verdict.ANOMALY, confidence=1e-7)
    line = record_line(rec)
    assert line == reference(rec)
    assert line.isascii() and "\n" not in line and "\u2028" not in line


def test_what_json_cannot_encode_fails_as_json_does() -> None:
    with pytest.raises(TypeError, match="bytes is not JSON serializable"):
        dumps({"x": b"raw"})
    with pytest.raises(TypeError, match="bytes is not JSON serializable"):
        json.dumps({"x": b"raw"})


def test_encoded_records_carry_the_same_line_from_a_record_or_its_dict() -> None:
    rec = record(4)
    assert EncodedRecord.of(rec) == EncodedRecord.of(to_dict(rec))
    assert EncodedRecord.of(rec).line == reference(rec)

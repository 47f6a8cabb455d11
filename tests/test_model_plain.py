"""The per-class converters of ``to_plain``/``to_dict`` and the fast ``rfc3339`` give exactly
what the plain definitions give (those are written out here as the reference)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswatch.failures import Verdict
from tlswatch.model import (
    InputRecord,
    KeyInfo,
    Record,
    RunRecord,
    Target,
    Vantage,
    rfc3339,
    to_dict,
    to_plain,
)


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def top(obj: Any) -> Any:
    out = {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
           if getattr(obj, f.name) is not None}
    if isinstance(obj, RunRecord):
        out["stores"] = [{"name": n, "version": v} for n, v in obj.stores]
    return out


@settings(max_examples=150, deadline=None)
@given(st.from_type(Record) | st.from_type(RunRecord) | st.from_type(InputRecord))
def test_to_dict_is_the_plain_definition(rec: Record | RunRecord | InputRecord) -> None:
    got = to_dict(rec)
    assert got == top(rec)
    assert list(got) == list(top(rec))  # same key order: the JSON text depends on it


class Pair(NamedTuple):
    a: int
    b: Vantage


def test_to_plain_of_parts_and_containers() -> None:
    single = KeyInfo("rsa")  # (several fields) and a dataclass of one field below
    one = dataclasses.make_dataclass("One", [("x", Any)], frozen=True, slots=True)
    for value in (single, one(single), one(None), (single, [Target()], {"k": (1, 2.5)}),
                  Pair(1, Vantage()), Counter({"gap": 2}), Verdict.OK, None, b"raw", 3.5):
        assert to_plain(value) == plain(value)
    assert to_plain(one(7)) == {"x": 7}
    assert to_plain(Verdict.OK) is Verdict.OK  # (str subclasses are left to the encoder)
    assert to_plain([]) == [] and to_plain(()) == []


@pytest.mark.parametrize("t", [
    datetime(2019, 8, 1, 12, 0, 0, tzinfo=UTC),
    datetime(2019, 8, 1, 12, 0, 0, 15100, tzinfo=UTC),
    datetime(2019, 8, 1, 18, 0, 0, 1, tzinfo=timezone(timedelta(hours=6))),
    datetime(1, 1, 1, 0, 0, 0, tzinfo=UTC),
    datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(9999, 12, 31, 12, 59, 59, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
])
def test_rfc3339_is_strftimes_text(t: datetime) -> None:
    u = t.astimezone(UTC)
    assert rfc3339(t) == u.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if u.microsecond
                                    else "%Y-%m-%dT%H:%M:%SZ")


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.timezones()))
def test_rfc3339_is_strftimes_text_for_any_aware_time(t: datetime) -> None:
    try:
        u = t.astimezone(UTC)
    except OverflowError:  # (near the ends of the datetime range)
        return
    assert rfc3339(t) == u.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if u.microsecond
                                    else "%Y-%m-%dT%H:%M:%SZ")

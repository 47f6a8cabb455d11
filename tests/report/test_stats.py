"""Bounded aggregation of record streams (``tlswatch.report.stats``)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tlswatch.report import stats as stats_mod
from tlswatch.report.stats import OTHER, ReportStats, cn_of

from .hostile import records


def rec(domain: str, verdict: str = "ok", outcome: str = "cert/valid", *,
        time: str = "2019-08-01T12:00:00Z", vantage: str = "v", **extra: Any) -> dict[str, Any]:
    return {"target": {"domain": domain}, "vantage": {"name": vantage}, "verdict": verdict,
            "outcome": outcome, "time": time, **extra}


def test_verdicts_cells_cas_blocking_and_findings() -> None:
    s = ReportStats()
    for r in records():
        assert s.add(r)
    assert s.add({"kind": "run", "run_id": "x"})
    assert s.total == 5 and s.runs == 1
    assert s.verdicts["intercepted"] == 2 and s.verdicts["blocked"] == 1
    assert s.cells[("evil.example", "lab")]["intercepted"] == 1
    [ca] = s.sorted_cas()
    assert ca.count == 2 and ca.label is None and "script" in (ca.issuer or "")
    assert ca.first is not None and ca.last is not None and ca.first < ca.last
    assert s.blocking == {"blocked.example": {"tls/reset": 1}}
    kinds = [f.verdict for f in s.sorted_findings()]
    assert kinds[:3] == ["intercepted", "intercepted", "blocked"]
    ex = s.sorted_findings()[0].example
    assert ex["chain"] and ex["validation"] and ex["control"]["kind"] == "sni"


def test_labelled_ca_first_and_last_seen() -> None:
    s = ReportStats()
    icp = {"matched": True, "label": "kz-2019-qaznet-root", "incident": "kz-2019",
           "evidence": "issuer_name_only"}
    for t in ("2019-07-20T00:00:00Z", "2019-08-06T00:00:00Z", "2019-07-18T10:00:00Z"):
        s.add(rec("facebook.com", "intercepted", "cert/known_interception_ca:kz", time=t,
                  interception=icp))
    [ca] = s.sorted_cas()
    assert ca.key == "label:kz-2019-qaznet-root" and ca.incident == "kz-2019"
    assert ca.first.isoformat().startswith("2019-07-18") and ca.last.day == 6  # type: ignore[union-attr]
    assert ca.evidence == {"issuer_name_only": 3}


def test_not_records_are_counted_not_fatal() -> None:
    s = ReportStats()
    assert not s.add({"hello": "world"})
    assert not s.add(rec("x", verdict="owned"))
    assert not s.add(rec("x", outcome=None))  # type: ignore[arg-type]
    assert s.add(rec("x", time="not a time", chain="nope", anomalies=[1, None, "a"]))
    assert s.not_records == 3 and s.total == 1 and s.first is None


def test_aggregates_stay_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(stats_mod, "MAX_CELLS", 5)
    monkeypatch.setattr(stats_mod, "MAX_FINDINGS", 3)
    s = ReportStats()
    for i in range(50):
        s.add(rec(f"d{i}.example", "blocked", "tls/reset", vantage=f"v{i}"))
    assert len(s.cells) == 6 and (OTHER, OTHER) in s.cells
    assert len(s.domains) == 6 and s.domains[OTHER]["blocked"] == 45
    assert len(s.findings) == 3 and s.findings_dropped == 47


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["verdict", "outcome", "target", "vantage", "time",
                                        "chain", "interception", "anomalies", "control",
                                        "validation", "reasons", "kind"]),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                                    lambda c: st.lists(c, max_size=3)
                                    | st.dictionaries(st.text(max_size=8), c, max_size=3),
                                    max_leaves=10)))
def test_any_json_object_is_handled(obj: dict[str, Any]) -> None:
    ReportStats().add(obj)  # never raises


def test_cn_of() -> None:
    assert cn_of("CN=Qaznet Trust Network,C=KZ") == "Qaznet Trust Network"
    assert cn_of("O=No CN") == "O=No CN" and cn_of(None) is None


def test_flat_rows_are_read_back_into_the_nested_shape() -> None:
    from tlswatch.report.inputs import unflatten
    from tlswatch.sinks import flat

    s = ReportStats()
    for r in records():
        assert s.add(unflatten(dict(flat.flatten(r))))
    assert s.verdicts["intercepted"] == 2 and ("evil.example", "lab") in s.cells
    assert s.blocking == {"blocked.example": {"tls/reset": 1}}


def test_a_large_input_streams_in_bounded_memory(tmp_path: Any) -> None:
    import json
    import tracemalloc

    from tlswatch.report.inputs import read_into

    f = tmp_path / "big.jsonl"
    line = json.dumps(records()[0])
    with open(f, "w") as out:
        for i in range(4_000):
            out.write(line.replace('"hostile0"', f'"id{i}"').replace(
                "2019-08-01T12:00:00Z", f"2019-08-{1 + i % 28:02d}T12:00:00Z") + "\n")
    s = ReportStats()
    tracemalloc.start()
    info = read_into(f, s)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert info.records == 4_000 and s.verdicts["intercepted"] == 4_000
    assert len(s.findings) == 1 and len(s.days) == 28
    assert peak < 4 * 1024 * 1024, peak  # the file is ~14 MB of JSON text

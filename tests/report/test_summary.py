"""The terminal summary (``tlswatch.report.summary``)."""

from __future__ import annotations

from tlswatch.report import ReportStats, render_summary
from tlswatch.report.stats import InputStats

from .hostile import records


def test_sections_and_terminal_safety() -> None:
    s = ReportStats()
    for r in records():
        s.add(r)
    bad = dict(records()[0])
    bad["target"] = {"domain": "evil\x1b]0;owned\x07\u202e.example"}
    s.add(bad)
    s.inputs.append(InputStats("results.jsonl", records=6, bad_lines=2,
                               bad_examples=["line 6: not JSON"]))
    text = render_summary(s)
    for heading in ("Verdicts per domain and vantage", "Interception CAs seen",
                    "Blocking methods", "Anomalies"):
        assert heading in text
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "evil\\x1b]0;owned\\x07\\u202e.example" in text
    assert "untrusted issuer" in text and "first 2019-08-01 12:00" in text
    assert "blocked.example: tls/reset 1" in text
    assert "2 unusable line(s) skipped (line 6: not JSON)" in text


def test_empty_and_row_cap() -> None:
    s = ReportStats()
    assert "0 records" in render_summary(s) and "(no records)" in render_summary(s)
    for i in range(30):
        s.add({"target": {"domain": f"d{i}"}, "verdict": "ok", "outcome": "cert/valid"})
    assert "… 20 more rows" in render_summary(s, max_rows=10)

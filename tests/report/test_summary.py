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


def _trace(sni: str, kind: str, hop: int | None, router: str | None) -> dict[str, object]:
    """A tlswatch-trace/1 record as `tlswatch trace -o` writes it (checked by its schema)."""
    import hashlib
    import json
    from importlib import resources

    import jsonschema

    rec: dict[str, object] = {
        "type": "trace", "schema": "tlswatch-trace/1",
        "id": hashlib.sha256(sni.encode()).hexdigest()[:32],
        "time": "2026-11-28T12:00:00Z",
        "target": {"ip": "198.19.2.1", "port": 443, "sni": sni, "control_sni": "example.org"},
        "options": {"max_ttl": 7, "timeout": 0.3, "repeats": 1, "syn": True}, "hops": [],
        "located_hop": hop, "located_router": router, "server_hop": 5, "tcp_hop": 5,
        "kind": kind, "evidence": [f"full path: {sni} drew a RST (IP TTL 62)"],
        "verdict": "blocked", "outcome": "tls/reset", "confidence": 0.9, "rule_id": "R60",
        "rules_version": "x", "reasons": []}
    schema = json.loads(resources.files("tlswatch.trace").joinpath(
        "trace.schema.json").read_text())
    jsonschema.validate(rec, schema)
    return rec


def test_traces_have_their_own_section_and_are_not_verdicts() -> None:
    s = ReportStats()
    for r in records():
        s.add(r)
    before = (s.total, dict(s.verdicts))
    assert s.add(_trace("reset.test", "injection", 3, "198.18.3.2"))
    assert s.add(_trace("evil\x1b[2J.example", "none", None, None))
    assert (s.total, dict(s.verdicts)) == before  # a trace locates a box: no verdict count
    text = render_summary(s)
    assert "Middlebox traces (tlswatch trace)" in text
    line = next(x for x in text.splitlines() if "reset.test" in x and "injection" in x)
    assert line.split()[2:6] == ["injection", "3", "198.18.3.2", "5"]
    assert "\x1b" not in text and "evil\\x1b[2J.example" in text


def test_no_trace_section_without_traces() -> None:
    s = ReportStats()
    for r in records():
        s.add(r)
    assert "Middlebox traces" not in render_summary(s)

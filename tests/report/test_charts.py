"""Inline SVG charts (``tlswatch.report.charts``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from datetime import date, timedelta

from tlswatch.report.charts import issuer_chart, timeline_chart, verdict_chart

SVG = "{http://www.w3.org/2000/svg}"
EVIL = '"><script>alert(1)</script><g onload="x'


def test_one_mark_per_domain_and_escaped() -> None:
    domains = [(EVIL, Counter(intercepted=2, ok=1)), ("b.example", Counter(blocked=1)),
               ("c.example", Counter(ok=4))]
    svg = verdict_chart(domains)
    root = ET.fromstring(svg)  # well-formed XML: nothing broke out of an attribute
    marks = [g for g in root.iter(f"{SVG}g") if g.get("class") == "mark"]
    assert [m.get("data-domain") for m in marks] == [EVIL, "b.example", "c.example"]
    assert "<script>" not in svg and all(e.get("onload") is None for e in root.iter())
    segs = [r.get("data-verdict") for r in marks[0].iter(f"{SVG}rect")]
    assert segs == ["intercepted", "ok"]


def test_timeline_units_and_gaps() -> None:
    days = {date(2019, 8, 1): [3, 1], date(2019, 8, 4): [1, 0]}
    root = ET.fromstring(timeline_chart(days))
    buckets = [g for g in root.iter(f"{SVG}g") if g.get("class") == "bucket"]
    assert root.get("data-unit") == "day" and len(buckets) == 4  # the empty days show
    assert buckets[0].get("data-intercepted") == "1"
    long = {date(2015, 1, 1) + timedelta(days=100 * i): [1, i % 2] for i in range(40)}
    root = ET.fromstring(timeline_chart(long))
    assert root.get("data-unit") == "month"
    assert len([g for g in root.iter(f"{SVG}g") if g.get("class") == "bucket"]) <= 140


def test_issuers_top_n_and_empty_charts() -> None:
    c = Counter({f"CA {i}": i + 1 for i in range(30)})
    c[EVIL] = 100
    root = ET.fromstring(issuer_chart(c, top_n=5))
    names = [g.get("data-issuer") for g in root.iter(f"{SVG}g")]
    assert names[0] == EVIL and names[-1] == "(all others)" and len(names) == 6
    for svg in (verdict_chart([]), timeline_chart({}), issuer_chart(Counter())):
        ET.fromstring(svg)

"""The HTML report as text (``tlswatch.report.html``); the browser checks are in
``test_html_browser.py``."""

from __future__ import annotations

from html.parser import HTMLParser

from tlswatch.report import ReportStats, render_html

from .hostile import DOMAINS, records


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs


def _page() -> str:
    s = ReportStats()
    for r in records():
        s.add(r)
    return render_html(s)


def test_self_contained_and_no_active_content() -> None:
    page = _page()
    p = _Tags()
    p.feed(page)
    assert not {"script", "img", "iframe", "link", "object", "embed"} & set(p.tags)
    names = {n for n, _ in p.attrs}
    assert not {n for n in names if n.startswith("on")}
    assert not names & {"href", "src", "srcset", "action", "xlink:href"}
    # The only URL in any attribute is the SVG namespace (an identifier, never fetched).
    assert {v for _, v in p.attrs if v and "://" in v} == {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in page.replace("&#x27;", "'")


def test_every_payload_is_escaped() -> None:
    page = _page()
    assert "<script>" not in page and "<svg onload" not in page and "<iframe" not in page
    assert "&lt;script&gt;window.__pwned=1" in page
    assert page.count('class="mark"') == len(DOMAINS)


def test_findings_show_the_evidence() -> None:
    page = _page()
    for what in ("R42-untrusted-control-valid", "Validation per store", "Chain",
                 "sni control: valid", "Control</b> (sni", "blocked.example",
                 "R72-failure-control-succeeded"):
        assert what in page, what
    assert page.count("<details open>") == 3  # the first interference findings, open


def test_trace_section_escapes_hostile_names() -> None:
    from .test_summary import _trace

    s = ReportStats()
    for r in records():
        s.add(r)
    s.add(_trace("<script>alert(1)</script>.example", "injection", 3, "198.18.3.2"))
    page = render_html(s)
    assert '<h2 id="traces">Middlebox traces</h2>' in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<td class="n">3</td><td class="mono">198.18.3.2</td>' in page
    assert '<h2 id="traces">' not in render_html(ReportStats())

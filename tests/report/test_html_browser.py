"""The HTML report in a real browser (headless Chromium, the Debian package ``chromium``).

What is checked where it matters, in the engine that renders the page: it makes no request
at all (not even to file:// neighbours), nothing from a certificate runs or becomes an
element, and the verdict chart has exactly one mark per domain. The escaping is also checked
with the page's Content Security Policy removed, so the CSP is a second wall, not the only
one; and a control page shows the harness does see requests and scripts when there are some.
A screenshot is written (``TLSWATCH_REPORT_SCREENSHOT=PATH`` keeps a copy).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import require_tool

from tlswatch.cli.main import cli
from tlswatch.report.html import CSP

from .chromium import Chromium
from .hostile import DOMAINS, MARKERS, write_results

# Elements and attributes that load or run something; the report needs none of them.
_ACTIVE = ("script, img, iframe, object, embed, link, audio, video, source, frame, "
           "base, form, meta[http-equiv=refresh], use, image, foreignObject")
_CHECKS = """(() => {
  const all = [...document.querySelectorAll('*')];
  return {
    pwned: window.__pwned === undefined ? null : String(window.__pwned),
    title: document.title,
    active: [...document.querySelectorAll(ACTIVE)].map(e => e.tagName),
    styles: document.querySelectorAll('style').length,
    handlers: all.flatMap(e => [...e.attributes].filter(a => /^on/i.test(a.name))
                                               .map(a => e.tagName + '@' + a.name)),
    urls: all.flatMap(e => [...e.attributes]
        .filter(a => /^(href|src|srcset|action|formaction|xlink:href|background|poster)$/i
                     .test(a.name)).map(a => a.value)),
    marks: document.querySelectorAll('svg[data-chart=verdicts] g.mark').length,
    markDomains: [...document.querySelectorAll('svg[data-chart=verdicts] g.mark')]
                   .map(g => g.getAttribute('data-domain')),
    text: document.body.innerText,
  };
})()""".replace("ACTIVE", repr(_ACTIVE))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    exe = require_tool("chromium")
    with Chromium(exe, tmp_path_factory.mktemp("chromium-profile")) as b:
        yield b


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("report")
    results = write_results(d / "results.jsonl", ("{not json", "[1, 2]"))
    page = d / "report.html"
    r = CliRunner().invoke(cli, ["report", str(results), "--html", str(page)])
    assert r.exit_code == 0, r.output
    return page


def _assert_clean(browser: Chromium, page: Path) -> dict[str, object]:
    requests = browser.open(page.as_uri())
    assert requests == [page.as_uri()], requests  # the document itself, nothing else
    got = browser.evaluate(_CHECKS)
    assert got["pwned"] is None
    assert got["title"] == "tlswatch report"
    assert got["active"] == [] and got["handlers"] == [] and got["urls"] == []
    assert got["styles"] == 1  # the report's own stylesheet
    for token in MARKERS:  # every payload is on the page, as text
        assert token in got["text"], token
    return dict(got)


def test_report_in_chromium_is_inert_and_has_one_mark_per_domain(
        browser: Chromium, report_page: Path, tmp_path: Path) -> None:
    got = _assert_clean(browser, report_page)
    assert got["marks"] == len(DOMAINS)
    assert set(got["markDomains"]) == DOMAINS  # type: ignore[arg-type]
    shot = browser.screenshot(tmp_path / "report.png")
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("TLSWATCH_REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


def test_escaping_alone_keeps_it_inert_without_the_csp(
        browser: Chromium, report_page: Path, tmp_path: Path) -> None:
    html = report_page.read_text()
    meta = f'<meta http-equiv="Content-Security-Policy" content="{CSP.replace(chr(39), "&#x27;")}">'
    assert meta in html
    bare = tmp_path / "no-csp.html"
    bare.write_text(html.replace(meta, ""))
    _assert_clean(browser, bare)


def test_the_harness_sees_requests_and_scripts(browser: Chromium, tmp_path: Path) -> None:
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><title>t</title><img src="http://127.0.0.1:9/x.png">'
                       "<script>window.__pwned = 'ran'</script>")
    requests = browser.open(control.as_uri())
    assert "http://127.0.0.1:9/x.png" in requests
    assert browser.evaluate("window.__pwned") == "ran"

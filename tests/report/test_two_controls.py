"""Findings of a run with two controls show the SNI control (``control_sni``) beside the path
control, capped and escaped like every other peer-derived value, from JSONL and CSV alike."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tlswatch.classify.chain import ChainJudge
from tlswatch.classify.probe_record import judge_observation, probe_record
from tlswatch.model import Target, Vantage, to_dict
from tlswatch.probe.observation import ProbeObservation
from tlswatch.report import ReportStats, render_html
from tlswatch.report.inputs import read_into
from tlswatch.report.stats import MAX_TEXT
from tlswatch.sinks.base import open_sink
from tlswatch.testing import CertFactory, write_store_pem
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import load_store

from .hostile import IMG_O, SCRIPT_CN

F = CertFactory(seed=0)
SITE = Target(domain="facebook.com", sni="facebook.com", ip="127.0.0.1", port=443)


def _ders(chain: Sequence[x509.Certificate]) -> tuple[bytes, ...]:
    return tuple(c.public_bytes(Encoding.DER) for c in chain)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Made by the real probe-record code: the forged chain seen with both controls valid
    (intercepted), and the same with only the path control."""
    store = write_store_pem(tmp_path_factory.mktemp("s") / "public.pem", [F.public_root().cert])
    judge = ChainJudge([load_store(str(store))], load_registry())

    def obs(target: Target, chain: tuple[bytes, ...]) -> ProbeObservation:
        return ProbeObservation(target=target, started=F.now, chain_der=chain)

    seen = judge_observation(obs(SITE, _ders(F.forged_random_ca("facebook.com").chain)), judge)
    path = judge_observation(obs(SITE, _ders(F.legitimate("facebook.com").chain)), judge)
    sni = judge_observation(obs(
        Target(domain="facebook.com", sni="example.com", ip="127.0.0.1", port=443),
        _ders(F.legitimate("example.com").chain)), judge)
    out = []
    for i, (domain, sni_control) in enumerate((("two.example", sni), ("one.example", None))):
        rec, _ = probe_record(record_id=f"r{i}", run_id="run", seen=seen, control=path,
                              sni_control=sni_control, vantage=Vantage("kz", "vantage"))
        d: dict[str, Any] = json.loads(json.dumps(to_dict(rec)))
        d["target"]["domain"] = domain
        out.append(d)
    return out


def _page(recs: list[dict[str, Any]]) -> tuple[ReportStats, str]:
    s = ReportStats()
    for r in recs:
        assert s.add(r)
    return s, render_html(s)


def _finding_html(page: str, domain: str) -> str:
    start = page.index(f"<b>{domain}</b>")
    return page[start: page.index("</details>", start)]


def test_the_finding_shows_both_controls(records: list[dict[str, Any]]) -> None:
    assert records[0]["verdict"] == "intercepted" and "control_sni" not in records[1]
    _, page = _page(records)
    two = _finding_html(page, "two.example")
    assert "<b>Control</b> (path, SNI facebook.com): cert/valid; chain: CN=facebook.com" in two
    assert "<b>SNI control</b> (sni, SNI example.com): cert/valid; chain: CN=example.com" in two
    one = _finding_html(page, "one.example")
    assert "<b>Control</b> (path, SNI facebook.com): cert/valid" in one and "SNI control" not in one


def test_sni_control_is_escaped_and_bounded(records: list[dict[str, Any]]) -> None:
    rec = json.loads(json.dumps(records[0]))
    sni = rec["control_sni"]
    sni["outcome"] = f"cert/untrusted_root:{SCRIPT_CN}" + "x" * 5000
    sni["target"]["sni"] = IMG_O
    sni["chain"] = [{"subject": f"CN={SCRIPT_CN} {n}"} for n in range(50)]
    s, page = _page([rec])
    ev = s.sorted_findings()[0].example["control_sni"]
    assert len(ev["outcome"]) == MAX_TEXT and len(ev["chain"]) == 5
    assert "<script>" not in page and "<img" not in page
    assert "SNI &quot;&gt;&lt;img src=x onerror=" in page
    assert "CN=&lt;script&gt;window.__pwned=1" in page
    for odd in ("sni", ["x"], 7, None):
        rec["control_sni"] = odd
        s, page = _page([rec])
        assert s.sorted_findings()[0].example["control_sni"] is None
        assert "SNI control" not in page


def test_a_csv_report_shows_the_sni_control_outcome(tmp_path: Path,
                                                     records: list[dict[str, Any]]) -> None:
    csv = tmp_path / "r.csv"
    with open_sink(csv, append=False) as sink:
        for r in records:
            sink.write(r)
    s = ReportStats()
    info = read_into(csv, s)
    assert (info.records, info.bad_lines) == (2, 0)
    by_domain = {f.domain: f.example for f in s.sorted_findings()}
    assert by_domain["two.example"]["control_sni"] == {
        "kind": "sni", "outcome": "cert/valid", "sni": None, "chain": []}
    assert by_domain["one.example"]["control_sni"] is None
    page = render_html(s)
    assert "<b>SNI control</b> (sni): cert/valid" in _finding_html(page, "two.example")

"""The metrics of ``tlswatch watch``: bounded labels, no peer strings, the dashboard's names."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tlswatch.model import Interception, Record, Target, Vantage
from tlswatch.probe.campaign import Summary
from tlswatch.watch.metrics import METRIC_NAMES, OUTCOME_CLASSES, VERDICTS, Metrics
from tlswatch.x509.registry import load_registry

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "EVIL\u202e<script>\n{x=\"1\"}"


def rec(domain: str, verdict: str, outcome: str, vantage: str = "local",
        incident: str | None = None) -> Record:
    icp = Interception(True, label=HOSTILE, incident=incident) if incident is not None else None
    return Record(id="r", run_id="run", source="probe", time="2025-01-01T00:00:00Z",
                  target=Target(domain=domain, sni=HOSTILE, port=443),
                  vantage=Vantage(vantage, "remote"), verdict=verdict, outcome=outcome,
                  interception=icp, reasons=(HOSTILE,), anomalies=(HOSTILE,))


def samples(m: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def label_values(m: Metrics) -> set[str]:
    return {v for fam in text_string_to_metric_families(m.exposition().decode())
            for s in fam.samples for v in s.labels.values()}


def test_vocabularies_are_the_documented_ones() -> None:
    assert {"ok", "intercepted", "blocked", "anomaly", "down", "inconclusive"} == VERDICTS
    assert {"tls/reset", "cert/known_interception_ca", "dns/nxdomain", "http/blockpage",
            "setup/captive_portal"} <= OUTCOME_CLASSES
    assert all(":" not in c for c in OUTCOME_CLASSES)


def test_labels_come_only_from_the_target_list_and_fixed_vocabularies() -> None:
    m = Metrics(["a.example", "b.example"], ["paris"], ["isca-2019"], clock=lambda: 1234.5)
    m.observe(rec("a.example", "ok", "cert/valid", "paris"))
    m.observe(rec("a.example", "intercepted", f"cert/known_interception_ca:{HOSTILE}", "paris",
                  incident="isca-2019"))
    m.observe(rec("a.example", "intercepted", "cert/untrusted_root:CN=Peer Corp", "local",
                  incident=""))
    m.observe(rec("b.example", "intercepted", "cert/known_interception_ca:x", "paris",
                  incident=HOSTILE))  # not a registry incident
    m.observe(rec("peer-chosen.example", "blocked", "tls/reset", "paris"))  # not a target
    m.observe(rec("a.example", "blocked", "tls/reset", "vantage-from-nowhere"))
    m.observe(rec("a.example", HOSTILE, f"{HOSTILE}/x:y"))  # garbage verdict and outcome

    meas = samples(m, "tlswatch_measurements_total")
    key = (("domain", "a.example"), ("outcome_class", "cert/valid"), ("vantage", "paris"),
           ("verdict", "ok"))
    assert meas[key] == 1
    assert meas[(("domain", "other"), ("outcome_class", "tls/reset"), ("vantage", "paris"),
                 ("verdict", "blocked"))] == 1
    assert meas[(("domain", "a.example"), ("outcome_class", "tls/reset"), ("vantage", "other"),
                 ("verdict", "blocked"))] == 1
    assert meas[(("domain", "a.example"), ("outcome_class", "other"), ("vantage", "local"),
                 ("verdict", "other"))] == 1
    icp = samples(m, "tlswatch_interceptions_total")
    assert icp == {
        (("domain", "a.example"), ("incident", "isca-2019"), ("vantage", "paris")): 1,
        (("domain", "a.example"), ("incident", "none"), ("vantage", "local")): 1,
        (("domain", "b.example"), ("incident", "other"), ("vantage", "paris")): 1,
    }
    assert samples(m, "tlswatch_last_success_timestamp_seconds") == {
        (("domain", "a.example"), ("vantage", "paris")): 1234.5}

    allowed = ({"a.example", "b.example", "other", "paris", "local", "isca-2019", "none"}
               | VERDICTS | OUTCOME_CLASSES)
    assert label_values(m) <= allowed
    text = m.exposition().decode()
    for peer in ("EVIL", "script", "Peer Corp", "peer-chosen", "vantage-from-nowhere"):
        assert peer not in text


def test_label_cardinality_is_capped() -> None:
    domains = [f"d{i}.example" for i in range(50)]
    m = Metrics(domains, [f"v{i}" for i in range(10)], max_domains=5, max_vantages=3)
    for d in domains:
        for v in range(10):
            m.observe(rec(d, "blocked", "tls/reset", f"v{v}"))
    meas = samples(m, "tlswatch_measurements_total")
    doms = {dict(k)["domain"] for k in meas}
    vans = {dict(k)["vantage"] for k in meas}
    assert doms == {"d0.example", "d1.example", "d2.example", "d3.example", "d4.example",
                    "other"}
    assert vans == {"v0", "v1", "other"}  # "local" takes one of the three
    assert sum(meas.values()) == 500
    assert len(meas) <= 6 * 3


def test_campaign_metrics_and_exposed_names() -> None:
    m = Metrics(["a.example"], [], (e.incident for e in load_registry().entries))
    m.campaign_done(Summary(elapsed_s=1.5))
    m.campaign_done(Summary(elapsed_s=2.5))
    assert samples(m, "tlswatch_campaigns_total") == {(): 2}
    assert samples(m, "tlswatch_campaign_duration_seconds") == {(): 2.5}
    m.observe(rec("a.example", "ok", "cert/valid"))
    m.observe(rec("a.example", "intercepted", "cert/known_interception_ca", incident="x"))
    names = {s.name for fam in text_string_to_metric_families(m.exposition().decode())
             for s in fam.samples}
    assert set(METRIC_NAMES) <= names


def test_grafana_dashboard_parses_and_uses_only_existing_metrics() -> None:
    dash = json.loads((ROOT / "dashboards" / "tlswatch-grafana.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dash["templating"]["list"]]
    used = {name for e in exprs for name in re.findall(r"\btlswatch_[a-z_]+", e)}
    assert used and used <= set(METRIC_NAMES), used - set(METRIC_NAMES)
    assert {"tlswatch_measurements_total", "tlswatch_interceptions_total",
            "tlswatch_last_success_timestamp_seconds"} <= used
    labels = {lab for e in exprs for lab in re.findall(r"by \(([^)]*)\)", e)}
    for group in labels:
        assert {x.strip() for x in group.split(",")} <= {
            "domain", "vantage", "verdict", "outcome_class", "incident"}
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])

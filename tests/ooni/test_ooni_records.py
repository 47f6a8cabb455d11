"""OONI measurements -> judged tlswatch records (``tlswatch.ooni``), on the spec's examples."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tlswatch.classify.chain import ChainJudge
from tlswatch.ooni import (
    MeasurementError,
    OoniConverter,
    OoniRecord,
    open_measurements,
    parse_measurement,
    read_measurements,
)
from tlswatch.record_schema import load_schema
from tlswatch.x509.registry import load_registry

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> dict[str, Any]:
    with open_measurements(FIXTURES / name) as lines:
        [(_, obj)] = list(read_measurements(lines))
    assert isinstance(obj, dict)
    return obj


def convert(m: dict[str, Any]) -> list[OoniRecord]:
    return OoniConverter(ChainJudge(None, load_registry(())), "run").convert(parse_measurement(m))


def test_kz_2019_forgery_is_intercepted_with_the_qaznet_label() -> None:
    [r] = convert(load("kz2019-forged-facebook.generated.jsonl"))
    rec = r.to_json()
    assert rec["verdict"] == "intercepted"
    assert rec["interception"]["label"] == "kz-2019-qaznet-root"
    assert rec["outcome"] == "cert/known_interception_ca:kz-2019-qaznet-root"
    assert rec["source"] == "ooni" and rec["vantage"] == {"name": "KZ AS9198", "kind": "ooni"}
    assert rec["time"] == "2019-08-01T12:00:00.250000Z"
    assert rec["validation"][0]["store"] == "mozilla@2019-06"  # auto: the store of the time
    assert rec["ooni"]["failure"] == "ssl_unknown_authority"
    assert rec["target"] == {"domain": "facebook.com", "sni": "facebook.com",
                             "ip": "31.13.72.36", "port": 443}
    jsonschema.validate(rec, load_schema())


def test_kz_fixture_matches_its_script() -> None:
    r = subprocess.run([sys.executable, str(Path(__file__).parent / "make_kz_fixture.py"),
                        "--check"], check=False)
    assert r.returncode == 0, "rerun tests/ooni/make_kz_fixture.py"


@pytest.mark.parametrize(("name", "expected"), [
    ("ts-017-web-connectivity.example.jsonl", [("ok", "cert/valid", "example.com")]),
    ("ts-027-urlgetter.example.jsonl", [("ok", "cert/valid", "www.example.com")]),
    ("ts-033-tlsping.example.jsonl", [("ok", "cert/valid", None)] * 3),
    # The target SNI at the test helper: no certificates kept, the expected name failure.
    ("ts-024-sni-blocking.example.jsonl", [("inconclusive", "cert/no_chain", "blocked.com")]),
    # A reset at TTL 4 for the target SNI while the control SNI completed: blocked.
    ("ts-037-tlsmiddlebox.example.jsonl", [("blocked", "tls/reset", "1337x.be")]),
])
def test_spec_examples(name: str, expected: list[tuple[str, str, str | None]]) -> None:
    recs = [r.to_json() for r in convert(load(name))]
    assert [(r["verdict"], r["outcome"], r["target"]["domain"]) for r in recs] == expected
    schema = load_schema()
    for r in recs:
        jsonschema.validate(r, schema)
        assert r["ooni"]["test_name"].replace("_", "-") in name
        assert r["ooni"]["path"] and r["ooni"]["measurement_start_time"]
    assert len({r["id"] for r in recs}) == len(recs)


def test_controls_are_compared() -> None:
    [sni] = convert(load("ts-024-sni-blocking.example.jsonl"))
    assert sni.record.control is not None and sni.record.control.outcome == "cert/valid"
    assert sni.record.control.target is not None
    assert sni.record.control.target.ip == "37.218.245.90"  # found through conn_id
    assert sni.record.control.target.sni == "ps.ooni.io"  # the subresult's sni
    assert sni.record.control.chain[0].subject == "CN=ams-ps.ooni.nu"
    [mb] = convert(load("ts-037-tlsmiddlebox.example.jsonl"))
    assert mb.meta["ttl"] == 4 and mb.record.tls is not None
    assert mb.record.tls.failure == "tls/reset" and mb.record.rule_id == \
        "R72-failure-control-succeeded"


def test_ids_are_deterministic() -> None:
    m = load("ts-033-tlsping.example.jsonl")
    assert [r.record.id for r in convert(m)] == [r.record.id for r in convert(m)]


def _wc_with(handshake: dict[str, Any] | None, **tk: Any) -> dict[str, Any]:
    m = copy.deepcopy(load("ts-017-web-connectivity.example.jsonl"))
    m["test_keys"]["tls_handshakes"] = [handshake] if handshake else []
    m["test_keys"].update(tk)
    return m


@pytest.mark.parametrize(("failure", "outcome", "verdict"), [
    ("connection_reset", "tls/reset", "anomaly"),
    ("generic_timeout_error", "tls/timeout", "anomaly"),
    ("eof_error", "tls/eof", "anomaly"),
    ("ssl_invalid_hostname", "cert/hostname_mismatch", "anomaly"),
])
def test_handshake_failures(failure: str, outcome: str, verdict: str) -> None:
    hs = {"failure": failure, "peer_certificates": None, "server_name": "example.com",
          "t": 1.5, "address": "93.184.216.34:443"}
    [r] = convert(_wc_with(hs))
    assert (r.record.outcome, r.record.verdict) == (outcome, verdict)
    assert r.meta["failure"] == failure


def test_verification_failure_with_a_chain_judges_the_chain() -> None:
    m = load("ts-017-web-connectivity.example.jsonl")
    m["test_keys"]["tls_handshakes"][0]["failure"] = "ssl_invalid_hostname"
    [r] = convert(m)
    assert r.record.outcome == "cert/valid" and r.record.verdict == "ok"


def test_failures_before_any_handshake() -> None:
    m = _wc_with(None, tcp_connect=[{"ip": "93.184.216.34", "port": 443, "t": 0.3,
                                     "status": {"failure": "connection_refused",
                                                "success": False}}])
    [r] = convert(m)
    assert r.record.outcome == "tcp/refused" and r.record.tcp is not None
    assert r.record.target.ip == "93.184.216.34"
    m = _wc_with(None, tcp_connect=[], queries=[], dns_experiment_failure="dns_nxdomain_error")
    [r] = convert(m)
    assert r.record.outcome == "dns/nxdomain" and r.record.dns is not None
    m = _wc_with(None, tcp_connect=[])
    assert convert(m) == []  # nothing failed, nothing handshaken: nothing to say


def test_hostile_measurement_fields_become_notes() -> None:
    hs = {"failure": None, "server_name": "example.com", "t": -5,
          "peer_certificates": [{"format": "base64", "data": "!!!"}, {"format": "hex"}, 7]}
    [r] = convert(_wc_with(hs))
    notes = " ".join(r.record.anomalies)
    assert "not base64" in notes and "unknown" in notes and "not a time" in notes
    assert r.record.outcome == "cert/invalid"  # the leaf cannot be parsed
    with pytest.raises(MeasurementError):
        parse_measurement({"test_keys": {}})
    with pytest.raises(MeasurementError):
        parse_measurement({"test_keys": {}, "measurement_start_time": "yesterday"})


def test_reading_counts_bad_lines(tmp_path: Path) -> None:
    import gzip

    good = (FIXTURES / "ts-024-sni-blocking.example.jsonl").read_bytes()
    f = tmp_path / "m.jsonl.gz"
    f.write_bytes(gzip.compress(b"{broken\n\n[1]\n" + good + b"\xff\xfe\n"))
    with open_measurements(f) as lines:
        got = list(read_measurements(lines))
    assert [type(o).__name__ for _, o in got] == ["str", "str", "dict", "str"]
    assert [n for n, _ in got] == [1, 3, 4, 5]
    assert json.loads(good)["report_id"] == got[2][1]["report_id"]  # type: ignore[index]

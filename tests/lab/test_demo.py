"""``tlswatch lab demo`` end to end: the lab as a child process, probes with controls."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from click.testing import CliRunner
from conftest import require_tool

from tlswatch.cli.main import cli
from tlswatch.record_schema import load_schema


def test_demo_verdicts_match_what_the_lab_did(tmp_path: Path) -> None:
    require_tool("tcpdump")
    out = tmp_path / "demo"
    r = CliRunner().invoke(cli, ["lab", "demo", "-o", str(out), "--port", "0",
                                 "--tls-timeout", "2"])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "demo: all" in r.stdout
    lines = r.stdout.splitlines()
    rows = {(ln.split()[0], ln.split()[1]): ln for ln in lines if ln.startswith(
        ("facebook.com", "blocked-reset.test", "lab-sslsplit.test", "lab-private-ca.test"))}
    assert "intercepted  cert/known_interception_ca:kz-2019-qaznet-root" in \
        rows[("facebook.com", "resolve")]
    assert "blocked      tls/reset" in rows[("blocked-reset.test", "resolve")]
    # sslsplit's CA has a random name in no registry: only the control path tells.
    assert "intercepted  cert/untrusted_root:Lab Corp" in rows[("lab-sslsplit.test", "resolve")]
    # A private CA seen the same on the control path is not interception.
    assert "ok           cert/untrusted_root:Private Corp" in \
        rows[("lab-private-ca.test", "resolve")]

    schema = load_schema()
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    for rec in recs:
        jsonschema.validate(rec, schema)
    runs = [x for x in recs if x.get("kind") == "run"]
    assert len(runs) == 2 and runs[-1]["ended"]
    measurements = [x for x in recs if x.get("kind") != "run"]
    assert len(measurements) == len({x["id"] for x in measurements}) >= 50
    assert all(x["control"]["kind"] in ("resolver", "sni") for x in measurements)
    keylog = (out / "keylog.txt").read_text()
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keylog or "CLIENT_RANDOM" in keylog
    assert (out / "demo.pcap").stat().st_size > 10_000
    assert (out / "lab-public-root.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE")

    # The same network judged again from the wire: interception the probe found is found in
    # its capture (TLS 1.3 decrypted with the probe's key log), and nothing else is.
    intercepted = {x["target"]["sni"] for x in measurements if x["verdict"] == "intercepted"}
    a = CliRunner().invoke(cli, ["analyse", str(out / "demo.pcap"), "--keylog",
                                 str(out / "keylog.txt"), "--store",
                                 str(out / "lab-public-root.pem")])
    assert a.exit_code == 0, a.stderr
    recs = [json.loads(x) for x in a.stdout.splitlines()]
    seen = {x["target"]["sni"] for x in recs if x.get("verdict") == "intercepted"}
    assert "facebook.com" in seen and seen <= intercepted
    assert len(seen) >= len(intercepted) // 2  # a loaded machine may still drop packets


def test_expected_verdicts_follow_what_the_lab_did_on_the_path() -> None:
    from tlswatch.lab.demo import expected_verdict

    assert expected_verdict("kz2019") == expected_verdict("sslsplit") == "intercepted"
    assert expected_verdict("splice") == "ok"  # also sslsplit's domains when it is missing
    assert expected_verdict("blocker:dns_zero") == "blocked"
    assert expected_verdict("hostile:slow") is None


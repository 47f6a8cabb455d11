"""``tlswatch trace`` in the namespace lab: client — r1 — r2 — mb — r3 — server.

The trace runs as a subprocess inside the client namespace, so this test process never
sends a packet itself; it only reads the record and checks it against the lab's layout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from lab.netns.fixture import netns_lab  # noqa: F401  (the shared session fixture)

from tlswatch.lab.netns import NetnsLab

SCHEMA = json.loads((Path(__file__).parents[2] / "tlswatch" / "trace" /
                     "trace.schema.json").read_text())
CASES = {"facebook.com": "example.org", "reset.test": "example.org",
         "alert.test": "example.org", "example.org": "example.com"}


def _argv(lab: NetnsLab, sni: str, control: str) -> list[str]:
    return lab.exec_argv(lab.client_ns, [
        sys.executable, "-m", "tlswatch", "trace", lab.address_of(sni), "--sni", sni,
        "--control-sni", control, "--timeout", "0.3", "--max-ttl", "8",
        "--store", str(lab.store_path)])


@pytest.fixture(scope="module")
def traced(netns_lab: NetnsLab) -> dict[str, tuple[dict[str, Any], str]]:  # noqa: F811
    out = {}
    for sni, control in CASES.items():  # one at a time: ICMP rate limits are per router
        proc = subprocess.run(_argv(netns_lab, sni, control), capture_output=True, text=True,
                              timeout=90)
        assert proc.returncode == 0, proc.stderr
        out[sni] = (json.loads(proc.stdout), proc.stderr)
    return out


def _routers(rec: dict[str, Any]) -> dict[int, str | None]:
    return {h["ttl"]: h["router"] for h in rec["hops"]}


def test_records_match_the_schema(traced: dict[str, tuple[dict[str, Any], str]]) -> None:
    for rec, _ in traced.values():
        jsonschema.Draft202012Validator(SCHEMA).validate(rec)


def test_interception_is_located_at_the_middlebox(
        traced: dict[str, tuple[dict[str, Any], str]], netns_lab: NetnsLab) -> None:  # noqa: F811
    rec, table = traced["facebook.com"]
    assert netns_lab.treatment("facebook.com") == "intercept"
    assert rec["located_hop"] == netns_lab.middlebox_hop == 3
    assert rec["kind"] == "interception" and rec["verdict"] == "intercepted"
    hop = rec["hops"][2]
    assert hop["target"]["response"] == "server_hello"
    assert hop["target"]["verdict"] == "intercepted"
    assert hop["target"]["outcome"].startswith("cert/known_interception_ca:")
    assert "Security Certificate" in hop["target"]["leaf"]["issuer"]
    # The interceptor terminates TCP: the handshake completes at its hop for any SNI.
    assert rec["tcp_hop"] == 3
    routers = _routers(rec)
    assert [routers[1], routers[2]] == [netns_lab.hops[0].ip, netns_lab.hops[1].ip]
    assert any("interception evidence" in e for e in rec["evidence"])
    assert "interception: hop 3" in table


def test_injected_rst_is_located_at_the_middlebox_with_its_own_ttl(
        traced: dict[str, tuple[dict[str, Any], str]], netns_lab: NetnsLab) -> None:  # noqa: F811
    rec, _ = traced["reset.test"]
    assert netns_lab.treatment("reset.test") == "reset"
    assert (rec["located_hop"], rec["kind"], rec["verdict"]) == (3, "injection", "blocked")
    assert rec["located_router"] == netns_lab.hops[2].ip  # the mb's own ICMP names it
    target = rec["hops"][2]["target"]
    assert target["response"] == "rst"
    # The server is 5 hops away; the RST comes from 3: its TTL tells them apart.
    assert rec["server_hop"] == netns_lab.server_hop == 5
    server_ttl = rec["hops"][4]["control"]["server_ttl"]
    assert target["rst_ttl"] != server_ttl
    assert target["rst_ttl"] != target["syn_ack_ttl"]
    assert any("differs from the TCP peer's SYN-ACK TTL" in e for e in rec["evidence"])
    routers = _routers(rec)
    assert [routers[1], routers[2], routers[4]] == [h.ip for h in (netns_lab.hops[0],
                                                                   netns_lab.hops[1],
                                                                   netns_lab.hops[3])]


def test_injected_alert_is_located_at_the_middlebox(
        traced: dict[str, tuple[dict[str, Any], str]]) -> None:
    rec, _ = traced["alert.test"]
    assert (rec["located_hop"], rec["kind"]) == (3, "injection")
    assert rec["hops"][2]["target"]["response"].startswith("alert:")


def test_untargeted_sni_is_not_located(
        traced: dict[str, tuple[dict[str, Any], str]]) -> None:
    rec, _ = traced["example.org"]
    assert (rec["located_hop"], rec["kind"], rec["verdict"]) == (None, "none", "ok")

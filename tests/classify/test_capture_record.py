"""Capture observations judged into records: the golden verdicts of captures/, the outcome
precedence, DNS, pseudonyms and ids, the store at the packet's time."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tlswatch.capture.events import FlowKey
from tlswatch.capture.observe import DnsObservation, FlowObservation, observe_capture
from tlswatch.classify.capture_record import (
    ENCRYPTED_CHAIN_REASON,
    capture_record,
    cipher_name,
    dns_failure,
    ns_to_datetime,
    version_name,
)
from tlswatch.classify.chain import ChainJudge
from tlswatch.ids import record_id
from tlswatch.model import Flow, Record, RstInfo, to_dict
from tlswatch.record_schema import load_schema
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import load_stores

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
VALIDATOR = jsonschema.Draft202012Validator(load_schema())
SHA = "ab" * 32
# TLS 1.3 captures whose key log is a separate file (tls13-with-dsb.pcapng embeds its own).
TLS13 = {"clean-tls13.pcapng", "clean-tls13-chacha20.pcapng", "clean-tls13-aes256.pcapng",
         "clean-tls13-hrr.pcapng", "kz2019-intercepted-tls13.pcapng"}


@pytest.fixture(scope="module")
def judge() -> ChainJudge:
    return ChainJudge(load_stores([str(CAPTURES / "lab-public-root.pem")]), load_registry())


def _manifest() -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = json.loads((CAPTURES / "MANIFEST.json").read_text())["files"]
    return [e for e in files if e["name"].endswith((".pcap", ".pcapng"))]


def expected(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """(verdict, outcome) per record of a sample capture, as the MANIFEST says; TLS 1.3 files
    are inconclusive without their key logs (tests/cli/test_analyse_keylog.py gives them)."""
    if entry["name"] in TLS13 or entry["name"].endswith("-quic.pcap"):  # (QUIC: the same)
        return [("inconclusive", "cert/no_chain")]
    outcomes = entry["expect"]["outcome"].split(", ")
    return [(entry["expect"]["verdict"], o) for o in outcomes]


def records_of(name: str, judge: ChainJudge, **kw: Any) -> list[Record]:
    obs, _ = observe_capture(CAPTURES / name)
    out = [capture_record(o, judge, run_id="run", file_sha256=SHA, **kw) for o in obs]
    return [r[0] for r in out if r is not None]


@pytest.mark.parametrize("entry", _manifest(), ids=lambda e: e["name"])
def test_golden_verdicts_of_the_sample_captures(entry: dict[str, Any],
                                                judge: ChainJudge) -> None:
    recs = records_of(entry["name"], judge)
    assert sorted((r.verdict, r.outcome) for r in recs) == sorted(expected(entry))
    for r in recs:
        VALIDATOR.validate(to_dict(r))
        assert r.source == "pcap" and r.flow is not None and r.rules_version
        if r.flow.transport == "tcp":
            assert r.target.sni == entry["sni"] == r.target.domain
            assert r.target.ip == r.flow.server_ip and r.target.port == 443
            assert r.time.startswith("2019-08-01T12:")
    if entry["name"] in TLS13:
        (r,) = recs
        assert ENCRYPTED_CHAIN_REASON in r.reasons and r.tls is not None
        assert r.tls.version == "TLSv1.3" and r.rule_id == "R60-no-chain"


def test_interception_record_in_full(judge: ChainJudge) -> None:
    (r,) = records_of("kz2019-intercepted-tls12.pcap", judge)
    assert r.interception is not None and r.interception.matched
    assert r.interception.label == "kz-2019-qaznet-root"
    assert r.interception.evidence == "issuer_name_only" and r.rule_id == "R21-interception-weak"
    assert len(r.chain) == 3 and r.chain[0].key is not None and r.chain[0].key.exponent == 3
    assert r.tls is not None and r.tls.version == "TLSv1.2"
    assert r.tls.cipher == "ECDHE-RSA-AES128-GCM-SHA256" and r.tls.history == "CsxknGIDid"
    (v,) = r.validation
    assert v.at == r.time and v.store_version  # judged at the handshake's time


def test_reset_record_carries_injection_evidence(judge: ChainJudge) -> None:
    (r,) = records_of("reset-after-clienthello.pcap", judge)
    assert r.tcp is not None and r.tcp.failure is None and r.tcp.connect_ms == 40.0
    assert r.tcp.rst == RstInfo(61, 0, ("ttl_differs_from_server(61!=52)", "ip_id_zero"))
    assert r.tls is not None and r.tls.failure == "tls/reset"


def test_blockpage_capture_keeps_the_page_facts(judge: ChainJudge) -> None:
    (r,) = records_of("blockpage-on-443.pcap", judge)
    assert r.http is not None and (r.http.status, r.http.title) == (403, "Access restricted")
    assert r.http.blockpage is None  # the lab's page is in no fingerprint list


def _obs(**kw: Any) -> FlowObservation:
    base: dict[str, Any] = dict(key=FlowKey("10.0.0.1", 40000, "10.0.0.2", 443),
                                first_packet_ns=1_564_660_800 * 10**9,
                                time_ns=1_564_660_800 * 10**9 + 5, sni="x.example",
                                client_hello=True)
    base.update(kw)
    return FlowObservation(**base)


def test_a_known_blockpage_is_blocked_without_a_control(judge: ChainJudge) -> None:
    page = b"HTTP/1.1 200 OK\r\n\r\n<html>Blocked by ContentKeeper</html>"
    out = capture_record(_obs(failure="tls/not_tls", non_tls_prefix=page), judge,
                         run_id="r", file_sha256=SHA)
    assert out is not None
    rec, _ = out
    assert (rec.verdict, rec.outcome) == ("blocked", "http/blockpage:ooni.au_2")
    assert rec.http is not None and rec.http.blockpage == "ooni.au_2" and rec.http.status == 200


def test_outcome_precedence_of_chain_and_failure(judge: ChainJudge) -> None:
    kz = observe_capture(CAPTURES / "kz2019-intercepted-tls12.pcap")[0][0]
    clean = observe_capture(CAPTURES / "clean-tls12.pcap")[0][0]
    assert isinstance(kz, FlowObservation) and isinstance(clean, FlowObservation)
    # A reset after an interception chain: the chain stays the finding.
    cut = dataclasses.replace(kz, failure="tls/reset", handshake_complete=False)
    rec = capture_record(cut, judge, run_id="r", file_sha256=SHA)
    assert rec is not None and rec[0].verdict == "intercepted"
    assert "then the handshake failed (tls/reset)" in rec[0].reasons
    # A reset after a trusted chain: the reset is the finding (the chain is kept).
    cut = dataclasses.replace(clean, failure="tls/reset", handshake_complete=False)
    rec = capture_record(cut, judge, run_id="r", file_sha256=SHA)
    assert rec is not None and (rec[0].verdict, rec[0].outcome) == ("anomaly", "tls/reset")
    assert len(rec[0].chain) == 2
    # Nothing at all: no chain, with the reason.
    rec = capture_record(_obs(resumed=True, handshake_complete=True), judge, run_id="r",
                         file_sha256=SHA)
    assert rec is not None and rec[0].outcome == "cert/no_chain"
    assert "TLS session resumed: the server sent no certificate" in rec[0].reasons


def test_tcp_failure_record(judge: ChainJudge) -> None:
    out = capture_record(_obs(failure="tcp/refused", client_hello=False, sni=None,
                              rst=RstInfo(61, 0, ())), judge, run_id="r", file_sha256=SHA)
    assert out is not None
    rec = out[0]
    assert rec.tls is None and rec.tcp is not None and rec.tcp.failure == "tcp/refused"
    assert (rec.verdict, rec.outcome, rec.target.domain) == ("anomaly", "tcp/refused", None)
    VALIDATOR.validate(to_dict(rec))


def _dns(rcode: str = "NOERROR", answers: tuple[str, ...] = (), qtype: str = "A") -> (
        DnsObservation):
    return DnsObservation(Flow("10.0.0.1", 5000, "9.9.9.9", 53, "udp"), 10**18, 10**18 + 10,
                          "x.example", qtype, rcode, answers)


@pytest.mark.parametrize(("obs", "failure"), [
    (_dns("NXDOMAIN"), "dns/nxdomain"),
    (_dns("SERVFAIL"), "dns/servfail"),
    (_dns("REFUSED"), "dns/refused"),
    (_dns("NOTIMP"), "dns/servfail"),
    (_dns(), "dns/no_answer"),
    (_dns(qtype="AAAA"), None),  # what every IPv4-only name answers
    (_dns(answers=("0.0.0.0",)), "dns/bogon:zero"),
    (_dns(answers=("127.0.0.1",)), "dns/bogon:loopback"),
    (_dns(answers=("10.10.34.35",)), "dns/bogon:private"),
    (_dns(answers=("10.10.34.35", "93.184.216.34")), None),  # one usable answer
    (_dns(answers=("198.51.100.10",)), None),  # documentation ranges stand for public ones
    (_dns(answers=("::",), qtype="AAAA"), "dns/bogon:zero"),
])
def test_dns_failures(obs: DnsObservation, failure: str | None) -> None:
    assert dns_failure(obs) == failure


def test_dns_record(judge: ChainJudge) -> None:
    out = capture_record(_dns(answers=("0.0.0.0",)), judge, run_id="r", file_sha256=SHA)
    assert out is not None
    rec = out[0]
    assert rec.dns is not None and rec.dns.resolver == "9.9.9.9:53"
    assert rec.dns.answers == ("0.0.0.0",) and rec.dns.rcode == "NOERROR"
    assert rec.target.domain == "x.example" and rec.flow is not None
    assert rec.id == record_id(source="pcap", flow=rec.flow, file_sha256=SHA,
                               first_packet_ns=10**18, extra=f"dns@{10**18 + 10}")
    VALIDATOR.validate(to_dict(rec))
    assert capture_record(_dns(answers=("1.1.1.1",)), judge, run_id="r", file_sha256=SHA) is None


def test_ids_are_deterministic_and_use_the_pseudonym(judge: ChainJudge) -> None:
    (a,) = records_of("clean-tls12.pcap", judge)
    (b,) = records_of("clean-tls12.pcap", judge)
    assert a.id == b.id
    (p,) = records_of("clean-tls12.pcap", judge, pseudonym=lambda ip: "192.0.2.99")
    assert p.flow is not None and p.flow.client_ip == "192.0.2.99" and p.id != a.id
    assert p.id == record_id(source="pcap", flow=p.flow, file_sha256=SHA,
                             first_packet_ns=observe_capture(
                                 CAPTURES / "clean-tls12.pcap")[0][0].first_packet_ns)

def test_connect_ms_is_recorded_and_not_part_of_the_id(judge: ChainJudge) -> None:
    (a,) = records_of("clean-tls12.pcap", judge)
    assert a.tcp is not None and a.tcp.connect_ms == 40.0 and a.tcp.failure is None
    (obs,) = observe_capture(CAPTURES / "clean-tls12.pcap")[0]
    assert isinstance(obs, FlowObservation)
    out = capture_record(dataclasses.replace(obs, connect_ms=None), judge, run_id="run",
                         file_sha256=SHA)
    assert out is not None and out[0].tcp is None and out[0].id == a.id


def test_auto_store_is_the_snapshot_before_the_capture() -> None:
    auto = ChainJudge(None, load_registry())
    (r,) = records_of("clean-tls12.pcap", auto)
    (v,) = r.validation
    assert v.store == "mozilla@2019-06" and not v.trusted  # the lab root is in no real store
    assert r.outcome == "cert/incomplete_chain"  # the server does not send the lab root


def test_names_and_times() -> None:
    assert version_name(0x0303) == "TLSv1.2" and version_name(0x7F1C) == "0x7f1c"
    assert cipher_name(0x1301) == "TLS_AES_128_GCM_SHA256" and cipher_name(0xFFFF) == "0xffff"
    assert ns_to_datetime(1_564_660_800_123_456_789).isoformat() == (
        "2019-08-01T12:00:00.123456+00:00")

"""From a probe's observation (and a control's) to a judged record."""

from __future__ import annotations

from collections.abc import Sequence

import jsonschema
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tlswatch.classify.chain import ChainJudge
from tlswatch.classify.probe_record import judge_observation, probe_record
from tlswatch.model import HttpInfo, Target, TcpInfo, TlsInfo, to_dict
from tlswatch.probe.observation import ProbeObservation
from tlswatch.record_schema import load_schema
from tlswatch.testing import CertFactory
from tlswatch.x509.registry import load_registry

F = CertFactory(seed=0)
JUDGE = ChainJudge(None, load_registry())
T = Target(domain="facebook.com", sni="facebook.com", ip="127.0.0.1", port=443)


def _ders(chain: Sequence[x509.Certificate]) -> tuple[bytes, ...]:
    return tuple(c.public_bytes(Encoding.DER) for c in chain)


def _obs(**kw: object) -> ProbeObservation:
    return ProbeObservation(target=T, started=F.now, **kw)  # type: ignore[arg-type]


def _record(seen: ProbeObservation, control: ProbeObservation | None = None) -> dict[str, object]:
    c = judge_observation(control, JUDGE) if control else None
    rec, _ = probe_record(record_id="i", run_id="r", seen=judge_observation(seen, JUDGE),
                          control=c)
    d: dict[str, object] = to_dict(rec)
    jsonschema.validate(d, load_schema())
    return d


def test_forged_chain_is_intercepted_and_keeps_the_evidence() -> None:
    d = _record(_obs(chain_der=_ders(F.forged_2019("facebook.com").chain),
                     tls=TlsInfo(version="TLSv1.3")))
    assert d["verdict"] == "intercepted"
    assert d["outcome"] == "cert/known_interception_ca:kz-2019-qaznet-root"
    assert len(d["chain"]) == 3  # type: ignore[arg-type]
    assert d["validation"][0]["store"] == "mozilla@2019-06"  # type: ignore[index]


def test_reset_here_and_success_on_the_control_path_is_blocked() -> None:
    control = _obs(chain_der=_ders(F.legitimate("facebook.com").chain))
    d = _record(_obs(failure="tls/reset", tcp=TcpInfo(connect_ms=0.2)), control)
    assert (d["verdict"], d["outcome"], d["rule_id"]) == (
        "blocked", "tls/reset", "R72-failure-control-succeeded")
    assert d["control"]["kind"] == "path"  # type: ignore[index]


def test_both_failing_is_down_and_no_control_is_an_anomaly() -> None:
    assert _record(_obs(failure="tcp/timeout"), _obs(failure="tcp/timeout"))["verdict"] == "down"
    assert _record(_obs(failure="tls/timeout"))["verdict"] == "anomaly"


def test_blockpage_on_443_is_blocked_without_control() -> None:
    raw = b"HTTP/1.1 302 Found\r\nLocation: https://vk.com/blank.php?rkn=1\r\n\r\n"
    d = _record(_obs(failure="tls/not_tls", non_tls_prefix=raw))
    assert (d["verdict"], d["outcome"]) == ("blocked", "http/blockpage:ooni.by_3")


def test_server_side_captcha_is_not_censorship() -> None:
    d = _record(_obs(chain_der=_ders(F.legitimate("facebook.com").chain),
                     http=HttpInfo(status=403, title="Attention Required! | Cloudflare")))
    assert (d["verdict"], d["rule_id"]) == ("anomaly", "R11-server-side-block")
    assert d["http"]["blockpage"] == "cdn-cloudflare-challenge"  # type: ignore[index]


def test_an_http_failure_after_the_handshake_does_not_hide_the_chain() -> None:
    d = _record(_obs(chain_der=_ders(F.forged_2019("facebook.com").chain),
                     failure="http/failed:timeout"))
    assert d["verdict"] == "intercepted" and d["outcome"].startswith(  # type: ignore[union-attr]
        "cert/known_interception_ca")
    assert "after the handshake: http/failed:timeout" in d["anomalies"]  # type: ignore[operator]


def test_a_second_sni_control_goes_to_control_sni_and_needs_a_path_control() -> None:
    legit = _ders(F.legitimate("facebook.com").chain)
    sni = ProbeObservation(target=Target("facebook.com", "example.com", "127.0.0.1", 443),
                           started=F.now, chain_der=_ders(F.legitimate("example.com").chain))
    rec, decision = probe_record(
        record_id="i", run_id="r", seen=judge_observation(_obs(failure="tls/reset"), JUDGE),
        control=judge_observation(_obs(chain_der=legit), JUDGE), control_kind="resolver",
        sni_control=judge_observation(sni, JUDGE))
    d = to_dict(rec)
    jsonschema.validate(d, load_schema())
    assert (d["verdict"], d["control"]["kind"], d["control_sni"]["kind"]) == (
        "blocked", "resolver", "sni")
    assert d["control_sni"]["target"]["sni"] == "example.com"
    assert d["control_sni"]["outcome"] == judge_observation(sni, JUDGE).outcome
    assert decision.confidence == 0.9 and len(d["control_sni"]["chain"]) == 2
    seen = judge_observation(_obs(failure="tls/reset"), JUDGE)
    for control, kind in ((None, "path"), (judge_observation(sni, JUDGE), "sni")):
        with pytest.raises(ValueError, match="needs a path or resolver control"):
            probe_record(record_id="i", run_id="r", seen=seen, control=control,
                         control_kind=kind, sni_control=judge_observation(sni, JUDGE))

"""Every cell of the verdict table (DESIGN.md §4), with and without controls."""

from __future__ import annotations

import pytest

from tlswatch.classify.rules import (
    ControlAgreement,
    ControlView,
    Seen,
    classify,
    classify_two_controls,
    combine_controls,
)
from tlswatch.failures import Verdict

NONE = None
SAME = ControlView("sni", ControlAgreement.SAME)
VALID = ControlView("path", ControlAgreement.VALID, "cert/valid")
FAILED = ControlView("path", ControlAgreement.FAILED, "tcp/timeout")

# One letter per table column keeps the rows short.
V, I, B, A, D, N = (  # noqa: E741
    Verdict.OK, Verdict.INTERCEPTED, Verdict.BLOCKED, Verdict.ANOMALY,
    Verdict.DOWN, Verdict.INCONCLUSIVE,
)

KNOWN = "cert/known_interception_ca:kz-2019-qaznet-root"

TABLE = [
    # seen, control, verdict, rule
    (Seen("cert/valid", chain_trusted=True), NONE, V, "R30-valid"),
    (Seen("cert/valid", chain_trusted=True), SAME, V, "R30-valid"),
    (Seen("cert/valid", chain_trusted=True),
     ControlView("sni", ControlAgreement.VALID, "cert/mismatch_vs_control"), V, "R30-valid"),
    (Seen(KNOWN, "verified_signature"), NONE, I, "R20-interception-ca-verified"),
    (Seen(KNOWN, "verified_signature"), SAME, I, "R20-interception-ca-verified"),
    (Seen(KNOWN, "verified_signature"), VALID, I, "R20-interception-ca-verified"),
    (Seen(KNOWN, "issuer_name_only"), NONE, I, "R21-interception-weak"),
    (Seen(KNOWN, "issuer_name_only"), SAME, I, "R21-interception-weak"),
    (Seen(KNOWN, "issuer_name_only"), VALID, I, "R22-interception-weak-control-differs"),
    (Seen("cert/forgery_pattern", "forgery_pattern"), NONE, I, "R21-interception-weak"),
    (Seen("cert/untrusted_root:X", ), NONE, A, "R40-untrusted-no-control"),
    (Seen("cert/untrusted_root:X"), SAME, V, "R41-untrusted-control-same"),
    (Seen("cert/untrusted_root:X"), VALID, I, "R42-untrusted-control-valid"),
    (Seen("cert/self_signed"), NONE, A, "R40-untrusted-no-control"),
    (Seen("cert/self_signed"), SAME, V, "R41-untrusted-control-same"),
    (Seen("cert/self_signed"), VALID, I, "R42-untrusted-control-valid"),
    (Seen("cert/hostname_mismatch"), NONE, A, "R40-untrusted-no-control"),
    (Seen("cert/hostname_mismatch"), SAME, V, "R41-untrusted-control-same"),
    (Seen("cert/hostname_mismatch"), VALID, I, "R42-untrusted-control-valid"),
    (Seen("cert/expired"), NONE, A, "R50-benign-cert-no-control"),
    (Seen("cert/expired"), SAME, V, "R51-benign-cert-control-same"),
    (Seen("cert/expired"), VALID, A, "R52-benign-cert-control-differs"),
    (Seen("cert/not_yet_valid"), NONE, A, "R50-benign-cert-no-control"),
    (Seen("cert/incomplete_chain"), SAME, V, "R51-benign-cert-control-same"),
    (Seen("cert/store_disagreement"), VALID, A, "R52-benign-cert-control-differs"),
    (Seen("dns/nxdomain"), NONE, A, "R70-failure-no-control"),
    (Seen("dns/bogon:zero"), VALID, B, "R72-failure-control-succeeded"),
    (Seen("tcp/refused"), SAME, D, "R71-failure-control-same"),
    (Seen("tcp/timeout"), VALID, B, "R72-failure-control-succeeded"),
    (Seen("tls/reset"), NONE, A, "R70-failure-no-control"),
    (Seen("tls/reset"), SAME, D, "R71-failure-control-same"),
    (Seen("tls/reset"), VALID, B, "R72-failure-control-succeeded"),
    (Seen("tls/alert:handshake_failure"), VALID, B, "R72-failure-control-succeeded"),
    (Seen("tls/not_tls", blockpage="kz-blockpage-1"), NONE, B, "R10-known-blockpage"),
    (Seen(KNOWN, "verified_signature", captive_portal=True), NONE, N, "R00-captive-portal"),
    (Seen("http/server_side:cdn-captcha", server_side="cdn-captcha"), VALID, A,
     "R11-server-side-block"),
    (Seen("cert/no_chain"), NONE, N, "R60-no-chain"),
    (Seen("weird/thing"), NONE, N, "R90-unclassified"),
]


@pytest.mark.parametrize(("seen", "control", "verdict", "rule"), TABLE,
                         ids=[f"{s.outcome}-{c.agreement if c else 'none'}" for s, c, *_ in TABLE])
def test_table(seen: Seen, control: ControlView | None, verdict: Verdict, rule: str) -> None:
    d = classify(seen, control)
    assert (d.verdict, d.rule_id) == (verdict, rule)
    assert d.outcome == seen.outcome
    assert 0.0 < d.confidence <= 1.0 and d.reasons


def test_a_trusted_chain_is_never_intercepted_because_of_a_name() -> None:
    d = classify(Seen("cert/valid", "issuer_name_only", chain_trusted=True))
    assert d.verdict is Verdict.OK


def test_a_failed_control_counts_as_no_control_but_is_said() -> None:
    d = classify(Seen("cert/untrusted_root:X"), FAILED)
    assert d.verdict is Verdict.ANOMALY and d.rule_id == "R40-untrusted-no-control"
    assert any("control failed" in r for r in d.reasons)
    assert classify(Seen("tls/reset"), FAILED).verdict is Verdict.ANOMALY


def test_confidence_rises_when_the_control_differs() -> None:
    weak = classify(Seen(KNOWN, "issuer_name_only"))
    strong = classify(Seen(KNOWN, "issuer_name_only"), VALID)
    assert strong.confidence > weak.confidence


# -- two controls: a path control and an SNI control (docs/verdicts.md, "Two controls") ------

P_VALID = ControlView("path", ControlAgreement.VALID, "cert/valid")
P_SAME = ControlView("path", ControlAgreement.SAME, "tls/reset")
P_FAILED = ControlView("path", ControlAgreement.FAILED, "tcp/timeout")
S_VALID = ControlView("sni", ControlAgreement.VALID, "cert/valid")
S_SAME = ControlView("sni", ControlAgreement.SAME, "tls/reset")
S_FAILED = ControlView("sni", ControlAgreement.FAILED, "tcp/refused")

TWO = [
    # seen, path control, sni control, verdict, rule, confidence, the control used, disagree
    (Seen("tls/reset"), P_VALID, S_VALID, B, "R72-failure-control-succeeded", 0.9, "path", False),
    (Seen("tls/reset"), P_VALID, S_FAILED, B, "R72-failure-control-succeeded", 0.9, "path",
     False),
    (Seen("tls/reset"), P_FAILED, S_VALID, B, "R72-failure-control-succeeded", 0.9, "sni", False),
    (Seen("tls/reset"), P_SAME, S_SAME, D, "R71-failure-control-same", 0.8, "path", False),
    (Seen("tls/reset"), P_SAME, S_FAILED, D, "R71-failure-control-same", 0.8, "path", False),
    (Seen("tls/reset"), P_FAILED, S_SAME, D, "R71-failure-control-same", 0.8, "sni", False),
    (Seen("tls/reset"), P_FAILED, S_FAILED, A, "R70-failure-no-control", 0.4, "path", False),
    # Disagreement that decides the verdict: the valid control wins, 0.3 less confident.
    (Seen("tls/reset"), P_VALID, S_SAME, B, "R72-failure-control-succeeded", 0.6, "path", True),
    (Seen("tls/reset"), P_SAME, S_VALID, B, "R72-failure-control-succeeded", 0.6, "sni", True),
    (Seen("cert/untrusted_root:X"), P_SAME, S_VALID, I, "R42-untrusted-control-valid", 0.55,
     "sni", True),
    (Seen("cert/expired"), P_VALID, S_SAME, A, "R52-benign-cert-control-differs", 0.1, "path",
     True),
    # Disagreement that does not change the verdict: the lower of the two readings.
    (Seen(KNOWN, "issuer_name_only"), P_VALID, S_SAME, I,
     "R22-interception-weak-control-differs", 0.7, "path", True),
    (Seen(KNOWN, "verified_signature"), P_SAME, S_VALID, I, "R20-interception-ca-verified", 0.99,
     "sni", True),
    (Seen("cert/untrusted_root:X"), P_VALID, S_VALID, I, "R42-untrusted-control-valid", 0.85,
     "path", False),
]


@pytest.mark.parametrize(
    ("seen", "path", "sni", "verdict", "rule", "confidence", "used", "disagree"), TWO,
    ids=[f"{s.outcome}-{p.agreement}-{c.agreement}" for s, p, c, *_ in TWO])
def test_two_controls_table(seen: Seen, path: ControlView, sni: ControlView, verdict: Verdict,
                            rule: str, confidence: float, used: str, disagree: bool) -> None:
    pair = combine_controls(path, sni)
    assert (pair.used.kind, pair.disagree) == (used, disagree)
    assert {pair.used.kind, pair.other.kind} == {"path", "sni"}
    d = classify_two_controls(seen, path, sni)
    assert (d.verdict, d.rule_id, d.confidence) == (verdict, rule, confidence)
    # Both controls are named in the reasons, and a disagreement is said.
    assert any(r.startswith("path control: ") for r in d.reasons)
    assert any(r.startswith("sni control: ") for r in d.reasons)
    assert any("controls disagree" in r for r in d.reasons) == disagree


def test_two_controls_that_agree_decide_as_the_path_control_alone() -> None:
    for seen in (Seen("tls/reset"), Seen("cert/self_signed"),
                 Seen("cert/valid", chain_trusted=True)):
        for path, sni in ((P_VALID, S_VALID), (P_SAME, S_SAME)):
            one, two = classify(seen, path), classify_two_controls(seen, path, sni)
            assert (two.verdict, two.rule_id, two.confidence) == \
                (one.verdict, one.rule_id, one.confidence)
            assert two.reasons[:len(one.reasons)] == one.reasons


def test_a_failed_second_control_is_said_and_changes_nothing() -> None:
    d = classify_two_controls(Seen("tls/reset"), P_VALID, S_FAILED)
    assert "the sni control failed, so it cannot confirm or refute this observation" in d.reasons

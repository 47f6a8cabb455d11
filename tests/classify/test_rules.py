"""Every cell of the verdict table (DESIGN.md §4), with and without controls."""

from __future__ import annotations

import pytest

from tlswatch.classify.rules import ControlAgreement, ControlView, Seen, classify
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

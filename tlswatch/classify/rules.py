"""The verdict table of DESIGN.md §4 as code: what was seen (+ a control) -> verdict.

Probes and captures only observe; this module decides. Every rule has a stable id
(``rule_id``) documented with an example in ``docs/verdicts.md``; change a rule's
meaning and ``RULES_VERSION`` changes with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tlswatch.failures import CertOutcome, Stage, Verdict, outcome_class

__all__ = [
    "RULES_VERSION",
    "ControlAgreement",
    "ControlView",
    "Decision",
    "Seen",
    "TwoControls",
    "classify",
    "classify_two_controls",
    "combine_controls",
]

RULES_VERSION = "2026.11.1"

# Outcome classes and the column of the table they fall in.
_CERT_ANOMALY = {CertOutcome.UNTRUSTED_ROOT, CertOutcome.SELF_SIGNED, CertOutcome.HOSTNAME_MISMATCH,
                 CertOutcome.POLICY_VIOLATION, CertOutcome.INVALID}
_CERT_BENIGN = {CertOutcome.EXPIRED, CertOutcome.NOT_YET_VALID, CertOutcome.INCOMPLETE_CHAIN,
                CertOutcome.STORE_DISAGREEMENT}


class ControlAgreement(StrEnum):
    """How the control measurement relates to what was seen."""

    SAME = "same"  # the control saw the same chain / the same failure
    VALID = "valid"  # the control succeeded: a chain public stores trust / a connection
    FAILED = "failed"  # the control itself failed in another way: it cannot vouch for anything


@dataclass(frozen=True, slots=True)
class Seen:
    """What the measurement saw, already reduced to facts (no verdicts).

    ``outcome``: the ``stage/class[:detail]`` of the observation, e.g. ``tls/reset`` or
    ``cert/untrusted_root:Some CA``. ``interception_evidence`` is set when the registry or
    the 2019 forgery pattern matched (``verified_signature``, ``issuer_name_only``,
    ``forgery_pattern``). ``blockpage``: the id of a known blockpage fingerprint;
    ``server_side``: the id of a known server-side refusal (a CDN captcha, a geo-block).
    """

    outcome: str
    interception_evidence: str | None = None
    blockpage: str | None = None
    server_side: str | None = None
    captive_portal: bool = False
    chain_trusted: bool = False


@dataclass(frozen=True, slots=True)
class ControlView:
    kind: str  # sni | path | resolver
    agreement: ControlAgreement
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    outcome: str
    confidence: float
    rule_id: str
    reasons: tuple[str, ...]
    rules_version: str = RULES_VERSION


def _cert_class(outcome: str) -> CertOutcome | None:
    stage, _, rest = outcome_class(outcome).partition("/")
    if stage != Stage.CERT:
        return None
    try:
        return CertOutcome(rest)
    except ValueError:
        return None


def _control_reason(control: ControlView) -> str:
    return f"{control.kind} control: {control.agreement.value}" + (
        f" ({control.outcome})" if control.outcome else "")


def classify(seen: Seen, control: ControlView | None = None) -> Decision:
    """Apply the table; ``control`` is None when no control was measured."""
    out = seen.outcome
    ctl = control if control and control.agreement is not ControlAgreement.FAILED else None
    notes: tuple[str, ...] = (_control_reason(control),) if control else ()
    if control and control.agreement is ControlAgreement.FAILED:
        notes += ("the control failed, so it cannot confirm or refute this observation",)

    if seen.captive_portal:
        return Decision(Verdict.INCONCLUSIVE, out, 0.3, "R00-captive-portal",
                        ("captive-portal pre-check failed: results of this network are unreliable",
                         *notes))
    if seen.blockpage:
        return Decision(Verdict.BLOCKED, out, 0.95, "R10-known-blockpage",
                        (f"body matches known blockpage {seen.blockpage}", *notes))

    if seen.server_side:
        return Decision(Verdict.ANOMALY, out, 0.3, "R11-server-side-block",
                        (f"the site itself refused us ({seen.server_side}): server-side, "
                         "not censorship", *notes))

    cert = _cert_class(out)
    if seen.interception_evidence == "verified_signature":
        return Decision(Verdict.INTERCEPTED, out, 0.99, "R20-interception-ca-verified",
                        ("chain signed by a known interception CA (signature verified)", *notes))
    weak = seen.interception_evidence in ("issuer_name_only", "forgery_pattern")
    if weak and not seen.chain_trusted:
        what = ("issuer names a known interception CA (signature not verifiable)"
                if seen.interception_evidence == "issuer_name_only"
                else "leaf has the 2019 forgery pattern on an untrusted chain")
        if ctl and ctl.agreement is ControlAgreement.VALID:
            return Decision(Verdict.INTERCEPTED, out, 0.95, "R22-interception-weak-control-differs",
                            (what, "the control saw a trusted chain", *notes))
        return Decision(Verdict.INTERCEPTED, out, 0.7, "R21-interception-weak",
                        (what, *notes))

    if cert is CertOutcome.VALID:
        reasons: tuple[str, ...] = ("chain valid in every trust store used",)
        if ctl and ctl.outcome and ctl.outcome.startswith("cert/mismatch_vs_control"):
            reasons += ("control saw a different chain: CDNs rotate keys, so this is a note only",)
        return Decision(Verdict.OK, out, 0.95, "R30-valid", (*reasons, *notes))

    if cert in _CERT_ANOMALY:
        if ctl is None:
            return Decision(Verdict.ANOMALY, out, 0.5, "R40-untrusted-no-control",
                            ("chain not trusted; no control to tell interception from a "
                             "misconfigured site", *notes))
        if ctl.agreement is ControlAgreement.SAME:
            return Decision(Verdict.OK, out, 0.8, "R41-untrusted-control-same",
                            ("the control saw the same chain: the site is misconfigured everywhere",
                             *notes))
        return Decision(Verdict.INTERCEPTED, out, 0.85, "R42-untrusted-control-valid",
                        ("chain not trusted here while the control saw a trusted chain", *notes))

    if cert in _CERT_BENIGN or cert is CertOutcome.MISMATCH_VS_CONTROL:
        if ctl is None:
            return Decision(Verdict.ANOMALY, out, 0.2, "R50-benign-cert-no-control",
                            ("a server-side certificate problem, not by itself interference",
                             *notes))
        if ctl.agreement is ControlAgreement.SAME:
            return Decision(Verdict.OK, out, 0.7, "R51-benign-cert-control-same",
                            ("the control saw the same: a server-side problem", *notes))
        return Decision(Verdict.ANOMALY, out, 0.4, "R52-benign-cert-control-differs",
                        ("differs from the control, but only in a way servers cause too", *notes))

    if cert is CertOutcome.NO_CHAIN:
        return Decision(Verdict.INCONCLUSIVE, out, 0.3, "R60-no-chain",
                        ("handshake completed but no certificate chain was visible", *notes))

    # A failure at a network stage (dns, tcp, tls, http) or an unknown outcome.
    if outcome_class(out).startswith(("dns/", "tcp/", "tls/", "http/", "quic/")):
        if ctl is None:
            return Decision(Verdict.ANOMALY, out, 0.4, "R70-failure-no-control",
                            ("a network failure without a control: blocking or an outage", *notes))
        if ctl.agreement is ControlAgreement.SAME:
            return Decision(Verdict.DOWN, out, 0.8, "R71-failure-control-same",
                            ("the control failed the same way: the site is down", *notes))
        return Decision(Verdict.BLOCKED, out, 0.9, "R72-failure-control-succeeded",
                        ("failed here while the control succeeded", *notes))

    return Decision(Verdict.INCONCLUSIVE, out, 0.1, "R90-unclassified",
                    (f"no rule for outcome {outcome_class(out)}", *notes))


# -- two controls: a path (or resolver) control and an SNI control --------------------------

_DISAGREEMENT_PENALTY = 0.3  # confidence lost when the verdict hangs on which control is right


@dataclass(frozen=True, slots=True)
class TwoControls:
    """Which of two controls the table uses, the other one, and whether they contradict.

    ``disagree``: one control saw what the target path saw (``same``) while the other saw the
    site work (``valid``). A failed control vouches for nothing, so it never disagrees.
    """

    used: ControlView
    other: ControlView
    disagree: bool


def combine_controls(path: ControlView, sni: ControlView) -> TwoControls:
    """Pick the control the table uses: one that saw the site work differently wins (either
    control can confirm interference); else one that saw the same; else both failed. Ties
    go to the path control, the comparison over another network path."""
    for agreement in (ControlAgreement.VALID, ControlAgreement.SAME):
        for used, other in ((path, sni), (sni, path)):
            if used.agreement is agreement:
                return TwoControls(used, other, agreement is ControlAgreement.VALID
                                   and other.agreement is ControlAgreement.SAME)
    return TwoControls(path, sni, False)


def classify_two_controls(seen: Seen, path: ControlView, sni: ControlView) -> Decision:
    """The table with two controls (docs/verdicts.md, "Two controls").

    The chosen control (:func:`combine_controls`) decides; the reasons name both. When they
    disagree the confidence drops: to the lower of the two readings if both give the same
    verdict, else by 0.3 (never below 0.1).
    """
    pair = combine_controls(path, sni)
    d = classify(seen, pair.used)
    notes: tuple[str, ...] = (_control_reason(pair.other),)
    if pair.other.agreement is ControlAgreement.FAILED and \
            pair.used.agreement is not ControlAgreement.FAILED:
        notes += (f"the {pair.other.kind} control failed, so it cannot confirm or refute "
                  "this observation",)
    confidence = d.confidence
    if pair.disagree:
        alt = classify(seen, pair.other)
        if alt.verdict is d.verdict:
            confidence = min(d.confidence, alt.confidence)
        else:
            confidence = max(0.1, round(d.confidence - _DISAGREEMENT_PENALTY, 2))
        notes += (f"the controls disagree: the {pair.used.kind} control saw the site work, "
                  f"the {pair.other.kind} control saw the same as the target path "
                  f"(if it is right: {alt.verdict.value})",)
    return Decision(d.verdict, d.outcome, confidence, d.rule_id, (*d.reasons, *notes),
                    d.rules_version)

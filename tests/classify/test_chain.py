"""The chain verdict engine end to end: factory chains in, outcome/verdict/evidence out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tlswatch.classify.chain import ChainJudge, compare_with_control, decide
from tlswatch.classify.rules import ControlAgreement
from tlswatch.failures import Verdict
from tlswatch.testing import CertFactory, Scenario, write_store_pem
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import TrustStore, load_store

F = CertFactory(seed=0)
REGISTRY = load_registry()


def _ders(chain: Sequence[x509.Certificate]) -> list[bytes]:
    return [c.public_bytes(Encoding.DER) for c in chain]


@pytest.fixture(scope="module")
def public_store(tmp_path_factory: pytest.TempPathFactory) -> TrustStore:
    path = tmp_path_factory.mktemp("store") / "lab-public.pem"
    write_store_pem(path, [F.public_root().cert])
    return load_store(str(path))


def _judge(store: TrustStore, sc: Scenario, host: str | None = None) -> tuple[str, Verdict]:
    j = ChainJudge([store], REGISTRY).judge(_ders(sc.chain), host=host or sc.host, at=sc.at)
    return j.outcome, decide(j).verdict


@pytest.mark.parametrize(("scenario", "outcome", "verdict"), [
    ("legitimate", "cert/valid", Verdict.OK),
    ("shuffled_chain", "cert/valid", Verdict.OK),
    ("expired", "cert/expired", Verdict.ANOMALY),
    ("not_yet_valid", "cert/not_yet_valid", Verdict.ANOMALY),
    ("wrong_host", "cert/hostname_mismatch", Verdict.ANOMALY),
    ("self_signed", "cert/self_signed", Verdict.ANOMALY),
    ("incomplete_chain", "cert/incomplete_chain", Verdict.ANOMALY),
])
def test_each_outcome_without_control(public_store: TrustStore, scenario: str, outcome: str,
                                      verdict: Verdict) -> None:
    sc = getattr(F, scenario)()
    assert _judge(public_store, sc) == (outcome, verdict)


def test_2019_forgery_is_intercepted_by_name_and_pattern(public_store: TrustStore) -> None:
    sc = F.forged_2019("facebook.com")
    j = ChainJudge([public_store], REGISTRY).judge(_ders(sc.chain), host="facebook.com", at=sc.at)
    assert j.outcome == "cert/known_interception_ca:kz-2019-qaznet-root"
    assert j.interception.evidence == "issuer_name_only"  # our test root only shares the name
    assert {"rsa_exponent_3", "no_subject_key_identifier"} <= set(j.interception.pattern)
    d = decide(j)
    assert d.verdict is Verdict.INTERCEPTED and 0.6 <= d.confidence < 0.9


def test_real_qaznet_root_in_the_chain_is_verified_evidence(public_store: TrustStore) -> None:
    sc = F.real_qaznet_root_chain("facebook.com")
    j = ChainJudge([public_store], REGISTRY).judge(_ders(sc.chain), host="facebook.com", at=sc.at)
    assert j.interception.label == "kz-2019-qaznet-root"
    assert j.interception.evidence == "verified_signature"
    assert decide(j).confidence >= 0.99


def test_forgery_pattern_from_an_unknown_ca_is_intercepted(public_store: TrustStore) -> None:
    import random

    from tlswatch.testing import forge_2019

    ca = F.root("C=ZZ,O=Unlisted Box,CN=Box Root", key_name="unlisted-box")
    origin = F.legitimate("vk.com").chain[0]
    leaf = forge_2019(origin, ca.cert, ca.key, random.Random(1))
    j = ChainJudge([public_store], REGISTRY).judge(_ders([leaf, ca.cert]), host="vk.com",
                                                   at=F.now)
    assert j.outcome == "cert/forgery_pattern"
    assert j.interception.evidence == "forgery_pattern" and not j.interception.label
    d = decide(j)
    assert d.verdict is Verdict.INTERCEPTED and d.rule_id == "R21-interception-weak"


def test_random_ca_forgery_needs_the_pattern_or_a_control(public_store: TrustStore) -> None:
    sc = F.forged_random_ca("facebook.com")
    judge = ChainJudge([public_store], REGISTRY)
    j = judge.judge(_ders(sc.chain), host="facebook.com", at=sc.at)
    assert not j.interception.label  # in no registry
    legit = F.legitimate("facebook.com")
    cj = judge.judge(_ders(legit.chain), host="facebook.com", at=sc.at)
    view = compare_with_control(j, cj, "path")
    assert view.agreement is ControlAgreement.VALID
    assert decide(j, view).verdict is Verdict.INTERCEPTED


def test_untrusted_chain_seen_by_control_too_is_ok(public_store: TrustStore) -> None:
    sc = F.self_signed("misconfigured.example")
    judge = ChainJudge([public_store], REGISTRY)
    j = judge.judge(_ders(sc.chain), host=sc.host, at=sc.at)
    view = compare_with_control(j, judge.judge(_ders(sc.chain), host=sc.host, at=sc.at), "sni")
    assert view.agreement is ControlAgreement.SAME
    assert decide(j, view).verdict is Verdict.OK


def test_valid_chain_and_other_valid_control_chain_is_a_note(public_store: TrustStore) -> None:
    judge = ChainJudge([public_store], REGISTRY)
    a = judge.judge(_ders(F.legitimate("cdn.example").chain), host="cdn.example", at=F.now)
    other = CertFactory(seed=0).leaf(F.public_ca(), ["cdn.example"], key_name="rotated")
    b = judge.judge(_ders([other.cert, F.public_ca().cert]), host="cdn.example", at=F.now)
    view = compare_with_control(a, b, "path")
    assert view.outcome == "cert/mismatch_vs_control"
    d = decide(a, view)
    assert d.verdict is Verdict.OK and any("CDN" in r for r in d.reasons)


def test_network_failure_vs_control() -> None:
    assert compare_with_control("tls/reset", "tls/reset", "path").agreement is \
        ControlAgreement.SAME
    judge = ChainJudge(None, REGISTRY)
    legit = F.legitimate()
    cj = judge.judge(_ders(legit.chain), host=legit.host, at=legit.at)
    assert compare_with_control("tls/reset", cj, "path").agreement is ControlAgreement.VALID


def test_store_disagreement(public_store: TrustStore) -> None:
    sc = F.legitimate()
    both = ChainJudge([public_store, load_store("mozilla@2019-06")], REGISTRY)
    assert both.judge(_ders(sc.chain), host=sc.host, at=sc.at).outcome == \
        "cert/store_disagreement"


def test_a_trusted_chain_is_never_intercepted_because_of_a_name(tmp_path: Path) -> None:
    # A well-formed chain from a root that merely shares the Qaznet name, and that the user's
    # store trusts: the registry's name-only hint must not make it "intercepted".
    from tlswatch.testing import KZ_ROOT_SUBJECT

    root = F.root(KZ_ROOT_SUBJECT, key_name="corporate-namesake")
    leaf = F.leaf(root, ["intranet.example"])
    path = tmp_path / "namesake.pem"
    write_store_pem(path, [root.cert])
    j = ChainJudge([load_store(str(path))], REGISTRY).judge(
        _ders([leaf.cert]), host="intranet.example", at=F.now)
    assert REGISTRY.match([leaf.cert]) is not None  # the name alone does match the registry
    assert j.outcome == "cert/valid"
    assert decide(j).verdict is Verdict.OK


def test_junk_certificates_are_anomalies_not_crashes(public_store: TrustStore) -> None:
    sc = F.legitimate()
    ders = [*_ders(sc.chain), b"\x30\x03\x02\x01\x00", b"garbage"]
    j = ChainJudge([public_store], REGISTRY).judge(ders, host=sc.host, at=sc.at)
    assert j.outcome == "cert/valid"
    assert len(j.anomalies) == 2 and len(j.chain) == 4
    bad_leaf = ChainJudge([public_store], REGISTRY).judge([b"junk"], host=sc.host, at=sc.at)
    assert bad_leaf.outcome == "cert/invalid" and decide(bad_leaf).verdict is Verdict.ANOMALY
    empty = ChainJudge([public_store], REGISTRY).judge([], host=sc.host, at=sc.at)
    assert empty.outcome == "cert/no_chain"


def test_cache_hits_and_never_straddles_an_expiry(public_store: TrustStore) -> None:
    sc = F.legitimate()
    leaf = sc.chain[0]
    judge = ChainJudge([public_store], REGISTRY)
    end = leaf.not_valid_after_utc
    before = judge.judge(_ders(sc.chain), host=sc.host, at=end - timedelta(days=1))
    again = judge.judge(_ders(sc.chain), host=sc.host, at=end)  # not_after is inclusive
    assert judge.hits == 1 and again.outcome == before.outcome == "cert/valid"
    assert again.validation[0].at != before.validation[0].at  # the time judged is the caller's
    after = judge.judge(_ders(sc.chain), host=sc.host, at=end + timedelta(seconds=1))
    assert after.outcome == "cert/expired" and judge.misses == 2
    other_host = judge.judge(_ders(sc.chain), host="other.example", at=end - timedelta(days=1))
    assert other_host.outcome == "cert/hostname_mismatch"


def test_auto_store_follows_the_time() -> None:
    judge = ChainJudge(None, REGISTRY)
    sc = F.legitimate()
    j2019 = judge.judge(_ders(sc.chain), host=sc.host, at=sc.at)
    assert [v.store for v in j2019.validation] == ["mozilla@2019-06"]
    j2021 = judge.judge(_ders(sc.chain), host=sc.host, at=sc.at.replace(year=2021))
    assert [v.store for v in j2021.validation] == ["mozilla@2020-12"]


def test_cached_judgements_equal_uncached_ones(public_store: TrustStore) -> None:
    # The chain and certificate caches (and the SAN shortcut of PreparedChain) change the
    # cost, never the answer: compare with a judge that caches nothing.
    cached = ChainJudge([public_store], REGISTRY)
    plain = ChainJudge([public_store], REGISTRY, cache_size=0)
    wild = F.leaf(F.public_ca(), ["*.many.example"])
    chains = [*(sc.chain for sc in F.scenarios("site.example")),
              (wild.cert, F.public_ca().cert), F.forged_2019("site.example").chain]
    hosts = ("site.example", "a.many.example", "b.many.example", "many.example", None,
             "192.0.2.7", "SITE.example")
    for _ in range(2):
        for chain in chains:
            for host in hosts:
                for at in (F.now, F.now + timedelta(days=90)):
                    ders = _ders(chain)
                    assert cached.judge(ders, host=host, at=at) == \
                        plain.judge(ders, host=host, at=at)
    assert cached.hits > 0


def test_an_intermediate_is_read_once_for_every_chain_that_sends_it(
        public_store: TrustStore) -> None:
    judge = ChainJudge([public_store], REGISTRY)
    a = judge.judge(_ders(F.legitimate("a.example").chain), host="a.example", at=F.now)
    b = judge.judge(_ders(F.legitimate("b.example").chain), host="b.example", at=F.now)
    assert a.chain[0] != b.chain[0] and a.chain[1] is b.chain[1]  # the same facts object
    assert a.outcome == b.outcome == "cert/valid"


def test_bounded_caches_still_judge_right(public_store: TrustStore) -> None:
    judge = ChainJudge([public_store], REGISTRY, cache_size=1)
    for host in ("a.example", "b.example", "a.example"):
        j = judge.judge(_ders(F.legitimate(host).chain), host=host, at=F.now)
        assert j.outcome == "cert/valid"
    assert len(judge._cache) == len(judge._chains) == 1 and len(judge._certs) <= 4

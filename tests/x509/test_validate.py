"""validate_chain: each diagnosis, order independence, fixed clocks, the 2019 forgery."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import random
from collections.abc import Sequence
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswatch.testing import (
    FIXED_NOW,
    CertFactory,
    Issued,
    Scenario,
    forge_2019,
    real_qaznet_root,
)
from tlswatch.x509.stores import StoreError, TrustStore, load_store
from tlswatch.x509.validate import (
    ERRORS,
    PreparedChain,
    san_matches_host,
    validate_all,
    validate_chain,
)

F = CertFactory(seed=0)


def store(roots: Sequence[x509.Certificate], name: str = "test") -> TrustStore:
    return TrustStore(name=name, version="1", date=None, source="test", certificates=tuple(roots))


@pytest.mark.parametrize("sc", F.scenarios(), ids=lambda s: s.name)
def test_scenarios(sc: Scenario) -> None:
    v = validate_chain(sc.chain, store(sc.roots), host=sc.host, at=sc.at)
    assert (v.error or "valid") == sc.expect
    assert v.trusted is (sc.expect == "valid")
    assert v.error is None or v.error in ERRORS
    assert v.store == "test" and v.store_version == "1" and v.at == "2019-08-01T12:00:00Z"
    assert v.hostname_ok is (sc.expect != "hostname_mismatch")


def test_trusted_fields() -> None:
    sc = F.legitimate()
    v = validate_chain(sc.chain, store(sc.roots), host=sc.host, at=sc.at)
    root = sc.roots[0]
    assert v.anchor_sha256 == hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest()
    assert v.anchor_subject == root.subject.rfc4514_string() and v.path_len == 3


def test_host_none_skips_name_check() -> None:
    sc = F.wrong_host()
    v = validate_chain(sc.chain, store(sc.roots), host=None, at=sc.at)
    assert v.trusted and v.hostname_ok is None


def test_ip_san_host() -> None:
    ca = F.public_ca()
    leaf = F.leaf(ca, ["192.0.2.10", "2001:db8::1"]).cert
    s = store([F.public_root().cert])
    for host in ("192.0.2.10", "2001:db8::1"):
        assert validate_chain([leaf, ca.cert], s, host=host, at=FIXED_NOW).trusted
    v = validate_chain([leaf, ca.cert], s, host="192.0.2.11", at=FIXED_NOW)
    assert v.error == "hostname_mismatch" and v.hostname_ok is False


def test_order_duplicates_and_junk_do_not_matter() -> None:
    sc = F.shuffled_chain()
    s = store(sc.roots)
    leaf, rest = sc.chain[0], list(sc.chain[1:])
    for perm in (rest, rest[::-1], rest[2:] + rest[:2], rest * 2):
        assert validate_chain([leaf, *perm], s, host=sc.host, at=sc.at).trusted


def test_expiry_crossing() -> None:
    sc = F.legitimate()
    s = store(sc.roots)
    not_after = sc.chain[0].not_valid_after_utc
    assert validate_chain(sc.chain, s, host=sc.host, at=not_after).trusted
    v = validate_chain(sc.chain, s, host=sc.host, at=not_after + timedelta(seconds=1))
    assert v.error == "expired" and v.hostname_ok is True
    early = sc.chain[0].not_valid_before_utc - timedelta(seconds=1)
    assert validate_chain(sc.chain, s, host=sc.host, at=early).error == "not_yet_valid"


def test_untrusted_beats_expired_and_wrong_host() -> None:
    sc = F.forged_random_ca()
    late = sc.chain[0].not_valid_after_utc + timedelta(days=1)
    v = validate_chain(sc.chain, store(sc.roots), host="elsewhere.example", at=late)
    assert v.error == "untrusted_root" and v.hostname_ok is False


def test_incomplete_beats_expired() -> None:
    sc = F.incomplete_chain()
    late = sc.chain[0].not_valid_after_utc + timedelta(days=1)
    v = validate_chain(sc.chain, store(sc.roots), host=sc.host, at=late)
    assert v.error == "incomplete_chain"
    assert v.anchor_subject == "C=US,O=tlswatch test PKI,CN=tlswatch Test CA 1"


def test_policy_violation() -> None:
    # A leaf without AKI/EKU (like the 2019 forgeries) under a *trusted* CA.
    ca = F.public_ca()
    origin = F.leaf(ca, ["policy.example"]).cert
    bare = forge_2019(origin, ca.cert, ca.key, random.Random(1), host="facebook.com")
    v = validate_chain(
        [bare, ca.cert], store([F.public_root().cert]), host="policy.example", at=FIXED_NOW
    )
    assert v.error == "policy_violation" and v.hostname_ok is True


def test_bad_signature_is_invalid() -> None:
    sc = F.legitimate()
    der = bytearray(sc.chain[0].public_bytes(Encoding.DER))
    der[-5] ^= 0x01
    bad = x509.load_der_x509_certificate(bytes(der))
    v = validate_chain([bad, *sc.chain[1:]], store(sc.roots), host=sc.host, at=sc.at)
    assert v.error == "invalid" and not v.trusted
    assert v.anchor_subject == sc.chain[1].subject.rfc4514_string()


def test_empty_chain_and_naive_time() -> None:
    assert validate_chain([], store([F.public_root().cert]), host=None, at=FIXED_NOW).error == (
        "invalid"
    )
    with pytest.raises(ValueError):
        validate_chain([], store([]), host=None, at=FIXED_NOW.replace(tzinfo=None))


def test_forgery_2019_with_root_is_untrusted_root_naming_qaznet() -> None:
    sc = F.forged_2019()
    v = validate_chain(sc.chain, store(sc.roots), host=sc.host, at=sc.at)
    assert v.error == "untrusted_root" and v.hostname_ok is True and v.path_len == 3
    assert v.anchor_subject is not None and "Qaznet Trust Network" in v.anchor_subject
    assert v.anchor_sha256 == hashlib.sha256(sc.chain[2].public_bytes(Encoding.DER)).hexdigest()


def test_forgery_2019_without_root_is_incomplete() -> None:
    sc = F.forged_2019(include_root=False)
    v = validate_chain(sc.chain, store(sc.roots), host=sc.host, at=sc.at)
    assert v.error == "incomplete_chain" and v.anchor_sha256 is None
    assert v.anchor_subject == "CN=Qaznet Trust Network,C=KZ"


def test_forgery_trusted_when_its_root_is_in_the_store() -> None:
    # Clients that installed the Qaznet root accepted the forgery apart from Web-PKI policy.
    sc = F.forged_2019()
    v = validate_chain(sc.chain, store([sc.chain[2]]), host=sc.host, at=sc.at)
    assert v.error == "policy_violation" and v.anchor_subject == "CN=Qaznet Trust Network,C=KZ"


def test_real_qaznet_root_in_chain() -> None:
    real = real_qaznet_root()
    assert real is not None
    sc = F.real_qaznet_root_chain()
    assert sc.chain[-1] == real
    v = validate_chain(sc.chain, store(sc.roots), host=sc.host, at=sc.at)
    assert v.error == sc.expect == "invalid" and v.hostname_ok is True
    assert v.anchor_subject == "CN=Qaznet Trust Network,C=KZ"


def test_validate_all_names_each_store() -> None:
    sc = F.legitimate()
    vs = validate_all(sc.chain, [store(sc.roots, "a"), store([], "b")], host=sc.host, at=sc.at)
    assert [(v.store, v.trusted) for v in vs] == [("a", True), ("b", False)]
    assert vs[1].error == "incomplete_chain"


def test_real_trust_store_rejects_test_pki() -> None:
    try:
        real = load_store("mozilla@2019-06")
    except StoreError as exc:
        pytest.skip(f"no shipped store: {exc}")
    sc = F.forged_2019()
    v = validate_chain(sc.chain, real, host=sc.host, at=sc.at)
    assert v.error == "untrusted_root" and v.store == "mozilla@2019-06"
    legit = F.legitimate()
    assert validate_chain(legit.chain, real, host=legit.host, at=legit.at).error == (
        "incomplete_chain"
    )


# -- PreparedChain: the same answers as validate_chain, one path verification per window -----

_TRICKY_SANS = ["*.wild.example", "Exact.Example", "a-b.example", "xn--bcher-kva.example",
                "*.", "*", "*.*.example", "bad_label.example", "-dash.example", "*.com",
                "trailing.example.", "1.2.3.4", "f*o.example"]


def _verifier_accepts(leaf: x509.Certificate, ca: x509.Certificate, host: str) -> bool:
    from cryptography.x509.verification import PolicyBuilder, VerificationError

    builder = PolicyBuilder().store(store([F.public_root().cert]).verification_store())
    try:
        builder.time(FIXED_NOW).build_server_verifier(x509.DNSName(host)).verify(leaf, [ca])
    except (VerificationError, ValueError):
        return False
    return True


@functools.cache
def _tricky_leaf() -> tuple[x509.Certificate, x509.Certificate]:
    ca = F.public_ca()
    return _leaf_with([x509.DNSName(s) for s in _TRICKY_SANS], ca), ca.cert


def _leaf_with(names: list[x509.DNSName], ca: Issued) -> x509.Certificate:
    from cryptography.x509.oid import NameOID

    base = F.leaf(ca, ["tricky.example"], key_name="tricky").cert
    builder = (x509.CertificateBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tricky.example")]))
        .issuer_name(ca.cert.subject).public_key(base.public_key())
        .serial_number(base.serial_number).not_valid_before(base.not_valid_before_utc)
        .not_valid_after(base.not_valid_after_utc))
    for e in base.extensions:
        value = x509.SubjectAlternativeName(names) if isinstance(
            e.value, x509.SubjectAlternativeName) else e.value
        builder = builder.add_extension(value, e.critical)
    return builder.sign(ca.key, hashes.SHA256())


_HOSTS = st.one_of(
    st.sampled_from(["x.wild.example", "X.WILD.Example", "wild.example", "a.b.wild.example",
                     "exact.example", "EXACT.example", "a-b.example", "xn--bcher-kva.example",
                     "bad_label.example", "-dash.example", "x.com", "com", "1.2.3.4",
                     "trailing.example", "trailing.example.", "foo.example", "", ".", "a..b",
                     "x.wild.example.", "\u00e9.wild.example", "\u212a.wild.example"]),
    st.text(alphabet="aBx0-_.*", max_size=24),
    st.from_regex(r"[a-z0-9-]{1,8}\.wild\.example", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(host=_HOSTS)
def test_san_match_never_claims_more_than_the_verifier(host: str) -> None:
    leaf, ca = _tricky_leaf()
    ours = san_matches_host(_TRICKY_SANS, host)
    theirs = _verifier_accepts(leaf, ca, host)
    assert not ours or theirs  # a "yes" is always cryptography's yes
    is_ip = True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        is_ip = False
    if not is_ip:
        assert ours == theirs  # and for names (not IP literals) the very same answer


_AT_OFFSETS = (timedelta(0), timedelta(days=70), timedelta(days=-40))


@pytest.mark.parametrize("sc", F.scenarios(), ids=lambda s: s.name)
def test_prepared_chain_equals_validate_chain(sc: Scenario) -> None:
    s = store(sc.roots)
    prepared = PreparedChain(sc.chain)
    hosts = (sc.host, sc.host.upper(), "other.example", None, "192.0.2.1", "a_b.example",
             sc.host + ".", "")
    for _ in range(2):  # the second round answers from the cached verification
        for offset in _AT_OFFSETS:
            for host in hosts:
                at = sc.at + offset
                assert prepared.validate(s, host=host, at=at) == \
                    validate_chain(sc.chain, s, host=host, at=at), (host, offset)


def test_prepared_chain_ip_sans_and_naive_time() -> None:
    ca = F.public_ca()
    chain = [F.leaf(ca, ["192.0.2.10", "2001:db8::1", "named.example"]).cert, ca.cert]
    s = store([F.public_root().cert])
    prepared = PreparedChain(chain)
    for host in ("192.0.2.10", "2001:db8::1", "192.0.2.11", "named.example", None):
        assert prepared.validate(s, host=host, at=FIXED_NOW) == \
            validate_chain(chain, s, host=host, at=FIXED_NOW)
    with pytest.raises(ValueError):
        prepared.validate(s, host=None, at=FIXED_NOW.replace(tzinfo=None))
    assert PreparedChain([]).validate(s, host="x.example", at=FIXED_NOW).error == "invalid"


def test_prepared_chain_notices_a_store_root_expiring() -> None:
    # The presented chain outlives the store's root: the cached verification must not
    # survive the root's not_after (a window edge of the store, not of the chain).
    root = F.root("CN=Short-lived Root", key_name="short-root",
                  not_after=FIXED_NOW + timedelta(days=1))
    ca = F.intermediate("CN=Long CA", root, key_name="long-ca",
                        not_after=FIXED_NOW + timedelta(days=400))
    leaf = F.leaf(ca, ["*.short.example"], not_after=FIXED_NOW + timedelta(days=300))
    chain, s = [leaf.cert, ca.cert], store([root.cert])
    prepared = PreparedChain(chain)
    for at in (FIXED_NOW, FIXED_NOW + timedelta(days=2), FIXED_NOW):
        got = prepared.validate(s, host="a.short.example", at=at)
        assert got == validate_chain(chain, s, host="a.short.example", at=at)
    assert not prepared.validate(s, host="b.short.example",
                                 at=FIXED_NOW + timedelta(days=2)).trusted


def test_prepared_chain_verifies_once_for_many_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import tlswatch.x509.validate as v

    calls = 0
    real = v._verify

    def counting(*args: object) -> object:
        nonlocal calls
        calls += 1
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(v, "_verify", counting)
    ca = F.public_ca()
    chain = [F.leaf(ca, ["*.cdn.example"]).cert, ca.cert]
    s = store([F.public_root().cert])
    prepared = PreparedChain(chain)
    for i in range(50):
        assert prepared.validate(s, host=f"s{i}.cdn.example", at=FIXED_NOW).trusted
    assert calls == 1
    assert prepared.validate(s, host="cdn.example", at=FIXED_NOW).error == "hostname_mismatch"

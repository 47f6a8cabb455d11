"""DNS stage against a tiny dnspython UDP server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from tlswatch.probe.dns import (
    DEFAULT_BOGONS,
    LAB_BOGONS,
    DnsResult,
    bogon_kind,
    parse_resolver,
    resolve,
)

from .servers import HOST, DnsAnswer, dns_server

ZONE: dict[str, DnsAnswer] = {
    "ok.test": ["127.0.0.5", "::1"],
    "zero.test": ["0.0.0.0"],
    "private.test": ["10.0.0.1"],
    "mixed.test": ["0.0.0.0", "127.0.0.7"],
    "servfail.test": "SERVFAIL",
    "refused.test": "REFUSED",
    "v6only.test": ["::1"],
    "drop.test": "DROP",
}


def run(name: str, **kw: object) -> DnsResult:
    async def main() -> DnsResult:
        _server, transport = await dns_server(ZONE)
        try:
            port = transport.get_extra_info("sockname")[1]
            kw.setdefault("timeout", 0.3)
            kw.setdefault("bogons", LAB_BOGONS)
            return await resolve(name, (HOST, port), **kw)  # type: ignore[arg-type]
        finally:
            transport.close()

    return asyncio.run(main())


def test_a_answer() -> None:
    res = run("ok.test")
    assert res.info.answers == ("127.0.0.5",)
    assert res.usable == ("127.0.0.5",)
    assert res.info.failure is None and res.info.rcode == "NOERROR"
    assert res.info.resolver is not None and res.info.resolver.startswith("127.0.0.1:")


def test_a_and_aaaa() -> None:
    res = run("ok.test", ip_version="both")
    assert set(res.info.answers) == {"127.0.0.5", "::1"}


@pytest.mark.parametrize(
    ("name", "failure", "rcode"),
    [
        ("nope.test", "dns/nxdomain", "NXDOMAIN"),
        ("servfail.test", "dns/servfail", "SERVFAIL"),
        ("refused.test", "dns/refused", "REFUSED"),
        ("v6only.test", "dns/no_answer", "NOERROR"),
    ],
)
def test_failures_keep_the_rcode(name: str, failure: str, rcode: str) -> None:
    res = run(name)
    assert res.info.failure == failure and res.info.rcode == rcode
    assert res.usable == ()


def test_timeout_when_the_server_never_answers() -> None:
    res = run("drop.test", timeout=0.2)
    assert res.info.failure == "dns/timeout" and res.info.rcode is None
    assert res.dns_ms is not None and res.dns_ms < 1000


def test_bogon_zero_recorded_not_usable() -> None:
    res = run("zero.test")
    assert res.info.answers == ("0.0.0.0",)
    assert res.usable == () and res.info.failure == "dns/bogon:zero"


def test_private_bogon_and_loopback_policy() -> None:
    assert run("private.test").info.failure == "dns/bogon:private"
    assert run("ok.test", bogons=DEFAULT_BOGONS).info.failure == "dns/bogon:loopback"


def test_mixed_answers_use_the_non_bogon() -> None:
    res = run("mixed.test")
    assert res.info.failure is None
    assert res.usable == ("127.0.0.7",) and res.bogons == (("0.0.0.0", "zero"),)


@pytest.mark.parametrize(
    ("ip", "kind"),
    [
        ("0.0.0.0", "zero"),
        ("0.1.2.3", "zero"),
        ("::", "zero"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.0.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("169.254.0.1", "link_local"),
        ("224.0.0.1", "multicast"),
        ("93.184.216.34", None),
        ("2606:4700::1", None),
    ],
)
def test_bogon_kind(ip: str, kind: str | None) -> None:
    assert bogon_kind(ip) == kind


def test_parse_resolver() -> None:
    assert parse_resolver("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_resolver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_resolver("[::1]:5353") == ("::1", 5353)
    assert parse_resolver("::1") == ("::1", 53)
    with pytest.raises(ValueError):
        parse_resolver("resolver.example")


def test_routable_networks_are_never_bogons_and_survive_pickling() -> None:
    import ipaddress
    import pickle

    from tlswatch.probe.dns import DEFAULT_BOGONS, BogonPolicy, bogon_kind

    policy = BogonPolicy(DEFAULT_BOGONS, (ipaddress.ip_network("198.18.0.0/15"),
                                          ipaddress.ip_network("fd00::/8")))
    assert bogon_kind("198.19.1.7", policy) is None  # routable by the user's word
    assert bogon_kind("198.20.0.1", policy) is None  # public (just outside the range)
    assert bogon_kind("10.0.0.1", policy) == "private"  # other private space still counts
    assert bogon_kind("198.19.1.7") == "private"  # the default policy is unchanged
    assert bogon_kind("fd00::1", policy) is None and bogon_kind("fc00::1", policy) == "private"
    assert bogon_kind("::ffff:198.18.0.9", policy) is None  # mapped addresses too
    again = pickle.loads(pickle.dumps(policy))  # e.g. to a Dask worker
    assert isinstance(again, BogonPolicy) and again.routable == policy.routable
    assert set(again) == set(DEFAULT_BOGONS)

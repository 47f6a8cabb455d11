"""measure(): stages chained, DNS -> TCP -> TLS, bogons never connected to, overall timeout."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tlswatch.model import Target, TcpInfo
from tlswatch.probe import LAB_BOGONS, ProbeObservation, Timeouts, measure

from .servers import (
    HOST,
    Pki,
    dns_server,
    port_of,
    read_client_hello,
    serve,
    server_context,
    tls_idle,
)


def with_dns(pki: Pki, name: str, addrs: list[str] | str, **kw: object) -> ProbeObservation:
    async def main() -> ProbeObservation:
        srv = await serve(tls_idle, server_context(pki.cert_file, pki.key_file))
        _, transport = await dns_server({name: addrs})
        try:
            resolver = f"{HOST}:{transport.get_extra_info('sockname')[1]}"
            kw.setdefault("timeouts", Timeouts(dns=0.3, connect=0.5, tls=0.5, overall=3))
            return await measure(
                Target(domain=name, port=port_of(srv)),
                resolver=resolver,
                bogons=LAB_BOGONS,
                **kw,  # type: ignore[arg-type]
            )
        finally:
            transport.close()
            srv.close()

    return asyncio.run(main())


def test_dns_then_tls(pki: Pki) -> None:
    obs = with_dns(pki, "example.com", ["127.0.0.1"])
    assert obs.failure is None
    assert obs.dns is not None and obs.dns.answers == ("127.0.0.1",)
    assert obs.target.ip == "127.0.0.1" and obs.chain_der == pki.chain_der
    assert obs.dns_ms is not None and obs.total_ms is not None


def test_nxdomain_stops_before_tcp(pki: Pki) -> None:
    obs = with_dns(pki, "example.com", "NXDOMAIN")
    assert obs.failure == "dns/nxdomain"
    assert obs.tcp == TcpInfo() and obs.flow is None


def test_bogon_answer_is_never_connected_to(pki: Pki) -> None:
    # The network guard would also fail this test if we tried to reach 0.0.0.0.
    obs = with_dns(pki, "example.com", ["0.0.0.0"])
    assert obs.failure == "dns/bogon:zero"
    assert obs.dns is not None and obs.dns.answers == ("0.0.0.0",)
    assert obs.tcp == TcpInfo() and obs.flow is None and obs.target.ip is None
    assert "dns_bogon:zero:0.0.0.0" in obs.anomalies


def test_dns_timeout(pki: Pki) -> None:
    obs = with_dns(pki, "example.com", "DROP")
    assert obs.failure == "dns/timeout"
    assert obs.total_ms is not None and obs.total_ms < 1500


def test_overall_timeout_names_the_running_stage() -> None:
    async def main() -> ProbeObservation:
        async def blackhole(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
            await read_client_hello(reader)
            await asyncio.sleep(5)

        srv = await serve(blackhole)
        try:
            return await measure(
                "example.com",
                ip=HOST,
                port=port_of(srv),
                timeouts=Timeouts(tls=5, overall=0.3),
            )
        finally:
            srv.close()

    obs = asyncio.run(main())
    assert obs.failure == "tls/timeout"
    assert obs.tls.history == "C" and "overall_timeout" in obs.anomalies
    assert obs.total_ms is not None and obs.total_ms < 1000


def test_ipv6_loopback(pki: Pki) -> None:
    async def main() -> ProbeObservation:
        srv = await asyncio.start_server(
            tls_idle, "::1", 0, ssl=server_context(pki.cert_file, pki.key_file)
        )
        try:
            port = srv.sockets[0].getsockname()[1]
            return await measure("example.com", ip="::1", port=port)
        finally:
            srv.close()

    try:
        obs = asyncio.run(main())
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert obs.failure is None and obs.flow is not None and obs.flow.server_ip == "::1"


def test_observation_is_frozen_and_needs_utc(pki: Pki) -> None:
    obs = with_dns(pki, "example.com", "NXDOMAIN")
    with pytest.raises(dataclasses.FrozenInstanceError):
        obs.failure = None  # type: ignore[misc]
    with pytest.raises(ValueError):
        dataclasses.replace(obs, started=obs.started.replace(tzinfo=None))


def test_measure_needs_a_domain_or_ip() -> None:
    with pytest.raises(ValueError):
        asyncio.run(measure(Target()))

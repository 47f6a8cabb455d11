"""The probe's own live capture fills ``tcp.rst`` of a measurement that ended in a reset."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from conftest import require_tool

from tlswatch.capture.events import Rst, Side
from tlswatch.capture.flows import read_flows
from tlswatch.probe import Timeouts, measure
from tlswatch.probe.packet_capture import PacketCapture

from .servers import HOST, port_of, reset_after_hello, serve, tls_idle

FAST = Timeouts(dns=0.5, connect=0.5, tls=0.5, http=0.5, overall=3.0)


@pytest.fixture
def root_with_tcpdump() -> None:
    require_tool("tcpdump")
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: tcpdump must be able to capture")
        pytest.skip("capturing needs root")


@pytest.mark.usefixtures("root_with_tcpdump")
def test_reset_measurement_gets_the_rst_ttl_and_ip_id_from_the_live_capture(
        tmp_path: Path) -> None:
    pcap = tmp_path / "live.pcap"

    async def main() -> tuple[object, object, int]:
        rst_srv = await serve(reset_after_hello)
        ok_srv = await serve(tls_idle)  # plain TCP: the client's hello draws no reset
        port = port_of(rst_srv)
        ports = f"tcp port {port} or tcp port {port_of(ok_srv)}"
        cap = PacketCapture(pcap, ports, interface="lo", watch_resets=True)
        try:
            reset = await measure("example.com", ip=HOST, port=port_of(rst_srv), timeouts=FAST,
                                  resets=cap)
            quiet = await measure("example.com", ip=HOST, port=port_of(ok_srv), timeouts=FAST,
                                  resets=cap)
        finally:
            cap.stop()
            rst_srv.close()
            ok_srv.close()
        return reset, quiet, port

    reset, quiet, port = asyncio.run(main())
    assert reset.failure == "tls/reset"  # type: ignore[attr-defined]
    rst = reset.tcp.rst  # type: ignore[attr-defined]
    assert rst is not None, "the live capture did not deliver the server's RST"
    # The same RST, with the same TTL and IP ID, is in the file the capture kept.
    flow = reset.flow  # type: ignore[attr-defined]
    on_file = [e for e in read_flows(pcap) if isinstance(e, Rst) and e.side is Side.SERVER
               and e.key.client_port == flow.client_port and e.key.server_port == port]
    assert on_file and (on_file[0].ttl, on_file[0].ip_id) == (rst.ttl, rst.ip_id)
    # The kernel's own RST on loopback: same TTL as the server's other packets, no evidence.
    assert rst.injected_evidence == ()
    assert quiet.tcp.rst is None  # type: ignore[attr-defined]
    assert quiet.failure == "tls/timeout"  # type: ignore[attr-defined]


def test_without_watching_no_evidence_is_waited_for(tmp_path: Path) -> None:
    async def main() -> object:
        srv = await serve(reset_after_hello)
        try:
            return await measure("example.com", ip=HOST, port=port_of(srv), timeouts=FAST)
        finally:
            srv.close()

    obs = asyncio.run(main())
    assert obs.failure == "tls/reset" and obs.tcp.rst is None  # type: ignore[attr-defined]

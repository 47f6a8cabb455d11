"""Real QUIC handshakes made by aioquic (client and server), for tests only.

:func:`handshake` drives two aioquic ``QuicConnection`` objects sans-IO: every datagram one
side emits is recorded and handed to the other, in order, with a fixed fake clock, so the
result never depends on timing. aioquic writes the key log (``secrets_log_file``). CIDs,
randoms and key shares are aioquic's own (random): the bytes differ per run, the facts
tested (SNI, ALPN, chain, cipher) do not. :func:`loopback_handshake` does the same over
real UDP sockets on 127.0.0.1 through a recording relay.
"""

from __future__ import annotations

import asyncio
import io
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from cryptography import x509

from tlswatch.quic import parse_long_header
from tlswatch.testing import PrivateKey
from tlswatch.testing.pcap_writer import Host, Packet, pcap_bytes, udp_datagram

try:  # a test extra: skipped locally without it, required in CI (as conftest.require_module)
    import aioquic  # noqa: F401
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("aioquic not installed (pip install -e '.[test]')", allow_module_level=True)

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.tls import CipherSuite

CLIENT = Host("127.0.0.1", "02:00:00:00:00:01")
SERVER = Host("127.0.0.2", "02:00:00:00:00:02")
CLIENT_PORT, SERVER_PORT = 50123, 443
T0 = 1_564_660_800_000_000_000  # 2019-08-01T12:00:00Z: FIXED_NOW, when the test certs are valid


@dataclass(frozen=True)
class Session:
    datagrams: tuple[tuple[bool, bytes], ...]  # (sent by the client, UDP payload), in order
    keylog: str
    client_random: bytes
    handshake_done: bool

    def packets(self) -> list[Packet]:
        """The datagrams as Ethernet/IPv4/UDP frames, 1 ms apart."""
        packets = []
        for i, (from_client, payload) in enumerate(self.datagrams):
            src, dst = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
            sport, dport = ((CLIENT_PORT, SERVER_PORT) if from_client
                            else (SERVER_PORT, CLIENT_PORT))
            packets.append(udp_datagram(src, dst, sport=sport, dport=dport, payload=payload,
                                        t_ns=T0 + i * 1_000_000, ip_id=i + 1))
        return packets

    def pcap(self, path: Path) -> Path:
        path.write_bytes(pcap_bytes(self.packets()))
        return path

    def tuples(self) -> list[tuple[int, str, int, str, int, bytes]]:
        """The datagrams as :func:`tlswatch.quic.analyse_quic_datagrams` input."""
        out = []
        for i, (from_client, payload) in enumerate(self.datagrams):
            c, s = (CLIENT.ip, CLIENT_PORT), (SERVER.ip, SERVER_PORT)
            src, dst = (c, s) if from_client else (s, c)
            out.append((T0 + i * 1_000_000, src[0], src[1], dst[0], dst[1], payload))
        return out


SUITES = {
    0x1301: CipherSuite.AES_128_GCM_SHA256,
    0x1302: CipherSuite.AES_256_GCM_SHA384,
    0x1303: CipherSuite.CHACHA20_POLY1305_SHA256,
}


def _configs(chain: Sequence[x509.Certificate], key: PrivateKey, host: str, version: int,
             cipher: int | None, alpn: Sequence[str]) -> tuple[QuicConfiguration,
                                                              QuicConfiguration, io.StringIO]:
    keylog = io.StringIO()
    client = QuicConfiguration(is_client=True, alpn_protocols=list(alpn), server_name=host,
                               verify_mode=ssl.CERT_NONE, secrets_log_file=keylog,
                               supported_versions=[version])
    server = QuicConfiguration(is_client=False, alpn_protocols=list(alpn),
                               supported_versions=[version])
    server.certificate, server.certificate_chain = chain[0], list(chain[1:])
    server.private_key = key
    if cipher is not None:
        client.cipher_suites = [SUITES[cipher]]
    return client, server, keylog


def handshake(chain: Sequence[x509.Certificate], key: PrivateKey, *, host: str,
              version: int = 1, cipher: int | None = None,
              alpn: Sequence[str] = ("h3",)) -> Session:
    """One aioquic client/server handshake, pumped in memory until both sides are quiet."""
    ccfg, scfg, keylog = _configs(chain, key, host, version, cipher, alpn)
    caddr, saddr = (CLIENT.ip, CLIENT_PORT), (SERVER.ip, SERVER_PORT)
    now = 1000.0
    client = QuicConnection(configuration=ccfg)
    client.connect(saddr, now=now)
    server: QuicConnection | None = None
    out: list[tuple[bool, bytes]] = []
    for _ in range(20):
        moved = False
        for data, _addr in client.datagrams_to_send(now=now):
            out.append((True, data))
            moved = True
            if server is None:
                h = parse_long_header(data)
                assert h is not None
                server = QuicConnection(configuration=scfg,
                                        original_destination_connection_id=h.dcid)
            server.receive_datagram(data, caddr, now=now)
        if server is not None:
            for data, _addr in server.datagrams_to_send(now=now):
                out.append((False, data))
                moved = True
                client.receive_datagram(data, saddr, now=now)
        now += 0.001
        if not moved:
            break
    done = False
    while (ev := client.next_event()) is not None:
        done = done or type(ev).__name__ == "HandshakeCompleted"
    return Session(tuple(out), keylog.getvalue(), client.tls.client_random, done)


class _Relay(asyncio.DatagramProtocol):
    """A UDP relay on loopback that forwards each datagram and records it, in order."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.seen: list[tuple[bool, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if addr == self.upstream:
            self.seen.append((False, data))
            if self.client is not None:
                self.transport.sendto(data, self.client)
        else:
            self.client = addr
            self.seen.append((True, data))
            self.transport.sendto(data, self.upstream)


async def loopback_handshake(chain: Sequence[x509.Certificate], key: PrivateKey, *,
                             host: str, version: int = 1,
                             alpn: Sequence[str] = ("h3",)) -> Session:
    """A real aioquic server and client on 127.0.0.1, every datagram recorded by a relay."""
    from aioquic.asyncio.client import connect
    from aioquic.asyncio.server import serve

    ccfg, scfg, keylog = _configs(chain, key, host, version, None, alpn)
    server = await serve("127.0.0.1", 0, configuration=scfg)
    try:
        assert server._transport is not None
        sport = server._transport.get_extra_info("sockname")[1]
        loop = asyncio.get_running_loop()
        transport, relay = await loop.create_datagram_endpoint(
            lambda: _Relay(("127.0.0.1", sport)), local_addr=("127.0.0.1", 0))
        try:
            rport = transport.get_extra_info("sockname")[1]
            async with connect("127.0.0.1", rport, configuration=ccfg,
                               wait_connected=True) as conn:
                random = conn._quic.tls.client_random
                await conn.ping()  # one 1-RTT round trip: the handshake is over both ways
        finally:
            transport.close()
    finally:
        server.close()
    return Session(tuple(relay.seen), keylog.getvalue(), random, True)

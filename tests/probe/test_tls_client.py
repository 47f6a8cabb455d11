"""TLS stage against in-test servers: chains, versions, SNI, ALPN, keylog and hostile peers."""

from __future__ import annotations

import asyncio
import re
import ssl
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tlswatch.probe import KeyLog, ProbeObservation, Timeouts, TlsOptions, TlsSession, measure
from tlswatch.probe.tcp import tcp_connect

from .servers import (
    HOST,
    Pki,
    TlsServerLog,
    port_of,
    read_client_hello,
    reset,
    serve,
    server_context,
    tls_idle,
)

FAST = Timeouts(dns=0.5, connect=0.5, tls=0.5, http=0.5, overall=3.0)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def probe(handler: Handler, ctx: ssl.SSLContext | None = None, **kw: object) -> ProbeObservation:
    async def main() -> ProbeObservation:
        srv = await serve(handler, ctx)
        try:
            kw.setdefault("timeouts", FAST)
            return await measure("example.com", ip=HOST, port=port_of(srv), **kw)  # type: ignore[arg-type]
        finally:
            srv.close()

    return asyncio.run(main())


# -- normal handshakes ---------------------------------------------------------------------------


def test_full_chain_is_returned_der_equal(pki: Pki) -> None:
    log = TlsServerLog()
    obs = probe(tls_idle, server_context(pki.cert_file, pki.key_file, log=log))
    assert obs.failure is None
    assert obs.chain_der == pki.chain_der  # leaf, intermediate, root: as presented
    assert obs.tls.version == "TLSv1.3"
    assert obs.tls.cipher and obs.tls.ja3s and obs.tls.ja3 and obs.tls.ja4
    assert obs.tls.history and obs.tls.history.startswith("Cs")
    assert obs.tls.bytes_read and obs.tls.bytes_read > 0
    assert obs.tcp.connect_ms is not None and obs.tls.handshake_ms is not None
    assert log.snis == ["example.com"]
    assert obs.started.tzinfo is not None


def test_tls12_only_server(pki: Pki) -> None:
    ctx = server_context(pki.cert_file, pki.key_file, max_version=ssl.TLSVersion.TLSv1_2)
    obs = probe(tls_idle, ctx)
    assert obs.failure is None
    assert obs.tls.version == "TLSv1.2"
    assert obs.chain_der == pki.chain_der
    # TLS 1.2: the cleartext flight is visible to the parser (certificate, key exchange …).
    assert obs.tls.history is not None and obs.tls.history.startswith("Csxkn")


def test_tls13_only_server_and_client_max_12(pki: Pki) -> None:
    ctx = server_context(pki.cert_file, pki.key_file, min_version=ssl.TLSVersion.TLSv1_3)
    assert probe(tls_idle, ctx).tls.version == "TLSv1.3"
    obs = probe(tls_idle, ctx, max_version="TLSv1.2")
    # asyncio's SSL server drops the connection without flushing its protocol_version alert:
    # the wire shows only our hello and a FIN, so that is what we report.
    assert obs.failure == "tls/eof"
    assert obs.tls.history == "Ce"


def test_no_sni(pki: Pki) -> None:
    log = TlsServerLog()
    obs = probe(tls_idle, server_context(pki.cert_file, pki.key_file, log=log), sni=None)
    assert obs.failure is None
    assert log.snis == [None]
    assert obs.target.sni is None


def test_custom_sni(pki: Pki) -> None:
    log = TlsServerLog()
    obs = probe(tls_idle, server_context(pki.cert_file, pki.key_file, log=log), sni="blocked.test")
    assert log.snis == ["blocked.test"]
    assert obs.target.sni == "blocked.test" and obs.target.domain == "example.com"


def test_alpn(pki: Pki) -> None:
    ctx = server_context(pki.cert_file, pki.key_file, alpn=["http/1.1"])
    assert probe(tls_idle, ctx, alpn=["h2", "http/1.1"]).tls.alpn == "http/1.1"
    assert probe(tls_idle, ctx).tls.alpn is None


@pytest.mark.parametrize("max_version", ["TLSv1.3", "TLSv1.2"])
def test_keylog_file_in_sslkeylogfile_format(pki: Pki, tmp_path: Path, max_version: str) -> None:
    path = tmp_path / "keys.log"
    path.write_text("# existing line kept\n")
    ctx = server_context(pki.cert_file, pki.key_file)
    obs = probe(tls_idle, ctx, keylog=path, max_version=max_version)
    assert obs.failure is None
    lines = path.read_text().splitlines()
    assert lines[0] == "# existing line kept"  # appended, not truncated
    pattern = re.compile(r"^[A-Z0-9_]+ [0-9a-f]{64} [0-9a-f]+$")
    assert all(pattern.match(line) for line in lines[1:]), lines
    labels = {line.split()[0] for line in lines[1:]}
    if max_version == "TLSv1.3":
        assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0"} <= labels
    else:
        assert labels == {"CLIENT_RANDOM"}


def test_keylog_object_shared_across_probes(pki: Pki, tmp_path: Path) -> None:
    ctx = server_context(pki.cert_file, pki.key_file)
    with KeyLog(tmp_path / "k.log") as log:
        probe(tls_idle, ctx, keylog=log)
        probe(tls_idle, ctx, keylog=log)
    randoms = {line.split()[1] for line in (tmp_path / "k.log").read_text().splitlines()}
    assert len(randoms) == 2  # two handshakes, no resumption


# -- hostile and broken peers ------------------------------------------------------------------


async def reset_after_hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_client_hello(reader)
    reset(writer)


def test_reset_after_client_hello() -> None:
    obs = probe(reset_after_hello)
    assert obs.failure == "tls/reset"
    assert obs.tcp.failure is None and obs.tls.failure == "tls/reset"
    assert obs.tls.history == "C"


def test_reset_before_anything_measure_level() -> None:
    async def rst_now(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reset(writer)

    obs = probe(rst_now)
    # Racy by nature on loopback: which one depends on whether our hello reached the kernel
    # before the RST did. The rule is asserted deterministically in the next test.
    assert obs.failure in ("tcp/reset", "tls/reset")


def test_reset_before_hello_is_tcp_reset() -> None:
    async def main() -> str | None:
        done = asyncio.Event()

        async def rst_now(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            reset(writer)
            done.set()

        srv = await serve(rst_now)
        tcp = await tcp_connect(HOST, port_of(srv), 0.5)
        assert tcp.sock is not None
        await asyncio.wait_for(done.wait(), 1)
        await asyncio.sleep(0.01)  # the RST is in before we send anything
        session = TlsSession(tcp.sock, TlsOptions(sni="example.com"))
        result = await session.handshake(0.5)
        session.close()
        srv.close()
        assert not result.hello_sent
        return result.failure

    assert asyncio.run(main()) == "tcp/reset"


def test_silent_drop_after_hello_times_out_in_time() -> None:
    async def blackhole(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await read_client_hello(reader)
        await asyncio.sleep(5)

    obs = probe(blackhole, timeouts=Timeouts(tls=0.3, overall=3))
    assert obs.failure == "tls/timeout"
    assert obs.tls.handshake_ms is not None and 250 < obs.tls.handshake_ms < 1000
    assert obs.tls.history == "C"


def test_injected_fatal_alert() -> None:
    async def alert(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_client_hello(reader)
        writer.write(bytes([21, 3, 3, 0, 2, 2, 40]))  # fatal handshake_failure
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()

    obs = probe(alert)
    assert obs.failure == "tls/alert:handshake_failure"
    assert obs.tls.alert == "handshake_failure"
    assert obs.tls.history is not None and obs.tls.history.startswith("Ca")


def test_http_blockpage_on_443_is_not_tls() -> None:
    page = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nblocked!\n"

    async def blockpage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_client_hello(reader)
        writer.write(page)
        await writer.drain()
        writer.close()

    obs = probe(blockpage)
    assert obs.failure == "tls/not_tls"
    assert obs.non_tls_prefix == page  # kept as evidence for classify
    assert obs.tls.history is not None and obs.tls.history.endswith("v")


def test_garbage_bytes_are_not_tls() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_client_hello(reader)
        writer.write(bytes(range(256)) * 4)
        await writer.drain()
        await asyncio.sleep(0.2)

    assert probe(garbage).failure == "tls/not_tls"


def test_close_mid_handshake_is_eof() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_client_hello(reader)
        # A ServerHello record header promising 100 bytes, then only 10 of them, then FIN.
        writer.write(bytes([22, 3, 3, 0, 100]) + b"\x02" + b"\x00" * 9)
        await writer.drain()
        writer.close()

    obs = probe(half)
    assert obs.failure == "tls/eof"
    assert obs.tls.history is not None and obs.tls.history.endswith("e")


def test_close_right_after_hello_is_eof() -> None:
    async def fin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_client_hello(reader)
        writer.close()

    obs = probe(fin)
    assert obs.failure == "tls/eof"
    assert obs.tls.history == "Ce"


def test_one_byte_per_second_server_is_bounded() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_client_hello(reader)
        for b in bytes([22, 3, 3, 0, 80]) + b"\x02" * 80:
            writer.write(bytes([b]))
            await writer.drain()
            await asyncio.sleep(1.0)

    obs = probe(slow, timeouts=Timeouts(tls=0.4, overall=3))
    assert obs.failure == "tls/timeout"
    assert obs.tls.handshake_ms is not None and obs.tls.handshake_ms < 1000


def test_byte_cap_gives_oversized() -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_client_hello(reader)
        # A valid-looking handshake record stream that never ends.
        body = b"\x0b" + (100_000).to_bytes(3, "big") + b"\x00" * 16000
        try:
            for _ in range(20):
                writer.write(bytes([22, 3, 3]) + struct.pack(">H", len(body)) + body)
                await writer.drain()
        except ConnectionError:
            pass

    obs = probe(flood, max_bytes=50_000)
    assert obs.failure == "tls/oversized:byte_cap"
    assert obs.tls.bytes_read is not None and obs.tls.bytes_read <= 50_000 + 65536


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_big_chain_is_a_clean_outcome(pki: Pki, big_chain: Path, version: ssl.TLSVersion) -> None:
    ctx = server_context(big_chain, pki.key_file, max_version=version)
    obs = probe(tls_idle, ctx, timeouts=Timeouts(tls=2, overall=4))
    # OpenSSL's 100 KiB certificate-list limit cannot be raised through pyOpenSSL.
    assert obs.failure == "tls/oversized:cert_list"
    assert obs.tls.bytes_read is not None and obs.tls.bytes_read > 100 * 1024
    if version is ssl.TLSVersion.TLSv1_2:
        # ... but the cleartext chain was still captured from the wire, whole.
        assert len(obs.chain_der) == 200
        assert obs.chain_der[0] == pki.leaf.der
    else:
        assert obs.chain_der == ()  # encrypted in TLS 1.3


def test_refused_port() -> None:
    async def main() -> ProbeObservation:
        srv = await serve(tls_idle)
        port = port_of(srv)
        srv.close()
        await srv.wait_closed()
        return await measure("example.com", ip=HOST, port=port, timeouts=FAST)

    obs = asyncio.run(main())
    assert obs.failure == "tcp/refused"
    assert obs.tcp.failure == "tcp/refused" and obs.tls.history is None


# -- key-exchange groups -------------------------------------------------------------------------


def _hello_groups(**kw: object) -> tuple[tuple[int, ...], tuple[int, ...], ProbeObservation]:
    """(supported_groups, key_share groups) of the ClientHello ``measure(**kw)`` sends."""
    from tlswatch.tls.hello import decode_client_hello

    hellos: list[bytes] = []

    async def capture(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hellos.append(await read_client_hello(reader))
        reset(writer)

    obs = probe(capture, **kw)
    record = hellos[0]
    hello = decode_client_hello(record[5 + 4:])  # record header, then handshake header
    return hello.supported_groups, hello.key_share_groups, obs


def test_groups_option_sets_the_offered_groups_and_key_shares() -> None:
    default_groups, _, _ = _hello_groups()
    groups, shares, obs = _hello_groups(groups="X25519:P-256")
    assert groups == (0x001D, 0x0017)  # x25519, secp256r1: exactly what was asked, in order
    assert shares == (0x001D,)
    assert obs.failure == "tls/reset"  # reset after our hello: the measurement went on normally
    assert default_groups != groups and len(default_groups) > 2  # OpenSSL's own default differs


def test_unknown_group_is_refused_in_one_line() -> None:
    from tlswatch.probe.tls_client import GroupsError, check_groups

    assert check_groups("X25519") == "X25519"
    with pytest.raises(GroupsError, match="does not accept the group list 'X25519:nosuch'"):
        check_groups("X25519:nosuch")

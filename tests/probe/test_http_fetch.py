"""GET / over the probe's TLS connection: status, title, body hash and length."""

from __future__ import annotations

import asyncio
import hashlib
import ssl

from tlswatch.probe import ProbeObservation, Timeouts, measure
from tlswatch.probe.http_fetch import MAX_BODY, MAX_TITLE, extract_title

from .servers import HOST, Handler, Pki, TlsServerLog, http_handler, port_of, serve, server_context

FAST = Timeouts(connect=0.5, tls=0.5, http=0.5, overall=3.0)


def fetch(pki: Pki, handler: Handler) -> ProbeObservation:
    async def main() -> ProbeObservation:
        srv = await serve(handler, server_context(pki.cert_file, pki.key_file))
        try:
            return await measure(
                "example.com", ip=HOST, port=port_of(srv), http=True, timeouts=FAST
            )
        finally:
            srv.close()

    return asyncio.run(main())


def test_status_title_and_body_hash(pki: Pki) -> None:
    body = b"<html><head><TITLE>Access\n denied &amp; logged</TITLE></head><body>x</body></html>"
    log = TlsServerLog()
    obs = fetch(pki, http_handler(body, "403 Forbidden", log))
    assert obs.failure is None and obs.http is not None
    assert obs.http.status == 403
    assert obs.http.title == "Access denied & logged"
    assert obs.http.body_sha256 == hashlib.sha256(body).hexdigest()
    assert obs.http.body_len == len(body)
    assert obs.http_ms is not None
    assert log.requests[0].startswith(b"GET / HTTP/1.1\r\nHost: example.com\r\n")
    # The encrypted request and response also went through the wire parser.
    assert obs.tls.history is not None and "D" in obs.tls.history


def test_chunked_body(pki: Pki) -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"7\r\n<title>\r\n3\r\nabc\r\n8\r\n</title>\r\n0\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    obs = fetch(pki, chunked)
    assert obs.http is not None and obs.http.status == 200
    assert obs.http.title == "abc" and obs.http.body_len == 18


def test_body_read_until_close_is_capped(pki: Pki) -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        try:
            for _ in range(40):
                writer.write(b"a" * 65536)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        writer.close()

    obs = fetch(pki, huge)
    assert obs.http is not None and obs.http.body_len == MAX_BODY
    assert "http_body_truncated" in obs.anomalies


def test_server_silent_after_handshake_is_http_timeout(pki: Pki) -> None:
    async def mute(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    obs = fetch(pki, mute)
    assert obs.failure == "http/failed:timeout"
    assert obs.tls.failure is None and obs.chain_der == pki.chain_der


def test_title_sanitising() -> None:
    assert extract_title(b"<title>\x1b[31mred\x07</title>") == "[31mred"
    assert extract_title(b"no title here") is None
    long = extract_title(b"<title>" + b"x" * 10_000 + b"</title>")
    assert long is not None and len(long) == MAX_TITLE
    assert extract_title(b"<title lang='ru'>\xd0\x91\xd0\xbb\xd0\xbe\xd0\xba</title>") == "Блок"

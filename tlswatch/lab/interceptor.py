"""The middlebox: the 2019 Kazakhstan interceptor plus the SNI-triggered blockers.

Every middlebox address (what the censored resolver answers) is served here. Per connection:

1. peek the ClientHello (left in the kernel buffer) and read its SNI with ``tlswatch.tls``;
2. SNI with a blocker (reset/drop/alert/blockpage) -> that blocker;
3. SNI on the target list -> connect to the SNI's origin over TLS, take its leaf, forge
   (``forge_2019``: subject+SANs copied, RSA-2048 e=3 per host, validity -6 h, low 33
   serial bits random, no other extensions), serve leaf -> Security Certificate [-> Qaznet],
   and relay plaintext both ways (the real box re-encrypted to the real server);
4. anything else -> splice the untouched bytes to the origin behind the address connected to.

Where "the origin" is comes from the address plan (loopback lab), or, with ``upstream_of``,
from the connection itself (the netns lab: the original destination of a REDIRECTed socket).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
from collections.abc import Callable

from tlswatch.lab.blockers import run_blocker
from tlswatch.lab.pki import LabPKI
from tlswatch.lab.serving import stream_from_socket
from tlswatch.lab.wire import PeekedHello, peek_client_hello, relay

__all__ = ["Middlebox", "UpstreamOf"]

SNI_METHODS = frozenset({"reset", "drop", "alert", "blockpage"})

#: upstream_of(accepted socket, local address) -> (ip, port) to relay to, or None to drop.
UpstreamOf = Callable[[socket.socket, str], tuple[str, int] | None]


def _upstream_context() -> ssl.SSLContext:
    # The 2019 box did not care what the origin presented; neither do we (it is our own origin).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Middlebox:
    def __init__(
        self,
        *,
        pki: LabPKI,
        targets: frozenset[str],
        origin_of: Callable[[str], str | None],
        address_origin: dict[str, str],
        sni_blockers: dict[str, str],
        port: int,
        io_timeout: float,
        hold_seconds: float,
        upstream_of: UpstreamOf | None = None,
    ) -> None:
        self.pki = pki
        self.targets = targets
        self.origin_of = origin_of
        self.address_origin = address_origin
        self.sni_blockers = {k: v for k, v in sni_blockers.items() if v in SNI_METHODS}
        self.port = port
        self.io_timeout = io_timeout
        self.hold_seconds = hold_seconds
        self.upstream_of = upstream_of
        self.counts: collections.Counter[str] = collections.Counter()
        self._upstream_ctx = _upstream_context()

    async def handle(self, sock: socket.socket, local_ip: str) -> None:
        try:
            peeked = await peek_client_hello(sock, self.io_timeout)
        except TimeoutError:
            self.counts["no_hello"] += 1
            return
        if peeked.eof:
            return
        sni = peeked.sni
        method = self.sni_blockers.get(sni) if sni else None
        if method is not None:
            self.counts[method] += 1
            await run_blocker(method, sock, peeked, self.hold_seconds)
        elif sni is not None and sni in self.targets:
            target = self._upstream(sock, local_ip, self.origin_of(sni))
            if target is not None:
                self.counts["intercepted"] += 1
                await self._intercept(sock, sni, *target)
        else:
            target = self._upstream(sock, local_ip, None)
            if target is not None:
                self.counts["spliced"] += 1
                await self._splice(sock, peeked, *target)

    def _upstream(
        self, sock: socket.socket, local_ip: str, by_name: str | None
    ) -> tuple[str, int] | None:
        if self.upstream_of is not None:
            target = self.upstream_of(sock, local_ip)
            if target is None:
                self.counts["no_upstream"] += 1
            return target
        return (by_name or self.address_origin[local_ip], self.port)

    async def _splice(
        self, sock: socket.socket, peeked: PeekedHello, origin_ip: str, port: int
    ) -> None:
        del peeked  # still in the kernel buffer: it is relayed byte for byte below
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(origin_ip, port), self.io_timeout
            )
        except (OSError, TimeoutError):
            return
        client = await stream_from_socket(sock)
        await relay(client, upstream, self.hold_seconds)

    async def _intercept(self, sock: socket.socket, sni: str, origin_ip: str, port: int) -> None:
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(
                    origin_ip,
                    port,
                    ssl=self._upstream_ctx,
                    server_hostname=sni,
                    ssl_handshake_timeout=self.io_timeout,
                ),
                self.io_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError):
            self.counts["origin_failed"] += 1
            return
        try:
            ssl_obj = upstream[1].get_extra_info("ssl_object")
            der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
            if not der:
                return
            ctx = await self.pki.forged_context(sni, der)
            try:
                client = await stream_from_socket(
                    sock, ssl_context=ctx, handshake_timeout=self.io_timeout
                )
            except (OSError, TimeoutError, ssl.SSLError):
                self.counts["client_handshake_failed"] += 1
                return
            await relay(client, upstream, self.hold_seconds)
        finally:
            upstream[1].close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(upstream[1].wait_closed(), 1.0)

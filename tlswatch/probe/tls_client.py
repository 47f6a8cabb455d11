"""A TLS client handshake: pyOpenSSL over memory BIOs, driven by asyncio socket calls.

OpenSSL never touches the socket. Every byte we send and every byte we receive passes through
here and is also fed to a sans-IO :class:`~tlswatch.tls.TLSConnection`, so the record gets the
handshake history, JA3/JA3S/JA4 and alerts by name, and failures are classified from what the
wire showed (a reset, an EOF, a fatal alert, non-TLS bytes) — never from OpenSSL's messages.

Verification is off (``VERIFY_NONE``): the full presented chain is always kept and judged
later by ``x509``/``classify``. Session resumption is off so every probe is a full handshake.

OpenSSL's certificate-list limit
    OpenSSL refuses a Certificate message larger than ``max_cert_list`` (default
    ``SSL_MAX_CERT_LIST_DEFAULT`` = 100 KiB) with a fatal ``illegal_parameter`` alert.
    ``SSL_CTX_set_max_cert_list`` is a macro over ``SSL_CTX_ctrl``; neither pyOpenSSL 26 nor
    cryptography's bundled bindings export it, and OpenSSL is linked statically into
    cryptography with hidden symbols, so ctypes cannot reach it either. What we do instead:
    when OpenSSL gives up on a large TLS 1.2 chain we keep reading the server's flight (still
    within the byte cap and the timeout) so our own parser captures the chain from the
    cleartext Certificate message; the outcome is ``tls/oversized``. In TLS 1.3 the chain is
    encrypted and only the outcome (and the byte count) is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Final, Literal

from OpenSSL import SSL, crypto

from tlswatch.failures import Stage, TcpFailure, TlsFailure, outcome
from tlswatch.model import TlsInfo
from tlswatch.tls import Status, TLSConnection

__all__ = [
    "DEFAULT_MAX_BYTES",
    "OPENSSL_MAX_CERT_LIST",
    "GroupsError",
    "HandshakeResult",
    "KeyLog",
    "PeerReset",
    "TlsOptions",
    "TlsSession",
    "TlsVersion",
    "check_groups",
]

TlsVersion = Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]

#: Cap on bytes read from the server during the handshake (and for the session as a whole).
DEFAULT_MAX_BYTES: Final = 4 * 1024 * 1024
#: OpenSSL's SSL_MAX_CERT_LIST_DEFAULT, which we cannot raise through pyOpenSSL (see above).
OPENSSL_MAX_CERT_LIST: Final = 100 * 1024
#: How much of a non-TLS answer (a blockpage on 443) is kept as evidence.
NON_TLS_PREFIX: Final = 1024

_READ_SIZE: Final = 65536
_VERSIONS: Final[dict[str, int]] = {
    "TLSv1": SSL.TLS1_VERSION,
    "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION,
    "TLSv1.3": SSL.TLS1_3_VERSION,
}
_RESET_ERRNOS: Final = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


class KeyLog:
    """Appends SSLKEYLOGFILE lines (``CLIENT_RANDOM …``, ``CLIENT_HANDSHAKE_TRAFFIC_SECRET …``).

    One open file shared by every handshake that uses this object; each line is flushed at
    once so a killed run still leaves usable keys. Safe to share between threads.
    """

    __slots__ = ("_fh", "_lock", "path")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh: IO[bytes] = self.path.open("ab")
        self._lock = threading.Lock()

    def write(self, line: bytes) -> None:
        with self._lock:
            self._fh.write(line.rstrip(b"\n") + b"\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()

    def __enter__(self) -> KeyLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """What our ClientHello offers. ``sni=None`` sends no server_name extension."""

    sni: str | None = None
    alpn: tuple[str, ...] = ()
    min_version: TlsVersion = "TLSv1.2"
    max_version: TlsVersion = "TLSv1.3"
    keylog: KeyLog | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    #: Key-exchange groups in OpenSSL's list syntax (``"X25519:P-256"``); None = OpenSSL's
    #: default, which since OpenSSL 3.5 sends an X25519MLKEM768 share (a ~1.5 KB hello).
    groups: str | None = None


class GroupsError(ValueError):
    """OpenSSL refused a ``groups`` list (an unknown or unsupported group name)."""


def check_groups(groups: str) -> str:
    """``groups`` if OpenSSL accepts it as a client group list, else :class:`GroupsError`."""
    _context("TLSv1.2", "TLSv1.3", (), None, groups)
    return groups


@lru_cache(maxsize=64)
def _context(
    min_version: str, max_version: str, alpn: tuple[str, ...], keylog: KeyLog | None,
    groups: str | None = None,
) -> SSL.Context:
    # Contexts are costly to build and hold no per-connection state here (no session cache),
    # so one per option set is shared by all handshakes.
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE)
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    if min_version in ("TLSv1", "TLSv1.1"):
        # OpenSSL's default security level 1+ refuses the SHA-1/MD5 handshakes of TLS 1.0/1.1.
        ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    ctx.set_min_proto_version(_VERSIONS[min_version])
    ctx.set_max_proto_version(_VERSIONS[max_version])
    if alpn:
        ctx.set_alpn_protos([p.encode() for p in alpn])
    if groups is not None:
        _set_groups(ctx, groups)
    if keylog is not None:
        log = keylog

        def _keylog(_conn: SSL.Connection, line: bytes) -> None:
            log.write(line)

        ctx.set_keylog_callback(_keylog)
    return ctx


def _set_groups(ctx: SSL.Context, groups: str) -> None:
    # pyOpenSSL has no setter for the group list; its binding (cryptography's) exports
    # SSL_CTX_set1_curves_list, the older name of SSL_CTX_set1_groups_list.
    from OpenSSL._util import lib

    setter = getattr(lib, "SSL_CTX_set1_curves_list", None)
    if setter is None:
        raise GroupsError("this pyOpenSSL/cryptography build cannot set key-exchange groups")
    if setter(ctx._context, groups.encode("ascii", "replace")) != 1:
        # OpenSSL leaves the reason on its error queue; drain it so later calls are clean.
        with contextlib.suppress(SSL.Error):
            from OpenSSL._util import exception_from_error_queue

            exception_from_error_queue(SSL.Error)
        raise GroupsError(f"OpenSSL does not accept the group list {groups!r}")


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What the TLS stage observed. ``failure`` is a ``tcp/…`` or ``tls/…`` outcome or None."""

    tls: TlsInfo
    chain_der: tuple[bytes, ...]
    failure: str | None
    hello_sent: bool
    non_tls_prefix: bytes = b""
    anomalies: tuple[str, ...] = ()


class PeerReset(ConnectionResetError):
    """The peer (or something on the path) reset the connection."""


class TlsSession:
    """One TLS connection over a connected non-blocking socket (which it owns and closes)."""

    def __init__(self, sock: socket.socket, options: TlsOptions) -> None:
        self.sock = sock
        self.options = options
        ctx = _context(options.min_version, options.max_version, options.alpn, options.keylog,
                       options.groups)
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        if options.sni:
            self.conn.set_tlsext_host_name(options.sni.encode("idna"))
        self.wire = TLSConnection(max_message_size=options.max_bytes)
        self.bytes_read = 0
        self.bytes_sent = 0
        self.server_eof = False
        self.server_prefix = bytearray()
        self._loop = asyncio.get_running_loop()

    # -- byte pumps ---------------------------------------------------------------------------
    async def flush(self) -> None:
        """Send whatever OpenSSL queued in its outgoing BIO, feeding it to the wire parser."""
        while True:
            try:
                data = self.conn.bio_read(_READ_SIZE)
            except SSL.WantReadError:
                return
            if not data:
                return
            self.wire.feed_client(data)
            try:
                await self._loop.sock_sendall(self.sock, data)
            except OSError as exc:
                if exc.errno in _RESET_ERRNOS:
                    raise PeerReset from exc
                raise
            self.bytes_sent += len(data)
            if len(data) < _READ_SIZE:
                return  # a memory BIO hands out all it holds, up to the size asked: empty now

    async def receive(self) -> bool:
        """Read once from the socket into OpenSSL and the parser. False on EOF or the cap."""
        want = min(_READ_SIZE, self.options.max_bytes - self.bytes_read + 1)
        try:
            data = await self._loop.sock_recv(self.sock, want)
        except OSError as exc:
            if exc.errno in _RESET_ERRNOS:
                raise PeerReset from exc
            raise
        if not data:
            self.server_eof = True
            self.wire.eof_server()
            self.conn.bio_shutdown()
            return False
        self.bytes_read += len(data)
        if len(self.server_prefix) < NON_TLS_PREFIX:
            self.server_prefix += data[: NON_TLS_PREFIX - len(self.server_prefix)]
        self.wire.feed_server(data)
        self.conn.bio_write(data)
        return self.bytes_read <= self.options.max_bytes

    @property
    def over_cap(self) -> bool:
        return self.bytes_read > self.options.max_bytes

    def close(self) -> None:
        self.sock.close()

    # -- the handshake ------------------------------------------------------------------------
    async def handshake(self, timeout: float) -> HandshakeResult:
        """Run the handshake within ``timeout`` seconds; never raises for peer behaviour."""
        start = time.perf_counter_ns()
        reset = timed_out = local_error = done = False
        try:
            async with asyncio.timeout(timeout):
                done, local_error = await self._drive()
        except TimeoutError:
            timed_out = True
        except PeerReset:
            reset = True
        elapsed_ms = (time.perf_counter_ns() - start) / 1e6
        if local_error and not done:
            # OpenSSL gave up (and sent its alert). The rest of the server's flight is already
            # on its way: read it (bounded) so the wire can tell what was wrong.
            await self._drain_flight(max(0.0, min(timeout * 0.5, 1.0)))
        return self._result(done, timed_out, reset, local_error, elapsed_ms)

    def result_after_timeout(self, elapsed_ms: float) -> HandshakeResult:
        """The result when an outer deadline cancelled :meth:`handshake`."""
        return self._result(False, True, False, False, elapsed_ms)

    async def _drive(self) -> tuple[bool, bool]:
        """Pump bytes until done. Returns (handshake_done, openssl_failed)."""
        while True:
            try:
                self.conn.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error:
                await self._flush_quietly()
                return False, True
            else:
                await self.flush()
                return True, False
            await self.flush()
            more = await self.receive()
            if self.over_cap or self.wire.server.status is Status.INVALID:
                return False, False  # the cap, or the wire says it is not (valid) TLS
            if not more:
                # EOF: let OpenSSL see what is buffered once; it may finish or fail cleanly.
                # Nothing more is sent: the server has gone (no alert of ours after its FIN).
                try:
                    self.conn.do_handshake()
                except SSL.Error:
                    return False, False
                await self._flush_quietly()
                return True, False

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(PeerReset, OSError):
            await self.flush()

    async def _drain_flight(self, budget: float) -> None:
        """After OpenSSL gave up mid-flight, read the rest of the server's flight (bounded).

        TLS 1.2: until the parser has the Certificate message, so the presented chain is
        captured even beyond OpenSSL's limit. TLS 1.3 (encrypted): until the flight is known
        to exceed that limit, the structural sign of an oversized certificate list.
        """
        wire = self.wire
        if wire.server_hello is None or self.server_eof:
            return

        def more_wanted() -> bool:
            if wire.server.encrypted:
                return self.bytes_read <= OPENSSL_MAX_CERT_LIST
            return wire.certificates is None and wire.server.status is Status.INCOMPLETE

        try:
            async with asyncio.timeout(budget):
                while more_wanted() and await self.receive():
                    pass
        except (TimeoutError, PeerReset, OSError):
            pass

    def _result(
        self, done: bool, timed_out: bool, reset: bool, local_error: bool, elapsed_ms: float
    ) -> HandshakeResult:
        wire = self.wire
        hello_sent = wire.client_hello is not None and self.bytes_sent > 0
        anomalies: list[str] = []
        failure = (
            None
            if done and not self.over_cap
            else self._classify(timed_out, reset, local_error, hello_sent)
        )
        server_alert = next((a for from_client, a in wire.alerts if not from_client), None)
        if done and server_alert is not None:
            anomalies.append(f"server_alert:{server_alert.name}")
        chain = self._chain(done)
        info = TlsInfo(
            version=self.conn.get_protocol_version_name() if done else _wire_version(wire),
            cipher=(self.conn.get_cipher_name() or None) if done else None,
            alpn=_alpn(self.conn) if done else None,
            alert=server_alert.name if server_alert else None,
            failure=failure,
            history=wire.history,
            ja3=wire.ja3,
            ja3s=wire.ja3s,
            ja4=wire.ja4,
            handshake_ms=round(elapsed_ms, 3),
            bytes_read=self.bytes_read,
        )
        not_tls = wire.server.status is Status.INVALID and wire.server.invalid_reason == "not_tls"
        return HandshakeResult(
            tls=info,
            chain_der=chain,
            failure=failure,
            hello_sent=hello_sent,
            non_tls_prefix=bytes(self.server_prefix) if not_tls else b"",
            anomalies=tuple(anomalies),
        )

    def _classify(self, timed_out: bool, reset: bool, local_error: bool, hello_sent: bool) -> str:
        """The failure, decided by the wire. Order matters: the most specific signal wins."""
        wire = self.wire
        server = wire.server
        if self.over_cap:
            return outcome(Stage.TLS, TlsFailure.OVERSIZED, "byte_cap")
        if server.status is Status.INVALID:
            reason = server.invalid_reason or "invalid"
            if reason == "not_tls":
                return outcome(Stage.TLS, TlsFailure.NOT_TLS)
            if reason == "oversized_message":
                return outcome(Stage.TLS, TlsFailure.OVERSIZED, "message")
            if reason != "truncated":  # truncation is an EOF, handled below
                return outcome(Stage.TLS, TlsFailure.FAILED, reason)
        fatal = next((a for c, a in wire.alerts if not c and a.fatal), None)
        first = fatal or next((a for c, a in wire.alerts if not c), None)
        if first is not None:
            return outcome(Stage.TLS, TlsFailure.ALERT, first.name)
        if reset:
            # A reset that reached us before our ClientHello was handed to the kernel is a
            # TCP-level refusal; once the hello was sent, it is a reaction to the hello.
            if hello_sent:
                return outcome(Stage.TLS, TlsFailure.RESET)
            return outcome(Stage.TCP, TcpFailure.RESET)
        if timed_out:
            return outcome(Stage.TLS, TlsFailure.TIMEOUT)
        if local_error:
            # OpenSSL refused what the server sent. A server flight beyond OpenSSL's
            # certificate-list limit is the one case we can name, from the flight's size.
            if wire.server_hello is not None and self.bytes_read > OPENSSL_MAX_CERT_LIST:
                return outcome(Stage.TLS, TlsFailure.OVERSIZED, "cert_list")
            ours = next((a for c, a in wire.alerts if c), None)
            return outcome(Stage.TLS, TlsFailure.FAILED, f"local_{ours.name}" if ours else None)
        if self.server_eof:
            return outcome(Stage.TLS, TlsFailure.EOF)
        return outcome(Stage.TLS, TlsFailure.FAILED)

    def _chain(self, done: bool) -> tuple[bytes, ...]:
        if done:
            certs = self.conn.get_peer_cert_chain()
            if certs:
                return tuple(crypto.dump_certificate(crypto.FILETYPE_ASN1, c) for c in certs)
        # Failed handshakes: what the cleartext Certificate message showed (TLS <= 1.2).
        return self.wire.certificates or ()


def _alpn(conn: SSL.Connection) -> str | None:
    proto = conn.get_alpn_proto_negotiated()
    return proto.decode("ascii", "replace") if proto else None


_WIRE_VERSION_NAMES: Final[dict[int, str]] = {
    0x0301: "TLSv1",
    0x0302: "TLSv1.1",
    0x0303: "TLSv1.2",
    0x0304: "TLSv1.3",
}


def _wire_version(wire: TLSConnection) -> str | None:
    v = wire.version
    return None if v is None else _WIRE_VERSION_NAMES.get(v, f"0x{v:04x}")

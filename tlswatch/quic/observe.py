"""Per-flow QUIC observations from UDP datagrams: SNI/ALPN/JA4 of the client's Initial and
what, if anything, the server answered.

Standalone and sans-IO: give it (ts_ns, src, sport, dst, dport, payload) tuples in capture
order. A flow starts only at a datagram whose first packet is a client Initial that
authenticates with keys from its own DCID, so DNS and other UDP never make flows.

With a key log (``secrets``: a lookup of a ClientHello random and an NSS key log label),
the Handshake packets are opened too (:mod:`tlswatch.quic.handshake`) and the observation
carries the server's chain, its selected ALPN and what the key log did (``keylog``, the
TCP vocabulary: ``decrypted``, ``decrypt_failed``, ``no_key``, ``incomplete`` ...).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from ..tls.fingerprints import ja4
from ..tls.handshake import HandshakeMessage, HandshakeType, OversizedMessage
from ..tls.hello import DecodeError, decode_client_hello, decode_server_hello
from .crypto_stream import DEFAULT_MAX_CRYPTO_BYTES, CryptoStream
from .frames import ConnectionCloseFrame, CryptoFrame, parse_frames
from .handshake import HandshakeSpace
from .initial import (
    INITIAL_SALTS,
    InitialKeys,
    LongHeader,
    PacketType,
    decrypt_initial,
    initial_keys,
    parse_long_headers,
)
from .protection import retry_integrity_tag

__all__ = [
    "OUTCOME_CONNECTION_CLOSE",
    "OUTCOME_HANDSHAKE",
    "OUTCOME_NO_RESPONSE",
    "OUTCOME_RETRY",
    "OUTCOME_SERVER_RESPONSE",
    "OUTCOME_VERSION_NEGOTIATION",
    "Address",
    "Datagram",
    "QuicFlowObservation",
    "SecretLookup",
    "analyse_quic_datagrams",
]

OUTCOME_NO_RESPONSE: Final = "quic/no_response"
OUTCOME_VERSION_NEGOTIATION: Final = "quic/version_negotiation"
OUTCOME_CONNECTION_CLOSE: Final = "quic/connection_close"  # + ":<error name or number>"
OUTCOME_HANDSHAKE: Final = "quic/handshake"
#: Server sent a Retry and nothing we could read after it.
OUTCOME_RETRY: Final = "quic/retry"
#: Server datagrams arrived but none held a readable Initial (e.g. keys we cannot derive).
OUTCOME_SERVER_RESPONSE: Final = "quic/server_response"

#: Flows tracked at once; further new flows are counted, not analysed.
DEFAULT_MAX_FLOWS: Final = 10_000
#: Datagrams examined per direction per flow; the Initial exchange needs only a handful.
MAX_DATAGRAMS_PER_SIDE: Final = 32

Address = bytes | str  # packed (4 or 16 bytes) or text
Datagram = tuple[int, Address, int, Address, int, bytes]
#: (ClientHello random, key log label) -> secret or None, e.g. ``KeyLog.get``.
SecretLookup = Callable[[bytes, str], bytes | None]


@dataclass(slots=True)
class QuicFlowObservation:
    client: str
    client_port: int
    server: str
    server_port: int
    first_ts_ns: int
    last_ts_ns: int
    dcid: str  # hex of the client's original Destination Connection ID
    versions: tuple[int, ...] = ()  # versions of the client's long-header packets, in order
    server_versions: tuple[int, ...] = ()  # versions of the server's long-header packets
    offered_versions: tuple[int, ...] = ()  # Version Negotiation list, if any
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    ja4: str | None = None
    outcome: str = OUTCOME_NO_RESPONSE
    close_error_code: int | None = None
    close_reason: str = ""
    client_datagrams: int = 0
    server_datagrams: int = 0
    undecryptable: int = 0  # Initial packets that did not authenticate
    anomalies: list[str] = field(default_factory=list)
    cipher: int | None = None  # the ServerHello's cipher suite
    server_handshake_packets: int = 0  # server Handshake packets seen (opened or not)
    # With a key log (see the module doc); chain_der is leaf first, as presented.
    server_alpn: str | None = None
    chain_der: tuple[bytes, ...] = ()
    keylog: str | None = None
    keylog_detail: str = ""
    handshake_complete: bool = False  # a Finished was decrypted (the client's when known)


def _addr(a: Address) -> str:
    if isinstance(a, bytes | bytearray):
        try:
            return str(ipaddress.ip_address(bytes(a)))
        except ValueError:
            return bytes(a).hex()
    return str(a)


def _anomaly(obs: QuicFlowObservation, text: str) -> None:
    if len(obs.anomalies) < 16 and text not in obs.anomalies:
        obs.anomalies.append(text)


class _Flow:
    __slots__ = ("client_random", "client_stream", "close", "keys", "largest",
                 "obs", "packet_version", "retry", "secrets", "server_hello", "server_stream",
                 "spaces", "vn")

    def __init__(self, obs: QuicFlowObservation, max_crypto: int,
                 secrets: SecretLookup | None = None) -> None:
        self.obs = obs
        self.secrets = secrets
        self.client_random: bytes | None = None
        self.packet_version = 0  # version of the packet being read
        self.spaces = {False: HandshakeSpace(False, max_crypto),
                       True: HandshakeSpace(True, max_crypto)}
        self.keys: dict[tuple[bytes, int, bool], InitialKeys] = {}
        self.client_stream = CryptoStream(max_crypto)
        self.server_stream = CryptoStream(max_crypto)
        self.largest = {False: -1, True: -1}
        self.server_hello = False
        self.retry = False
        self.vn = False
        self.close: ConnectionCloseFrame | None = None

    def key(self, dcid: bytes, version: int, server: bool) -> InitialKeys:
        k = (dcid, version, server)
        got = self.keys.get(k)
        if got is None:
            if len(self.keys) >= 8:  # DCIDs after Retry/version change: a few, not unbounded
                self.keys.clear()
            got = self.keys[k] = initial_keys(dcid, version, server=server)
        return got


def _first_client_initial(payload: bytes) -> tuple[LongHeader, bytes] | None:
    """The datagram's leading Initial if it decrypts as a client Initial: (header, plaintext)."""
    headers = parse_long_headers(payload)
    if not headers:
        return None
    h = headers[0]
    if h.packet_type is not PacketType.INITIAL or h.version not in INITIAL_SALTS:
        return None
    if len(h.dcid) < 8:  # RFC 9000 §7.2: a client's first DCID has at least 8 bytes
        return None
    pkt = decrypt_initial(payload, h, initial_keys(h.dcid, h.version))
    return None if pkt is None else (h, pkt.payload)


def _feed(flow: _Flow, payload: bytes, server: bool, preset: tuple[LongHeader, bytes] | None,
          ) -> None:
    obs = flow.obs
    headers = parse_long_headers(payload)
    if not headers:  # a short header: 1-RTT data, normal once the handshake went on
        return
    odcid = bytes.fromhex(obs.dcid)
    for h in headers:
        if server:
            obs.server_versions += (h.version,)
        else:
            obs.versions += (h.version,)
        if h.packet_type is PacketType.VERSION_NEGOTIATION:
            if server:
                flow.vn = True
                obs.offered_versions = h.supported_versions[:32]
            continue
        if h.packet_type is PacketType.RETRY:
            if server:
                flow.retry = True
                # Only the server that saw the client's Initial can make this tag: a Retry
                # that fails it was forged or damaged on the path (RFC 9001 §5.8).
                if h.end - h.start < 16 + 7 or retry_integrity_tag(
                        odcid, payload[h.start : h.end - 16], h.version) != payload[
                        h.end - 16 : h.end]:
                    _anomaly(obs, "server:retry_integrity_failed")
            continue
        if h.packet_type is PacketType.HANDSHAKE:
            if server:
                obs.server_handshake_packets += 1
            if flow.secrets is not None:
                flow.spaces[server].add_packet(payload, h)
            continue
        if h.packet_type is not PacketType.INITIAL:
            continue
        flow.packet_version = h.version
        if preset is not None and h is headers[0]:
            plaintext = preset[1]
        else:
            # Server Initials and client Initials use keys from the client's original DCID;
            # after a Retry the client switches to the server-chosen DCID.
            cands = [odcid] if server or h.dcid == odcid else [h.dcid, odcid]
            pkt = None
            for dcid in cands:
                pkt = decrypt_initial(payload, h, flow.key(dcid, h.version, server),
                                      flow.largest[server])
                if pkt is not None:
                    break
            if pkt is None:
                obs.undecryptable += 1
                continue
            flow.largest[server] = max(flow.largest[server], pkt.packet_number)
            plaintext = pkt.payload
        frames, err = parse_frames(plaintext)
        if err is not None:
            _anomaly(obs, f"{'server' if server else 'client'}:{err}")
        for fr in frames:
            if isinstance(fr, CryptoFrame):
                stream = flow.server_stream if server else flow.client_stream
                for msg in stream.add(fr.offset, fr.data):
                    _message(flow, msg, server)
                if stream.truncated:
                    _anomaly(obs, f"{'server' if server else 'client'}:crypto_truncated")
            elif isinstance(fr, ConnectionCloseFrame):
                if server:
                    flow.close = fr
                else:
                    _anomaly(obs, f"client_close:{fr.error_name}")


def _message(flow: _Flow, msg: HandshakeMessage | OversizedMessage, server: bool) -> None:
    obs = flow.obs
    if isinstance(msg, OversizedMessage):
        _anomaly(obs, f"oversized_handshake:{msg.msg_type}")
        return
    try:
        if not server and msg.msg_type == HandshakeType.CLIENT_HELLO and obs.ja4 is None:
            hello = decode_client_hello(msg.body)
            obs.sni = hello.server_name
            obs.alpn = tuple(p.decode("ascii", "backslashreplace")
                             for p in hello.alpn_protocols)
            obs.ja4 = ja4(hello, protocol="q")
            flow.client_random = hello.random
        elif server and msg.msg_type == HandshakeType.SERVER_HELLO:
            sh = decode_server_hello(msg.body)
            flow.server_hello = True
            if not sh.is_hrr and obs.cipher is None:
                obs.cipher = sh.cipher_suite
                _arm(flow)
    except (DecodeError, ValueError):
        _anomaly(obs, f"undecodable_{'server' if server else 'client'}_hello")


def _arm(flow: _Flow) -> None:
    """After the ServerHello: derive both directions' Handshake keys from the key log."""
    cipher, random = flow.obs.cipher, flow.client_random
    if flow.secrets is None or cipher is None or random is None:
        return
    for server, space in flow.spaces.items():
        label = f"{'SERVER' if server else 'CLIENT'}_HANDSHAKE_TRAFFIC_SECRET"
        secret = flow.secrets(random, label)
        if secret is None:
            space.state = "no_key"
        else:
            space.set_secret(secret, cipher, flow.packet_version)


def _keylog_result(flow: _Flow) -> None:
    """Copy what the Handshake spaces revealed into the observation."""
    obs = flow.obs
    srv, cli = flow.spaces[True], flow.spaces[False]
    if flow.secrets is None:
        return
    if srv.state is None:
        if obs.server_handshake_packets:
            obs.keylog = "incomplete"
            obs.keylog_detail = (f"no ServerHello in the capture: {srv.waiting} server "
                                 "Handshake packet(s) could not be opened")
        return
    obs.keylog, obs.keylog_detail = srv.state, srv.detail
    obs.chain_der = srv.chain or ()
    obs.server_alpn = srv.alpn
    obs.handshake_complete = cli.finished or (srv.finished and cli.state == "no_key")
    for note in srv.anomalies:  # certificate_compressed:<algorithm>[:<problem>]
        _anomaly(obs, f"server:{note}")
    for space in (srv, cli):
        if space.frame_error is not None:
            _anomaly(obs, f"{space.side}:handshake:{space.frame_error}")
        if space.state == "decrypt_failed" and space is cli and srv.opened:
            _anomaly(obs, "client:handshake_decrypt_failed")
    if cli.close is not None:
        _anomaly(obs, f"client_close:{cli.close.error_name}")


def _outcome(flow: _Flow) -> str:
    if flow.close is None:
        flow.close = flow.spaces[True].close
    if flow.close is not None:
        return f"{OUTCOME_CONNECTION_CLOSE}:{flow.close.error_name}"
    if flow.server_hello:
        return OUTCOME_HANDSHAKE
    if flow.vn:
        return OUTCOME_VERSION_NEGOTIATION
    if flow.retry:
        return OUTCOME_RETRY
    if flow.obs.server_datagrams:
        return OUTCOME_SERVER_RESPONSE
    return OUTCOME_NO_RESPONSE


def analyse_quic_datagrams(datagrams: Iterable[Datagram], *,
                           max_flows: int = DEFAULT_MAX_FLOWS,
                           max_crypto_bytes: int = DEFAULT_MAX_CRYPTO_BYTES,
                           secrets: SecretLookup | None = None,
                           ) -> list[QuicFlowObservation]:
    """One observation per QUIC flow (4-tuple), in order of each flow's first packet.

    ``secrets`` (e.g. ``KeyLog.get``) opens the Handshake packets. Never raises on payload
    contents. Flows beyond ``max_flows`` are ignored.
    """
    flows: dict[tuple[str, int, str, int], _Flow] = {}
    for ts, src, sport, dst, dport, payload in datagrams:
        s, d = _addr(src), _addr(dst)
        payload = bytes(payload)
        flow = flows.get((s, sport, d, dport))
        server = False
        if flow is None:
            flow = flows.get((d, dport, s, sport))
            server = flow is not None
        preset = None
        if flow is None:
            if len(flows) >= max_flows:
                continue
            preset = _first_client_initial(payload)
            if preset is None:
                continue
            obs = QuicFlowObservation(s, sport, d, dport, ts, ts, preset[0].dcid.hex())
            flow = flows[(s, sport, d, dport)] = _Flow(obs, max_crypto_bytes, secrets)
        obs = flow.obs
        obs.last_ts_ns = max(obs.last_ts_ns, ts)
        if server:
            obs.server_datagrams += 1
            if obs.server_datagrams > MAX_DATAGRAMS_PER_SIDE:
                continue
        else:
            obs.client_datagrams += 1
            if obs.client_datagrams > MAX_DATAGRAMS_PER_SIDE:
                continue
        _feed(flow, payload, server, preset)
    out = []
    for flow in flows.values():
        _keylog_result(flow)
        flow.obs.outcome = _outcome(flow)
        if flow.close is not None:
            flow.obs.close_error_code = flow.close.error_code
            flow.obs.close_reason = flow.close.reason[:256].decode("utf-8", "replace")
        out.append(flow.obs)
    return out

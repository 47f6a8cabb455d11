"""Flow events -> observations: what each TLS handshake and each DNS answer showed on the wire.

The capture layer's last step (DESIGN §2: captures observe, ``classify`` decides).
:class:`CaptureObserver` drives :func:`~tlswatch.capture.read_flows`, feeds each TLS flow's
reassembled bytes to a sans-IO :class:`~tlswatch.tls.TLSConnection` until its handshake is
seen, then ``skip()``-s the flow (bulk data is only counted), and hands out frozen
observations in capture order:

* :class:`FlowObservation`, one per TCP flow in which either side spoke TLS (found by
  content, any port) and a ClientHello or ServerHello was seen, plus TCP-level failures on
  :data:`TLS_PORTS`;
* :class:`DnsObservation`, one per DNS answer to an A or AAAA question: UDP port 53, and
  DNS over TCP (server port 53, length-prefixed messages; at most
  :data:`MAX_DNS_TCP_MESSAGES` per connection, framing given up at a TCP gap).

Failures, as the wire shows them (``failure`` is ``stage/class[:detail]``):

====================================================================  =======================
what was seen                                                         failure
====================================================================  =======================
client SYN, nothing at all from the server, no client data            ``tcp/timeout`` *
the SYN answered by a RST (no SYN-ACK), no client data                ``tcp/refused`` *
SYN-ACK, then a server RST before the client sent or closed anything  ``tcp/reset`` *
the server's first bytes are not TLS (first 1 KiB kept as evidence)   ``tls/not_tls``
server TLS that cannot be parsed                                      ``tls/failed:<reason>``
a handshake message over the parser's cap                             ``tls/oversized:message``
a server alert before the handshake completed (fatal ones at once;    ``tls/alert:<name>``
a warning only when nothing else ended the handshake)
a server RST before the handshake completed                           ``tls/reset``
a server FIN (or a record cut by it) before the handshake completed   ``tls/eof``
the ClientHello answered by nothing until the flow ended (the client  ``tls/timeout``
gave up, the flow went idle, or the capture went on for at least
:data:`WAIT_AT_END_NS` after the ClientHello)
====================================================================  =======================

A capture that ends (or was cut: a truncated file) sooner after a ClientHello or SYN claims
no timeout and gives no observation (counted in ``ObserveStats.cut_by_end``): rotated
capture files split flows, and the answer may be in the next file (where the server's side
alone still shows its chain).

(*) only on :data:`TLS_PORTS`: a connection that carried no byte cannot be recognised by
content, and reporting every unanswered SYN of a capture would drown the TLS findings.

Server-side events that follow the client's own abort (its alert, RST or FIN came first)
are the client's doing, not failures. A handshake is *complete* at the server's
ChangeCipherSpec (TLS <= 1.2) or its first encrypted record after a TLS 1.3 ServerHello.
A chain seen before a failure is kept in the observation; ``classify`` decides which of the
two is the finding. A TCP gap inside the handshake stops parsing that side: no failure is
claimed from a partial view (``bytes_missing``).

For a server RST, ``rst`` carries its TTL, IP ID and the evidence that it was injected:
``ttl_differs_from_server(61!=52)``, ``ip_id_zero``, ``ip_id_unlike_server(0 after 50034)``,
``several_rsts(3)``, ``seq_unexpected(+1460)``, ``server_sent_after_rst(2)`` (each compared
with the same side's previous packet, which is the server's own SYN-ACK or data).
"""

from __future__ import annotations

import os
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Final, TypeAlias, cast

from ..model import Flow, RstInfo
from ..tls.connection import TLSConnection
from ..tls.events import (
    AlertEvent,
    CertificateEvent,
    ChangeCipherSpecEvent,
    ClientHelloEvent,
    EncryptedRecordEvent,
    ServerHelloEvent,
)
from ..tls.keylog import KeyLog
from ..tls.parser import Status
from ..tls.records import Detection
from .dns_answer import MALFORMED, DnsAnswer, parse_answer
from .dns_tcp import DnsTcpStream
from .events import Data, Detected, Fin, FlowEnd, FlowKey, FlowStart, Gap, Rst, Secrets, Side
from .events import SideSummary as _Summary
from .flows import FlowReader, Share, read_flows
from .layers import PacketTuple, ip_to_str
from .pcapng import SECRETS_TLS_KEYLOG
from .rst_evidence import rst_info
from .starttls import StartTlsTracker, greeting_protocol
from .tcp import FlowConfig

if TYPE_CHECKING:
    # Loaded when first needed: QUIC for a capture with QUIC packets, TLS 1.3 decryption
    # (cryptography's AEADs) when a key log is given: start-up stays small without them.
    from ..quic.observe import QuicFlowObservation
    from ..tls.decrypt import HandshakeDecryptor

__all__ = [
    "KEYLOG_STATES",
    "MAX_DNS_TCP_MESSAGES",
    "NON_TLS_PREFIX",
    "TLS_PORTS",
    "WAIT_AT_END_NS",
    "CaptureObserver",
    "DnsObservation",
    "FlowObservation",
    "Observation",
    "ObserveStats",
    "observe_capture",
]

#: First bytes of a non-TLS answer kept as evidence (blockpage matching), as the probe does.
NON_TLS_PREFIX: Final = 1024
#: Ports where a connection that carried no data is still reported (tcp/timeout, refused,
#: reset): HTTPS, SMTPS, NNTPS, LDAPS, DNS over TLS, FTPS, TELNETS, IMAPS, IRCS, POP3S, SIPS,
#: and the common HTTPS alternative.
TLS_PORTS: Final = frozenset({443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 5061, 8443})

#: How long a capture must go on after an unanswered ClientHello (or SYN) to call it a
#: timeout when the capture ends first: the probe's default TLS timeout.
WAIT_AT_END_NS: Final = 10_000_000_000

#: What a key log did for a flow (``FlowObservation.keylog``): the TLS 1.3 handshake was
#: decrypted up to the server's Finished; a record did not authenticate (wrong secrets); no
#: secret for the session's client random; decryption stopped early (the flow ended, an
#: alert, a malformed flight, over :data:`DEFAULT_MAX_HANDSHAKE_BYTES`, a suite that is not
#: TLS 1.3's); or, TLS <= 1.2, the key log holds the session's master secret (CLIENT_RANDOM).
KEYLOG_STATES: Final = frozenset({
    "decrypted", "decrypt_failed", "no_key", "incomplete", "alert", "invalid", "overflow",
    "unsupported", "tls12_master_secret",
})

#: DNS messages read per TCP connection (both directions); then the flow is skipped
#: (``dns_tcp_capped``): zone transfers and long-lived resolver connections stay cheap.
MAX_DNS_TCP_MESSAGES: Final = 64

_DNS_PORT: Final = 53
_UDP: Final = 17
_MAX_QUIC_BYTES: Final = 64 * 1024 * 1024  # long-header UDP kept per capture for QUIC
_ADDRESS_TYPES: Final = frozenset({None, 1, 28})  # A, AAAA (None: read the whole message)
_MAX_PENDING_QUERIES: Final = 65_536  # DNS queries waiting for an answer (oldest dropped)
_MAX_NAMES: Final = 65_536  # address -> name from DNS answers, for flows without SNI
_MAX_UNPARSED: Final = 4096  # other shares' DNS answers held before they are parsed
_TLS13: Final = 0x0304
_NS_PER_MS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class FlowObservation:
    """What one TCP flow showed of a TLS handshake (or of a connection that never got there).

    ``time_ns`` is the handshake's time: the packet that completed the (first) ClientHello,
    else the ServerHello's, else the flow's first packet. ``version``/``cipher`` are the
    ServerHello's (wire numbers); ``chain_der`` the server's Certificate as presented, leaf
    first, when it travelled in cleartext or was decrypted with a key log; ``chain_encrypted``
    says it was encrypted and not decrypted (TLS 1.3). ``keylog`` is what a key log did for
    the flow (:data:`KEYLOG_STATES`), ``keylog_detail`` why when it failed.
    ``dns_name`` is a name this capture's DNS resolved to the server address (for flows
    without SNI). Byte counts are stream bytes seen per side when the observation was made.
    ``connect_ms`` is the time from the client's first SYN to the server's first SYN-ACK,
    when both were captured (the probe's ``tcp.connect_ms``, as seen where the capture was
    taken: at the client it is one round trip).
    """

    key: FlowKey
    first_packet_ns: int
    time_ns: int
    failure: str | None = None
    sni: str | None = None
    dns_name: str | None = None
    client_hello: bool = False
    version: int | None = None
    cipher: int | None = None
    alpn: str | None = None
    ja3: str | None = None
    ja3s: str | None = None
    ja4: str | None = None
    history: str = ""
    server_alert: str | None = None
    client_alert: str | None = None
    chain_der: tuple[bytes, ...] = ()
    chain_encrypted: bool = False
    keylog: str | None = None
    keylog_detail: str = ""
    resumed: bool = False
    handshake_complete: bool = False
    bytes_missing: bool = False
    non_tls_prefix: bytes = b""
    client_bytes: int = 0
    server_bytes: int = 0
    handshake_ms: float | None = None
    rst: RstInfo | None = None
    anomalies: tuple[str, ...] = ()
    starttls: str | None = None  # the flow was upgraded (or asked to be) with STARTTLS: how
    connect_ms: float | None = None

    @property
    def flow(self) -> Flow:
        return self.key.flow()


@dataclass(frozen=True, slots=True)
class DnsObservation:
    """One DNS answer (UDP, or TCP: ``flow.transport``) to an A or AAAA question.
    ``flow``'s client is the querier.

    ``first_packet_ns`` is the query's time (the answer's when the query was not captured);
    ``time_ns`` the answer's. ``answers`` are the addresses of the question's type.
    """

    flow: Flow
    first_packet_ns: int
    time_ns: int
    qname: str | None
    qtype: str
    rcode: str
    answers: tuple[str, ...] = ()
    dns_ms: float | None = None
    anomalies: tuple[str, ...] = ()


Observation: TypeAlias = "FlowObservation | DnsObservation | QuicFlowObservation"


@dataclass(slots=True)
class ObserveStats:
    """Counts for a summary (valid during and after :meth:`CaptureObserver.run`)."""

    tls_flows: int = 0  # flows where a side spoke TLS
    handshakes: int = 0  # of which showed a ClientHello or ServerHello (one observation each)
    chains: int = 0  # observations with a cleartext chain
    encrypted_chains: int = 0  # TLS 1.3: the chain was encrypted
    tcp_failures: int = 0  # tcp/timeout, refused, reset observations
    cut_by_end: int = 0  # unanswered when the capture ended too soon after: no observation
    dns_answers: int = 0  # A/AAAA answers read (one observation each), UDP and TCP
    dns_tcp_answers: int = 0  # of which came over TCP
    key_logs: int = 0  # pcapng Decryption Secrets Blocks seen (TLS key logs: used)
    decrypted: int = 0  # TLS 1.3 handshakes decrypted with a key log (chain read)
    decrypt_failed: int = 0  # TLS 1.3 handshakes a key log had secrets for but did not open
    no_key: int = 0  # TLS 1.3 handshakes without secrets in the key logs (when some were given)
    tls12_keys: int = 0  # TLS <= 1.2 handshakes whose CLIENT_RANDOM was in a key log
    quic_flows: int = 0  # QUIC flows whose client Initial decrypted (one observation each)
    starttls: int = 0  # flows upgraded with STARTTLS (their handshakes count as any other)
    starttls_failed: int = 0  # STARTTLS refused, or reset/closed/unanswered after the command
    reassembled: int = 0  # IP datagrams put back together from fragments (set by run())


class _Flow:
    """Per-flow state while its handshake is being read."""

    __slots__ = (
        "cert", "client_abort_ns", "client_alert", "client_bytes", "conn", "dead", "dec",
        "done_ns", "fail_ns", "failure", "first_ns", "gap_notes", "hello_ns", "key", "key_note",
        "prefix", "raw", "rst", "rsts", "server_bytes", "server_gap", "sh_ns", "starttls",
        "warning_alert",
    )

    def __init__(self, key: FlowKey, first_ns: int) -> None:
        self.key = key
        self.first_ns = first_ns
        self.conn = TLSConnection()
        self.hello_ns: int | None = None
        self.sh_ns: int | None = None
        self.done_ns: int | None = None
        self.failure: str | None = None
        self.fail_ns: int | None = None
        self.client_abort_ns: int | None = None
        self.client_alert: str | None = None
        self.warning_alert: str | None = None
        self.cert = False
        self.prefix = b""
        self.client_bytes = 0
        self.server_bytes = 0
        self.server_gap = False
        self.gap_notes: list[str] = []
        self.rst: Rst | None = None  # the first server RST
        self.rsts = 0  # server RSTs seen
        self.dead = 0  # sides no longer read: bit 1 << Side (3 = the flow is skipped)
        # Key logs: the server's stream kept for decryption (bounded), and the decryptor.
        self.raw: bytearray | None = None
        self.dec: HandshakeDecryptor | None = None
        self.key_note: str | None = None  # a KEYLOG_STATES value when no decryptor ran
        self.starttls: str | None = None  # the STARTTLS protocol that led to the handshake

    def fail(self, failure: str, ts: int) -> None:
        """The first server-side failure wins, unless the client had already given up."""
        if self.failure is None and self.done_ns is None and self.client_abort_ns is None:
            self.failure = failure
            self.fail_ns = ts


def _summary_notes(server: _Summary, client: _Summary) -> list[str]:
    """Per-flow TCP facts that hint at a middlebox (from the flow's end)."""
    notes: list[str] = []
    if len(server.ttls) > 1:
        seen = ", ".join(f"{ttl}x{n}" for ttl, n in server.ttls)
        notes.append(f"server packets arrived with several TTLs ({seen}): some may be injected")
    conflicts = server.overlap_conflicts + client.overlap_conflicts
    if conflicts:
        notes.append(f"tcp_overlap_conflict({conflicts}): two different copies of the same "
                     "bytes (an injector racing the server?)")
    return notes


def _ms(start: int | None, end: int | None) -> float | None:
    if start is None or end is None or end < start:
        return None
    return round((end - start) / _NS_PER_MS, 3)


class CaptureObserver:
    """Read one capture and call ``on_observation`` for each observation, in capture order.

    ``run()`` never raises for what a file or a peer does (damage is counted in
    :attr:`anomalies` and :attr:`warnings`, with :attr:`partial` set); it raises
    :class:`~tlswatch.capture.CaptureFormatError` at construction for a non-capture and
    ``OSError`` when the file cannot be read. ``on_tick`` is called every few thousand events
    (progress display).

    ``keylog`` (and the TLS key logs in the capture's pcapng Decryption Secrets Blocks, from
    the point they appear) decrypt TLS 1.3 handshakes: while any key is known, each flow's
    server stream is kept (up to :data:`DEFAULT_MAX_HANDSHAKE_BYTES`) until the server's
    encrypted records begin; with a ``SERVER_HANDSHAKE_TRAFFIC_SECRET`` for the client
    random, the flow is read on to the server's Finished and its chain is observed.
    """

    def __init__(self, source: str | os.PathLike[str] | BinaryIO,
                 on_observation: Callable[[Observation], None], *,
                 config: FlowConfig | None = None,
                 on_tick: Callable[[], None] | None = None,
                 keylog: KeyLog | None = None, share: Share | None = None) -> None:
        self._emit = on_observation
        # Key logs: the caller's (files, shared by captures: never written to) and this
        # capture's own (its Decryption Secrets Blocks).
        self.keylog = keylog if keylog is not None else KeyLog()
        self.embedded_keylog = KeyLog()
        self._tick = on_tick
        # share: this observer's part of the flows when several processes read one file
        # (tlswatch analyse --jobs): see read_flows.
        self.reader: FlowReader = read_flows(source, config, on_datagram=self._datagram,
                                             share=share)
        self.stats = ObserveStats()
        self.own_anomalies: Counter[str] = Counter()  # observation-level (e.g. dns_malformed)
        self._flows: dict[int, _Flow] = {}
        self._starts: dict[int, int] = {}  # flow id -> first packet ns (flows without state)
        self._rsts: dict[int, Rst] = {}  # first server RST of flows without state
        self._done: set[int] = set()  # flows observed at their handshake's end, still open
        self._plain: dict[int, StartTlsTracker] = {}  # flows in a STARTTLS dialogue
        # DNS over TCP: flow id -> (client stream, server stream)
        self._dns_tcp: dict[int, tuple[DnsTcpStream, DnsTcpStream]] = {}
        self._queries: OrderedDict[tuple[str, int, str, int], int] = OrderedDict()
        # answered queries -> (first answer's time, query's time): a second answer is news
        self._answered: OrderedDict[tuple[str, int, str, int], tuple[int, int]] = OrderedDict()
        self._names: OrderedDict[str, str] = OrderedDict()
        self._unparsed: list[bytes] = []  # other shares' DNS answers, parsed when needed
        # QUIC long-header datagrams (Initials live there), bounded; analysed at the end.
        self._quic: list[tuple[int, bytes, int, bytes, int, bytes]] = []
        self._quic_bytes = 0

    # -- public ---------------------------------------------------------------------------

    @property
    def anomalies(self) -> Counter[str]:
        """File, decoding, TCP and observation anomalies together."""
        return self.reader.anomalies + self.own_anomalies

    @property
    def warnings(self) -> list[str]:
        return self.reader.warnings

    @property
    def partial(self) -> bool:
        return self.reader.partial

    @property
    def flows_seen(self) -> int:
        return self.reader.engine.flows_seen

    def close(self) -> None:
        self.reader.close()

    def run(self) -> None:
        flows = self._flows
        starts = self._starts
        tick = self._tick
        for n, ev in enumerate(self.reader, 1):
            if tick is not None and not n & 0x1FFF:
                tick()
            # Dispatch on the exact class (events are final named tuples): cheaper than match.
            cls = ev.__class__
            if cls is Data:
                ev = cast(Data, ev)
                st = flows.get(ev.flow_id)
                # (events of a side queued before it was skipped may still come)
                if st is not None and not st.dead & (1 << ev.side):
                    self._data(ev.flow_id, st, ev)
                elif st is None:
                    self._plaintext(ev)
            elif cls is FlowStart:
                ev = cast(FlowStart, ev)
                starts[ev.flow_id] = ev.ts_ns
            elif cls is Detected:
                ev = cast(Detected, ev)
                if ev.result is Detection.YES and ev.flow_id not in flows:
                    self.stats.tls_flows += 1
                    st = flows[ev.flow_id] = _Flow(ev.key, starts.pop(ev.flow_id, ev.ts_ns))
                    if self._have_keys():
                        st.raw = bytearray()
            elif cls is FlowEnd:
                self._end(cast(FlowEnd, ev))
            elif cls is Rst:
                self._rst(cast(Rst, ev))
            elif cls is Fin:
                self._fin(cast(Fin, ev))
            elif cls is Gap:
                self._gap(cast(Gap, ev))
            elif cls is Secrets:
                self._secrets(cast(Secrets, ev))
        self.stats.reassembled = self.reader.fragments.reassembled
        self._quic_flows()

    # -- QUIC ------------------------------------------------------------------------------

    def _quic_datagram(self, ts: int, p: PacketTuple) -> None:
        payload = p[11]
        if self._quic_bytes + len(payload) > _MAX_QUIC_BYTES:
            self.own_anomalies["quic_datagrams_dropped"] += 1
            return
        self._quic_bytes += len(payload)
        self._quic.append((ts, bytes(p[0]), p[5], bytes(p[1]), p[6], bytes(payload)))

    def _quic_flows(self) -> None:
        if not self._quic:
            return
        from ..quic.observe import analyse_quic_datagrams

        datagrams, self._quic = self._quic, []
        secrets = self._key if self._have_keys() else None  # opens Handshake packets
        for obs in analyse_quic_datagrams(datagrams, secrets=secrets):
            self.stats.quic_flows += 1
            if obs.keylog == "decrypted":
                self.stats.decrypted += 1
            elif obs.keylog == "decrypt_failed":
                self.stats.decrypt_failed += 1
            elif obs.keylog == "no_key":
                self.stats.no_key += 1
            self._emit(obs)

    # -- key logs --------------------------------------------------------------------------

    def _have_keys(self) -> bool:
        return bool(self.keylog) or bool(self.embedded_keylog)

    def _secrets(self, ev: Secrets) -> None:
        if ev.secrets_type != SECRETS_TLS_KEYLOG:
            return
        self.stats.key_logs += 1
        self.embedded_keylog.add_text(ev.data)
        if self.embedded_keylog:
            for st in self._flows.values():  # flows whose server has not spoken yet
                if st.raw is None and st.server_bytes == 0 and st.dec is None:
                    st.raw = bytearray()

    def _key(self, client_random: bytes, label: str) -> bytes | None:
        own = self.embedded_keylog.get(client_random, label)
        return own if own is not None else self.keylog.get(client_random, label)

    def _hold(self, st: _Flow) -> bool:
        """At the handshake's end: start decrypting a TLS 1.3 flight when a key is known;
        True while the flow must be read on (to the server's Finished)."""
        if st.dec is None:
            raw, st.raw = st.raw, None
            conn = st.conn
            ch, sh = conn.client_hello, conn.server_hello
            if raw is None or ch is None or sh is None or sh.version < _TLS13:
                return False
            secret = self._key(ch.random, "SERVER_HANDSHAKE_TRAFFIC_SECRET")
            if secret is None:
                st.key_note = "no_key"
                return False
            from ..tls.decrypt import HandshakeDecryptor

            st.dec = HandshakeDecryptor(sh.cipher_suite, secret)
            st.dec.feed(raw)
        return st.dec.reading

    # -- TCP/TLS ---------------------------------------------------------------------------

    def _data(self, fid: int, st: _Flow, ev: Data) -> None:
        conn = st.conn
        data = ev.data
        ts = ev.ts_ns
        if ev.side == Side.CLIENT:
            st.client_bytes = ev.offset + len(data)
            for e in conn.feed_client(data):
                if e.__class__ is ClientHelloEvent:
                    if st.hello_ns is None:
                        st.hello_ns = ts
                elif e.__class__ is AlertEvent:
                    assert isinstance(e, AlertEvent)
                    if st.client_alert is None:
                        st.client_alert = e.name
                    if st.client_abort_ns is None and st.done_ns is None:
                        st.client_abort_ns = ts
        else:
            if ev.offset < NON_TLS_PREFIX:
                st.prefix += data[: NON_TLS_PREFIX - ev.offset]
            st.server_bytes = ev.offset + len(data)
            if st.raw is not None:  # (only while a key log is known)
                from ..tls.decrypt import DEFAULT_MAX_HANDSHAKE_BYTES

                if len(st.raw) + len(data) <= DEFAULT_MAX_HANDSHAKE_BYTES:
                    st.raw += data
                else:
                    st.raw = None
                    st.key_note = "overflow"
            elif st.dec is not None:
                st.dec.feed(data)
            server = conn.server
            if server.status is Status.INVALID:
                # Not TLS: only the evidence prefix is still wanted.
                if st.server_bytes >= NON_TLS_PREFIX:
                    self._skip(fid, st)
                return
            for e in conn.feed_server(data):
                cls = e.__class__
                if cls is ServerHelloEvent:
                    if st.sh_ns is None:
                        st.sh_ns = ts
                elif cls is CertificateEvent:
                    st.cert = True
                elif cls is ChangeCipherSpecEvent:
                    if conn.server_hello is not None and conn.server_hello.version < _TLS13:
                        st.done_ns = ts
                elif cls is EncryptedRecordEvent:
                    if conn.server_hello is not None and conn.server_hello.version >= _TLS13:
                        st.done_ns = ts
                elif cls is AlertEvent:
                    assert isinstance(e, AlertEvent)
                    if e.fatal:
                        st.fail(f"tls/alert:{e.name}", ts)
                    elif st.warning_alert is None:
                        st.warning_alert = e.name
            if conn.server.status is Status.INVALID and st.done_ns is None:  # (after feeding)
                reason = conn.server.invalid_reason or "invalid"
                if reason == "not_tls":
                    st.fail("tls/not_tls", ts)
                elif reason == "oversized_message":
                    st.fail("tls/oversized:message", ts)
                elif reason == "truncated":
                    st.fail("tls/eof", ts)
                else:
                    st.fail(f"tls/failed:{reason}", ts)
                if reason != "not_tls" or st.server_bytes >= NON_TLS_PREFIX:
                    self._skip(fid, st)
                return
        if st.done_ns is not None:
            if not self._hold(st):
                self._finish(fid, st, None)
        elif st.failure is not None:
            self._skip(fid, st)

    def _skip(self, fid: int, st: _Flow, side: Side | None = None) -> None:
        bits = 3 if side is None else 1 << side
        if st.dead & bits != bits:
            st.dead |= bits
            self.reader.skip(fid, side)

    def _rst(self, ev: Rst) -> None:
        st = self._flows.get(ev.flow_id)
        if ev.side == Side.CLIENT:
            if st is not None and st.client_abort_ns is None and st.done_ns is None:
                st.client_abort_ns = ev.ts_ns
            elif st is None:
                self._client_closed_plaintext(ev.flow_id, ev.ts_ns)
            return
        if st is None:
            self._rsts.setdefault(ev.flow_id, ev)
            return
        st.rsts += 1
        if st.rst is None:
            st.rst = ev
        st.fail("tls/reset", ev.ts_ns)
        self._skip(ev.flow_id, st)

    def _fin(self, ev: Fin) -> None:
        st = self._flows.get(ev.flow_id)
        if st is None:
            if ev.side == Side.CLIENT:
                self._client_closed_plaintext(ev.flow_id, ev.ts_ns)
            return
        if ev.side == Side.CLIENT:
            st.conn.eof_client()
            if st.client_abort_ns is None and st.done_ns is None:
                st.client_abort_ns = ev.ts_ns
        else:
            st.conn.eof_server()
            st.fail("tls/eof", ev.ts_ns)

    def _gap(self, ev: Gap) -> None:
        st = self._flows.get(ev.flow_id)
        if st is None:
            streams = self._dns_tcp.get(ev.flow_id)
            if streams is not None:  # the DNS framing is lost on that side
                streams[ev.side].stop()
            return
        if st.dead & (1 << ev.side):
            return
        side = "client" if ev.side == Side.CLIENT else "server"
        st.server_gap |= ev.side == Side.SERVER
        st.gap_notes.append(f"tcp_gap: {ev.length} bytes of the {side} handshake stream at "
                            f"offset {ev.offset} are missing from the capture")
        # The parser cannot resynchronise after missing bytes: stop reading that side.
        self._skip(ev.flow_id, st, ev.side)

    def _end(self, ev: FlowEnd) -> None:
        self._dns_tcp.pop(ev.flow_id, None)
        plain = self._plain.pop(ev.flow_id, None)
        if plain is not None and plain.waiting:
            self._starttls_unanswered(ev, plain)
        st = self._flows.pop(ev.flow_id, None)
        if st is None:
            first = self._starts.pop(ev.flow_id, None)
            rst = self._rsts.pop(ev.flow_id, None)
            if ev.flow_id in self._done:
                self._done.discard(ev.flow_id)
            else:
                self._tcp_failure(ev, first, rst)
            return
        self._finish(ev.flow_id, st, ev)

    def _tcp_failure(self, ev: FlowEnd, first: int | None, rst: Rst | None) -> None:
        """A flow that carried no data: report it only on a TLS port (see the module doc)."""
        c, s = ev.client, ev.server
        if ev.key.server_port not in TLS_PORTS or c.payload_bytes or not c.syn:
            return
        notes = _summary_notes(s, c)
        info = None
        if s.packets == 0:
            if ev.reason == "eof" and not c.rst and not c.fin and not self._waited(
                    c.first_ts_ns):
                self.stats.cut_by_end += 1  # the capture ended too soon for a timeout
                return
            failure = "tcp/timeout"
        elif s.rst and not s.syn:
            failure = "tcp/refused"
        elif s.rst and s.syn and not c.fin and rst is not None:
            failure = "tcp/reset"
        else:
            return
        if rst is not None:
            info = rst_info(rst, s.rst, s.packets_after_rst)
        if c.syn > 1:
            notes.append(f"the client sent its SYN {c.syn} times")
        t0 = first if first is not None else (c.first_ts_ns or ev.ts_ns)
        self.stats.tcp_failures += 1
        self._emit(FlowObservation(ev.key, t0, t0, failure, rst=info,
                                   anomalies=tuple(notes),
                                   connect_ms=self._connect_ms(ev.flow_id, ev)))

    def _finish(self, fid: int, st: _Flow, end: FlowEnd | None) -> None:
        """Make the flow's observation: at the handshake's completion, or at the flow's end."""
        if end is None:
            del self._flows[fid]
            self._done.add(fid)
            self._skip(fid, st)
        conn = st.conn
        ch, sh = conn.client_hello, conn.server_hello
        if ch is None and sh is None:
            return  # TLS records without a handshake (picked up mid-stream): nothing to judge
        notes: list[str] = list(st.gap_notes)
        failure = st.failure
        tls13 = sh is not None and sh.version >= _TLS13
        chain = conn.certificates or ()
        keylog, keylog_detail = self._keylog_state(st, tls13)
        dec = st.dec
        if tls13 and dec is not None and dec.certificates:
            chain = dec.certificates
        if dec is not None:
            notes += dec.anomalies  # certificate_compressed:<algorithm>[:<problem>]
        encrypted = tls13 and not chain
        if failure is None and st.done_ns is None and not chain and not tls13 \
                and not st.server_gap:
            if st.hello_ns is not None and end is not None and end.reason == "eof" \
                    and st.client_abort_ns is None and not self._waited(st.hello_ns):
                self.stats.cut_by_end += 1  # the capture ended too soon to say more
                return
            if st.warning_alert is not None:
                failure = f"tls/alert:{st.warning_alert}"
            elif st.hello_ns is not None and (st.server_bytes == 0
                                              or st.client_abort_ns is None):
                # Nothing (or no complete flight) came back before the flow ended.
                failure = "tls/timeout"
        if failure == "tls/timeout" and st.hello_ns is not None:
            if st.client_abort_ns is not None:
                notes.append(f"the client gave up {_ms(st.hello_ns, st.client_abort_ns)} ms "
                             "after the ClientHello")
            elif end is not None and end.reason == "idle":
                notes.append("no packet for the idle timeout: the flow was given up")
        if st.client_abort_ns is not None and st.done_ns is None and failure is None:
            why = f" with alert {st.client_alert}" if st.client_alert else ""
            notes.append(f"the client aborted the handshake{why}")
        rst_seen = None
        if end is not None:
            notes += _summary_notes(end.server, end.client)
            if st.rst is not None:
                rst_seen = rst_info(st.rst, end.server.rst, end.server.packets_after_rst)
        elif st.rst is not None:
            rst_seen = rst_info(st.rst, st.rsts, 0)
        for who, hello in (("client_hello", ch), ("server_hello", sh)):
            if hello is not None:
                notes += [f"{who}: {a}" for a in hello.anomalies]
        if conn.client.status is Status.INVALID and conn.client.invalid_reason != "truncated":
            notes.append(f"client stream: {conn.client.invalid_reason}")
        resumed = bool(sh is not None and not tls13 and not st.cert and st.done_ns is not None)
        server_alert = next((a.name for c, a in conn.alerts if not c), None)
        decisive = st.done_ns if st.done_ns is not None else st.fail_ns
        self.stats.handshakes += 1
        if chain and keylog != "decrypted":
            self.stats.chains += 1
        elif not chain and tls13:
            self.stats.encrypted_chains += 1
        if keylog == "decrypted":
            self.stats.decrypted += 1
        elif keylog == "decrypt_failed":
            self.stats.decrypt_failed += 1
        elif keylog == "no_key":
            self.stats.no_key += 1
        elif keylog == "tls12_master_secret":
            self.stats.tls12_keys += 1
        t = st.hello_ns if st.hello_ns is not None else (st.sh_ns or st.first_ns)
        sni = (ch.server_name or None) if ch is not None else None  # (an empty name: none)
        self._emit(FlowObservation(
            key=st.key, first_packet_ns=st.first_ns, time_ns=t, failure=failure,
            sni=sni, dns_name=None if sni else self._name_of(st.key.server_ip),
            client_hello=ch is not None,
            version=sh.version if sh is not None else None,
            cipher=sh.cipher_suite if sh is not None else None,
            alpn=sh.alpn_protocol.decode("ascii", "replace")
            if sh is not None and sh.alpn_protocol else None,
            ja3=conn.ja3, ja3s=conn.ja3s, ja4=conn.ja4, history=conn.history,
            server_alert=server_alert, client_alert=st.client_alert, chain_der=chain,
            chain_encrypted=encrypted, keylog=keylog, keylog_detail=keylog_detail,
            resumed=resumed, handshake_complete=st.done_ns is not None,
            bytes_missing=bool(st.gap_notes),
            non_tls_prefix=st.prefix if failure == "tls/not_tls" else b"",
            client_bytes=st.client_bytes, server_bytes=st.server_bytes,
            handshake_ms=_ms(st.hello_ns, decisive), rst=rst_seen, anomalies=tuple(notes),
            starttls=st.starttls, connect_ms=self._connect_ms(fid, end),
        ))

    def _connect_ms(self, fid: int, end: FlowEnd | None) -> float | None:
        """SYN -> SYN-ACK of a flow: from its end's summary, else from the live flow table."""
        if end is not None:
            return _ms(end.client.syn_ts_ns, end.server.syn_ts_ns)
        return _ms(*self.reader.engine.syn_times(fid))

    def _keylog_state(self, st: _Flow, tls13: bool) -> tuple[str | None, str]:
        """(``FlowObservation.keylog``, detail) of a flow being finished."""
        st.raw = None
        dec = st.dec
        if dec is not None:
            from ..tls.decrypt import DecryptState

            state = dec.state
            if state is DecryptState.DONE:
                return "decrypted", ""
            if state is DecryptState.READING:
                return "incomplete", ("the flow ended before the server's Finished "
                                      f"({dec.records} record(s) decrypted)")
            return state.value, dec.detail
        if tls13:
            if st.key_note == "overflow":
                from ..tls.decrypt import DEFAULT_MAX_HANDSHAKE_BYTES

                return st.key_note, ("the server's handshake was over "
                                     f"{DEFAULT_MAX_HANDSHAKE_BYTES} bytes before encryption "
                                     "began")
            if st.key_note is not None:
                return st.key_note, ""
            return None, ""
        ch = st.conn.client_hello
        if ch is not None and self._have_keys() \
                and self._key(ch.random, "CLIENT_RANDOM") is not None:
            return "tls12_master_secret", ""
        return None, ""

    def _waited(self, since: int | None) -> bool:
        """The capture went on long enough after ``since`` to call silence a timeout."""
        reader = self.reader
        return since is not None and not reader.partial \
            and reader.last_ts_ns - since >= WAIT_AT_END_NS

    # -- STARTTLS --------------------------------------------------------------------------

    def _plaintext(self, ev: Data) -> None:
        """Data of a flow that did not open with TLS: a STARTTLS dialogue is followed (the
        flow table delivers such flows only after a greeting of a STARTTLS protocol)."""
        fid = ev.flow_id
        if ev.key.server_port == _DNS_PORT:
            self._dns_tcp_data(ev)
            return
        tr = self._plain.get(fid)
        if tr is None:
            family = greeting_protocol(ev.data) if ev.side == Side.SERVER and ev.offset == 0 \
                else None
            if family is None or fid in self._done:
                return
            tr = self._plain[fid] = StartTlsTracker(family)
        tr.feed(ev.side == Side.SERVER, ev.offset, ev.data, ev.ts_ns)
        if not tr.done:
            return
        del self._plain[fid]
        if tr.upgraded and tr.client_tls_offset is not None \
                and tr.server_tls_offset is not None:
            self.stats.tls_flows += 1
            self.stats.starttls += 1
            st = self._flows[fid] = _Flow(ev.key, self._starts.pop(fid, ev.ts_ns))
            st.starttls = tr.protocol
            if self._have_keys():
                st.raw = bytearray()
            if tr.early_client:  # (a client that did not wait for the go-ahead)
                self._data(fid, st, Data(fid, ev.key, Side.CLIENT, ev.ts_ns,
                                         tr.client_tls_offset, bytes(tr.early_client)))
            rest = ev.data[tr.server_tls_offset - ev.offset:]
            if rest and fid in self._flows and not st.dead & (1 << Side.SERVER):
                self._data(fid, st, ev._replace(offset=tr.server_tls_offset, data=rest))
            return
        self.reader.skip(fid)
        if tr.refusal is not None:  # the server said no: that is the finding
            self._done.add(fid)
            self._starttls_failure(fid, ev.key, tr, "tls/failed:starttls_refused", tr.reply_ns,
                                   [f"the server refused STARTTLS ({tr.protocol}): "
                                    f"{tr.refusal}"])

    def _client_closed_plaintext(self, fid: int, ts: int) -> None:
        """The client's FIN/RST during a STARTTLS dialogue: after its command, it gave up."""
        tr = self._plain.get(fid)
        if tr is not None and tr.waiting and tr.client_gave_up_ns is None:
            tr.client_gave_up_ns = ts

    def _starttls_unanswered(self, ev: FlowEnd, tr: StartTlsTracker) -> None:
        """The flow ended after the client's STARTTLS command, before the server's reply."""
        self._done.add(ev.flow_id)
        rst = self._rsts.get(ev.flow_id)
        info = None
        what = f"the client's STARTTLS command ({tr.protocol})"
        gave_up = tr.client_gave_up_ns
        if gave_up is not None and (rst is None or gave_up <= rst.ts_ns):
            failure, when = "tls/timeout", None
            note = f"no answer to {what}: the client gave up {_ms(tr.command_ns, gave_up)} ms later"
        elif rst is not None and ev.server.rst:
            failure, when = "tls/reset", rst.ts_ns
            info = rst_info(rst, ev.server.rst, ev.server.packets_after_rst)
            note = f"the connection was reset right after {what}"
        elif ev.server.fin:
            failure, when = "tls/eof", ev.ts_ns
            note = f"the server closed the connection after {what}"
        elif ev.reason == "idle" or self._waited(tr.command_ns):
            failure, when = "tls/timeout", None
            note = f"no answer to {what}"
        else:
            self.stats.cut_by_end += 1  # the capture ended too soon after the command
            return
        self._starttls_failure(ev.flow_id, ev.key, tr, failure, when, [note, *_summary_notes(
            ev.server, ev.client)], rst=info, client_bytes=ev.client.stream_bytes,
            server_bytes=ev.server.stream_bytes, end=ev)

    def _starttls_failure(self, fid: int, key: FlowKey, tr: StartTlsTracker, failure: str,
                          when: int | None, notes: list[str], *, rst: RstInfo | None = None,
                          client_bytes: int = 0, server_bytes: int = 0,
                          end: FlowEnd | None = None) -> None:
        """The observation of a STARTTLS that led to no TLS (its time: the command's)."""
        self.stats.starttls_failed += 1
        t = tr.command_ns if tr.command_ns is not None else (when or 0)
        self._emit(FlowObservation(
            key=key, first_packet_ns=self._starts.get(fid, t), time_ns=t,
            failure=failure, dns_name=self._name_of(key.server_ip),
            handshake_ms=_ms(tr.command_ns, when), rst=rst, anomalies=tuple(notes),
            client_bytes=client_bytes, server_bytes=server_bytes, starttls=tr.protocol,
            connect_ms=self._connect_ms(fid, end)))

    # -- DNS -------------------------------------------------------------------------------

    def _datagram(self, ts: int, p: PacketTuple) -> None:
        sport, dport = p[5], p[6]
        payload = p[11]
        if p[2] == _UDP and payload and payload[0] & 0x80 and sport != _DNS_PORT \
                and dport != _DNS_PORT:
            self._quic_datagram(ts, p)  # a QUIC long header, whatever the port
            return
        if sport != _DNS_PORT and dport != _DNS_PORT:
            return
        if self.reader.share is not None and not self.reader.owns(p):
            self._dns_names_only(payload)  # another process reports it: only learn names
            return
        self._dns_message(ts, p[0], sport, p[1], dport, payload, "udp")

    def _dns_names_only(self, wire: bytes) -> None:
        """An answer another process reports: only the names it gives matter here (for
        flows without SNI), so it is parsed when a name is looked up, if ever."""
        if len(wire) < 12 or not wire[2] & 0x80:
            return
        pending = self._unparsed
        pending.append(wire)
        if len(pending) > _MAX_UNPARSED:
            self._parse_pending()

    def _parse_pending(self) -> None:
        pending, self._unparsed = self._unparsed, []
        for wire in pending:  # (in capture order: a later answer's name wins, as it would)
            if _question_type(wire) in _ADDRESS_TYPES:
                parsed = parse_answer(wire)
                if isinstance(parsed, DnsAnswer):
                    self._learn_names(parsed.qname, parsed.answers)

    def _name_of(self, ip: str) -> str | None:
        """The name a DNS answer seen so far gave for ``ip``."""
        if self._unparsed:
            self._parse_pending()
        return self._names.get(ip)

    def _dns_tcp_data(self, ev: Data) -> None:
        """Bytes of a DNS-over-TCP connection: each complete message like a UDP one."""
        fid = ev.flow_id
        streams = self._dns_tcp.get(fid)
        if streams is None:
            if fid in self._done:
                return
            streams = self._dns_tcp[fid] = (DnsTcpStream(), DnsTcpStream())
        stream = streams[ev.side]
        key = ev.key
        if ev.side == Side.CLIENT:
            src, sport, dst, dport = key.client_ip, key.client_port, key.server_ip, key.server_port
        else:
            src, sport, dst, dport = key.server_ip, key.server_port, key.client_ip, key.client_port
        for wire in stream.feed(ev.offset, ev.data):
            self._dns_message(ev.ts_ns, src, sport, dst, dport, wire, "tcp")
        if streams[0].messages + streams[1].messages >= MAX_DNS_TCP_MESSAGES:
            self.own_anomalies["dns_tcp_capped"] += 1
            del self._dns_tcp[fid]
            self._done.add(fid)  # (bytes queued before the skip must not restart it)
            self.reader.skip(fid)

    def _learn_names(self, qname: str, answers: tuple[str, ...]) -> None:
        names = self._names
        for a in answers:
            names[a] = qname
            names.move_to_end(a)
            if len(names) > _MAX_NAMES:
                names.popitem(last=False)

    def _dns_message(self, ts: int, src_ip: bytes | str, sport: int, dst_ip: bytes | str,
                     dport: int, wire: bytes, transport: str) -> None:
        """One DNS message, over UDP or TCP; addresses packed (UDP) or as text (TCP)."""
        if len(wire) < 12:
            self.own_anomalies["dns_malformed"] += 1
            return
        if not wire[2] & 0x80:
            # A query: only its id and time matter (no full parse: half the DNS cost).
            if dport == _DNS_PORT:
                q = self._queries
                q[(_text(src_ip), sport, _text(dst_ip), wire[0] << 8 | wire[1])] = ts
                if len(q) > _MAX_PENDING_QUERIES:
                    q.popitem(last=False)
            return
        if sport != _DNS_PORT or _question_type(wire) not in _ADDRESS_TYPES:
            return
        parsed = parse_answer(wire)
        if parsed == MALFORMED:
            # Hostile or cut bytes are data (a counted anomaly), never an exception.
            self.own_anomalies["dns_malformed"] += 1
            return
        if not isinstance(parsed, DnsAnswer):
            return
        src, dst = _text(src_ip), _text(dst_ip)
        key = (dst, dport, src, wire[0] << 8 | wire[1])
        notes: list[str] = []
        sent = self._queries.pop(key, None)
        earlier = self._answered.get(key)
        if earlier is not None:
            # Two answers to one query: an on-path injector racing the resolver.
            notes.append(f"another answer to the same query came "
                         f"{(ts - earlier[0]) / _NS_PER_MS:.3f} ms earlier")
            sent = earlier[1]
        elif sent is None:
            sent = ts
            notes.append("the query was not in the capture")
        self._answered[key] = (ts, sent)
        if len(self._answered) > _MAX_PENDING_QUERIES:
            self._answered.popitem(last=False)
        qname, answers = parsed.qname, parsed.answers
        self._learn_names(qname, answers)
        self.stats.dns_answers += 1
        if transport == "tcp":
            self.stats.dns_tcp_answers += 1
        self._emit(DnsObservation(
            flow=Flow(dst, dport, src, sport, transport), first_packet_ns=sent, time_ns=ts,
            qname=qname, qtype=parsed.qtype, rcode=parsed.rcode, answers=answers,
            dns_ms=_ms(sent, ts) if sent != ts else None, anomalies=tuple(notes)))


def _text(ip: bytes | str) -> str:
    return ip if isinstance(ip, str) else ip_to_str(ip)


def _question_type(wire: bytes) -> int | None:
    """The QTYPE of a message's only question, read from the wire without parsing the rest
    (None: not exactly one question, or a malformed name; dnspython then decides)."""
    if wire[4] << 8 | wire[5] != 1:
        return None
    i, n = 12, len(wire)
    while i < n:
        label = wire[i]
        if label == 0:
            return wire[i + 1] << 8 | wire[i + 2] if i + 3 <= n else None
        if label & 0xC0:  # compression in the question: unusual, let dnspython parse it
            return None
        i += 1 + label
    return None


def observe_capture(source: str | os.PathLike[str] | BinaryIO,
                    config: FlowConfig | None = None) -> tuple[list[Observation],
                                                               CaptureObserver]:
    """Every observation of a capture as a list (small files, tests) and the observer."""
    out: list[Observation] = []
    obs = CaptureObserver(source, out.append, config=config)
    try:
        obs.run()
    finally:
        obs.close()
    return out, obs

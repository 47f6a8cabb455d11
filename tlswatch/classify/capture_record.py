"""Turn a capture's observation into a judged ``tlswatch/1`` record (``source: "pcap"``).

The capture layer only observes (:mod:`tlswatch.capture.observe`); here what it saw meets the
chain engine and the verdict table, as :mod:`tlswatch.classify.probe_record` does for probes.
A capture has no control measurement, so the table's no-control column applies. Chains are
judged **at the handshake's time** (the ClientHello packet), against the stores the caller's
:class:`~tlswatch.classify.chain.ChainJudge` holds (``None`` = ``auto``: the Mozilla snapshot
nearest before that time).

Which finding is the outcome of a flow:

1. a TCP-level failure (``tcp/timeout``, ``refused``, ``reset``): that failure;
2. a cleartext chain: its ``cert/...`` outcome, unless the handshake then failed on the
   server's side *and* the chain is trusted (an injected RST after a valid certificate is
   the finding then; an interception chain stays the finding whatever followed);
3. a failure without a chain: the failure (``tls/...``); a non-TLS answer that matches a
   known blockpage becomes ``http/blockpage:<id>`` (or ``http/server_side:<id>``);
4. otherwise ``cert/no_chain``, with the reason: TLS 1.3 encrypts the certificate (a key log
   is needed), a resumed session sends none, or the capture misses handshake bytes.

What a key log did is one more reason (:func:`keylog_reason`): a TLS 1.3 chain decrypted with
it (judged like any other), a key log that did not decrypt the handshake (wrong secrets:
the chain stays encrypted), no secret for the session, or a TLS 1.2 master secret recorded.

DNS answers become records only when they show something wrong (:func:`dns_failure`):
NXDOMAIN, SERVFAIL, REFUSED, an A question answered with no address, or only bogon addresses
(``0.0.0.0``, private, loopback ... as :func:`tlswatch.bogons.bogon_kind` says; the
documentation ranges of RFC 5737/3849 are not bogons here: examples use them). A normal
answer has no ``dns/...`` outcome that the verdict table would call ``ok``, so it gives no
record (the caller counts it).

Record ids are :func:`tlswatch.ids.record_id` of source ``pcap``, the flow (as written,
i.e. after any pseudonymisation), the capture file's SHA-256 and the flow's first packet
time (DNS: the query's, plus the answer's time, since one query may get several answers).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from tlswatch.bogons import DEFAULT_BOGONS, BogonKind, bogon_kind
from tlswatch.capture.observe import DnsObservation, FlowObservation, Observation
from tlswatch.classify.blockpages import BlockpageMatch, match_blockpage
from tlswatch.classify.chain import ChainJudge, ChainJudgement
from tlswatch.classify.rules import Decision, Seen, classify
from tlswatch.failures import CertOutcome, DnsFailure, HttpFailure, QuicOutcome, Stage, outcome
from tlswatch.html_title import extract_title
from tlswatch.ids import record_id
from tlswatch.model import (
    DnsInfo,
    Flow,
    HttpInfo,
    Interception,
    Record,
    Target,
    TcpInfo,
    TlsInfo,
    Vantage,
    rfc3339,
)

if TYPE_CHECKING:
    from tlswatch.quic.observe import QuicFlowObservation

__all__ = [
    "DECRYPTED_REASON",
    "ENCRYPTED_CHAIN_REASON",
    "KEYLOG_FAILED_REASON",
    "NO_KEY_REASON",
    "STARTTLS_REASON",
    "capture_record",
    "cipher_name",
    "dns_failure",
    "keylog_reason",
    "ns_to_datetime",
    "version_name",
]

ENCRYPTED_CHAIN_REASON: Final = "TLS 1.3: the certificate is encrypted; a key log is needed"
DECRYPTED_REASON: Final = "TLS 1.3: the handshake was decrypted with a key log"
KEYLOG_FAILED_REASON: Final = "the key log did not decrypt the handshake"
NO_KEY_REASON: Final = "the key log(s) hold no secret for this session's client random"
_TLS12_KEY_REASON: Final = ("the key log holds this session's TLS 1.2 master secret "
                            "(CLIENT_RANDOM); the chain was in cleartext")
_RESUMED_REASON: Final = "TLS session resumed: the server sent no certificate"
_GAP_REASON: Final = "handshake bytes are missing from the capture: the chain cannot be read"
_NO_CHAIN_REASON: Final = "the capture shows no certificate for this handshake"

_VERSION_NAMES: Final[dict[int, str]] = {  # the probe's names (OpenSSL's), for one vocabulary
    0x0300: "SSLv3",
    0x0301: "TLSv1",
    0x0302: "TLSv1.1",
    0x0303: "TLSv1.2",
    0x0304: "TLSv1.3",
}
_STATUS_RE: Final = re.compile(rb"HTTP/\d(?:\.\d)? +(\d{3})")
# Documentation ranges (RFC 5737, RFC 3849) stand for public servers in examples and in
# synthesized captures (captures/ uses them); Python calls them private, but no censor is
# known to answer with them, so here they are never bogons.
_DOCUMENTATION: Final = tuple(ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))
_RCODE_FAILURE: Final[dict[str, DnsFailure]] = {
    "NXDOMAIN": DnsFailure.NXDOMAIN,
    "SERVFAIL": DnsFailure.SERVFAIL,
    "REFUSED": DnsFailure.REFUSED,
}

Pseudonym = Callable[[str], str]


def version_name(version: int | None) -> str | None:
    return None if version is None else _VERSION_NAMES.get(version, f"0x{version:04x}")


@lru_cache(maxsize=1)
def _cipher_names() -> dict[int, str]:
    # OpenSSL's names, as the probe reports them (pyOpenSSL's get_cipher_name()).
    import ssl  # (here: captures without TLS never need it)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with contextlib.suppress(ssl.SSLError):  # an OpenSSL without SECLEVEL: its defaults
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    return {c["id"] & 0xFFFF: c["name"] for c in ctx.get_ciphers()}


def cipher_name(code: int | None) -> str | None:
    """OpenSSL's name of a cipher suite (as in probe records), else ``0xNNNN``."""
    if code is None:
        return None
    return _cipher_names().get(code, f"0x{code:04x}")


def ns_to_datetime(ns: int) -> datetime:
    """Integer ns since the epoch -> aware UTC datetime (microsecond precision, no float)."""
    sec, rest = divmod(ns, 1_000_000_000)
    return _EPOCH + timedelta(seconds=sec, microseconds=rest // 1000)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=1024)
def _decide(seen: Seen) -> Decision:
    """The table's verdict without a control (a pure function of what was seen: the few
    distinct findings of a capture are looked up once each)."""
    return classify(seen, None)


def dns_failure(obs: DnsObservation, bogons: frozenset[BogonKind] | None = None) -> str | None:
    """The ``dns/...`` outcome of an answer, or None when nothing is wrong with it.

    ``bogons``: the bogon classes that count (default: the probe's ``DEFAULT_BOGONS``).
    """
    if bogons is None:
        bogons = DEFAULT_BOGONS
    if obs.rcode in _RCODE_FAILURE:
        return outcome(Stage.DNS, _RCODE_FAILURE[obs.rcode])
    if obs.rcode != "NOERROR":
        return outcome(Stage.DNS, DnsFailure.SERVFAIL)  # as the probe names other rcodes
    if not obs.answers:
        # An empty AAAA answer is what every IPv4-only name gives: only A counts.
        return outcome(Stage.DNS, DnsFailure.NO_ANSWER) if obs.qtype == "A" else None
    kinds = [None if _documentation(a) else bogon_kind(a, bogons) for a in obs.answers]
    if all(k is not None for k in kinds):
        return outcome(Stage.DNS, DnsFailure.BOGON, kinds[0])
    return None


def _documentation(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == net.version and ip in net for net in _DOCUMENTATION)


def _http_from_prefix(prefix: bytes, bp: BlockpageMatch | None) -> HttpInfo | None:
    """Status and title of a non-TLS answer that is HTTP (the first bytes only: no hash)."""
    m = _STATUS_RE.match(prefix)
    if m is None:
        return HttpInfo(blockpage=bp.id) if bp else None
    return HttpInfo(status=int(m.group(1)), title=extract_title(prefix),
                    blockpage=bp.id if bp else None)


#: Reason on the record of a flow that asked for TLS in a plaintext dialogue first.
STARTTLS_REASON: Final = "the flow asked for TLS with STARTTLS after a plaintext dialogue"


def keylog_reason(obs: FlowObservation | QuicFlowObservation) -> str | None:
    """The reason that says what a key log did for a flow (None: no key log involved)."""
    state = obs.keylog
    if state is None:
        return None
    if state == "decrypted":
        return DECRYPTED_REASON
    if state == "decrypt_failed":
        return f"{KEYLOG_FAILED_REASON} ({obs.keylog_detail}): wrong secrets for this session?"
    if state == "no_key":
        return NO_KEY_REASON
    if state == "tls12_master_secret":
        return _TLS12_KEY_REASON
    why = f": {obs.keylog_detail}" if obs.keylog_detail else ""
    return f"key log: the handshake's decryption stopped ({state}){why}"


def _flow_outcome(obs: FlowObservation, chain: ChainJudgement | None,
                  bp: BlockpageMatch | None) -> tuple[str, tuple[str, ...]]:
    """(outcome, extra reasons) of a TCP flow; the rules are in the module doc."""
    failure = obs.failure
    if failure is not None and failure.startswith("tcp/"):
        return failure, ()
    if bp is not None:
        cls = HttpFailure.BLOCKPAGE if bp.kind == "blockpage" else HttpFailure.SERVER_SIDE
        return outcome(Stage.HTTP, cls, bp.id), ("the server's answer was not TLS",)
    if chain is not None:
        if failure is None or obs.handshake_complete or not chain.trusted:
            extra = (f"then the handshake failed ({failure})",) if failure else ()
            return chain.outcome, extra
        return failure, ("the handshake failed after a trusted chain was shown",)
    if failure is not None:
        return failure, ()
    if obs.chain_encrypted:
        why = ENCRYPTED_CHAIN_REASON
    elif obs.resumed:
        why = _RESUMED_REASON
    elif obs.bytes_missing:
        why = _GAP_REASON
    else:
        why = _NO_CHAIN_REASON
    return outcome(Stage.CERT, CertOutcome.NO_CHAIN), (why,)


def _flow_record(obs: FlowObservation, judge: ChainJudge, *, run_id: str, file_sha256: str,
                 vantage: Vantage | None, pseudonym: Pseudonym | None) -> tuple[Record, Decision]:
    key = obs.key
    flow = obs.flow
    if pseudonym is not None:
        flow = replace(flow, client_ip=pseudonym(flow.client_ip))
    at = ns_to_datetime(obs.time_ns)
    chain = judge.judge(obs.chain_der, host=obs.sni, at=at) if obs.chain_der else None
    bp = None
    if obs.failure == "tls/not_tls" and obs.non_tls_prefix:
        bp = match_blockpage(None, obs.non_tls_prefix)
    out, extra = _flow_outcome(obs, chain, bp)
    key_reason = keylog_reason(obs)
    if key_reason is not None:
        extra += (key_reason,)
    if obs.starttls is not None:
        extra += (f"{STARTTLS_REASON} ({obs.starttls})",)
    chain_is_finding = chain is not None and out == chain.outcome
    server_side = bp is not None and bp.kind != "blockpage"
    decision = _decide(Seen(
        out, chain.evidence if chain_is_finding and chain is not None else None,
        blockpage=bp.id if bp is not None and not server_side else None,
        server_side=bp.id if bp is not None and server_side else None,
        chain_trusted=bool(chain is not None and chain.trusted and chain_is_finding),
    ))
    tcp_failure = obs.failure if obs.failure and obs.failure.startswith("tcp/") else None
    tls = None
    if tcp_failure is None:
        tls = TlsInfo(
            version=version_name(obs.version), cipher=cipher_name(obs.cipher), alpn=obs.alpn,
            alert=obs.server_alert, failure=obs.failure, history=obs.history or None,
            ja3=obs.ja3, ja3s=obs.ja3s, ja4=obs.ja4, handshake_ms=obs.handshake_ms,
            bytes_read=obs.server_bytes)
    tcp = TcpInfo(failure=tcp_failure, connect_ms=obs.connect_ms, rst=obs.rst) \
        if tcp_failure or obs.rst or obs.connect_ms is not None else None
    rec = Record(
        id=record_id(source="pcap", flow=flow, file_sha256=file_sha256,
                     first_packet_ns=obs.first_packet_ns),
        run_id=run_id, source="pcap", time=rfc3339(at),
        target=Target(domain=obs.sni or obs.dns_name, sni=obs.sni, ip=key.server_ip,
                      port=key.server_port),
        vantage=vantage or Vantage(), flow=flow, tcp=tcp, tls=tls,
        http=_http_from_prefix(obs.non_tls_prefix, bp) if obs.non_tls_prefix else None,
        chain=chain.chain if chain else (),
        validation=chain.validation if chain else (),
        interception=chain.interception if chain else Interception(matched=False),
        verdict=decision.verdict.value, outcome=decision.outcome,
        confidence=decision.confidence, rule_id=decision.rule_id,
        rules_version=decision.rules_version, reasons=decision.reasons + extra,
        anomalies=obs.anomalies + (chain.anomalies if chain else ()),
    )
    return rec, decision


def _dns_record(obs: DnsObservation, failure: str, *, run_id: str, file_sha256: str,
                vantage: Vantage | None, pseudonym: Pseudonym | None) -> tuple[Record, Decision]:
    flow = obs.flow
    if pseudonym is not None:
        flow = replace(flow, client_ip=pseudonym(flow.client_ip))
    decision = _decide(Seen(failure))
    resolver = flow.server_ip
    label = f"[{resolver}]:{flow.server_port}" if ":" in resolver else \
        f"{resolver}:{flow.server_port}"
    rec = Record(
        id=record_id(source="pcap", flow=flow, file_sha256=file_sha256,
                     first_packet_ns=obs.first_packet_ns, extra=f"dns@{obs.time_ns}"),
        run_id=run_id, source="pcap", time=rfc3339(ns_to_datetime(obs.time_ns)),
        target=Target(domain=obs.qname), vantage=vantage or Vantage(), flow=flow,
        dns=DnsInfo(label, obs.answers, failure, obs.rcode),
        verdict=decision.verdict.value, outcome=decision.outcome,
        confidence=decision.confidence, rule_id=decision.rule_id,
        rules_version=decision.rules_version, reasons=decision.reasons,
        anomalies=obs.anomalies,
    )
    return rec, decision


QUIC_ENCRYPTED_CHAIN_REASON: Final = (
    "QUIC: the server's certificate travels in encrypted Handshake packets; a key log is "
    "needed to see it")
_QUIC_VERSIONS: Final = {0x00000001: "QUICv1", 0x6B3343CF: "QUICv2"}


def _quic_record(obs: QuicFlowObservation, judge: ChainJudge, *, run_id: str,
                 file_sha256: str, vantage: Vantage | None, pseudonym: Pseudonym | None,
                 ) -> tuple[Record, Decision]:
    """A QUIC flow: what its Initials show, and with a key log its Handshake packets.

    A chain read from decrypted Handshake packets is judged like a TCP flow's (at the
    ClientHello's time; the connection's closing after a trusted chain is the finding then).
    Otherwise, if the server answered (ServerHello, Retry, other Initials) the chain is
    encrypted, like TLS 1.3 without keys; if it did not, the quic/* failure is the finding.
    """
    flow = Flow(obs.client, obs.client_port, obs.server, obs.server_port, "udp")
    if pseudonym is not None:
        flow = replace(flow, client_ip=pseudonym(flow.client_ip))
    at = ns_to_datetime(obs.first_ts_ns)
    cls, _, detail = obs.outcome.removeprefix("quic/").partition(":")
    kind = QuicOutcome(cls) if cls in QuicOutcome.__members__.values() \
        else QuicOutcome.SERVER_RESPONSE
    answered = kind in (QuicOutcome.HANDSHAKE, QuicOutcome.RETRY, QuicOutcome.SERVER_RESPONSE)
    failure = None if answered else outcome(Stage.QUIC, kind, detail or None)
    chain = judge.judge(obs.chain_der, host=obs.sni, at=at) if obs.chain_der else None
    extra: tuple[str, ...] = ()
    if chain is not None and (failure is None or not chain.trusted):
        seen = chain.outcome
        if failure is not None:
            extra = (f"then the connection was closed ({failure})",)
    elif chain is not None:
        seen = failure or chain.outcome
        extra = ("the connection was closed after a trusted chain was shown",)
    elif answered:
        seen = outcome(Stage.CERT, CertOutcome.NO_CHAIN)
        extra = (QUIC_ENCRYPTED_CHAIN_REASON,)
    else:
        seen = failure or outcome(Stage.CERT, CertOutcome.NO_CHAIN)
    chain_is_finding = chain is not None and seen == chain.outcome
    decision = _decide(Seen(
        seen, chain.evidence if chain_is_finding and chain is not None else None,
        chain_trusted=bool(chain is not None and chain.trusted and chain_is_finding)))
    key_reason = keylog_reason(obs)
    # The rule's reasons first, notes after (as for TCP flows: rejudge keeps the notes).
    reasons = (*decision.reasons, *extra, f"QUIC outcome: {obs.outcome}",
               *((key_reason,) if key_reason is not None else ()))
    version = _QUIC_VERSIONS.get(obs.versions[0]) if obs.versions else None
    alpn = obs.server_alpn if obs.server_alpn is not None else (
        obs.alpn[0] if obs.alpn else None)
    rec = Record(
        id=record_id(source="pcap", flow=flow, file_sha256=file_sha256,
                     first_packet_ns=obs.first_ts_ns, extra="quic"),
        run_id=run_id, source="pcap", time=rfc3339(at),
        target=Target(domain=obs.sni, sni=obs.sni, ip=obs.server, port=obs.server_port),
        vantage=vantage or Vantage(), flow=flow,
        tls=TlsInfo(version=version, cipher=cipher_name(obs.cipher), alpn=alpn, ja4=obs.ja4,
                    failure=failure),
        chain=chain.chain if chain else (),
        validation=chain.validation if chain else (),
        interception=chain.interception if chain else Interception(matched=False),
        verdict=decision.verdict.value, outcome=decision.outcome,
        confidence=decision.confidence, rule_id=decision.rule_id,
        rules_version=decision.rules_version, reasons=reasons,
        anomalies=tuple(obs.anomalies) + (chain.anomalies if chain else ()),
    )
    return rec, decision


def capture_record(obs: Observation, judge: ChainJudge, *, run_id: str, file_sha256: str,
                   vantage: Vantage | None = None, pseudonym: Pseudonym | None = None,
                   bogons: frozenset[BogonKind] | None = None,
                   ) -> tuple[Record, Decision] | None:
    """The judged record of one observation; None for a DNS answer with nothing wrong.

    ``pseudonym`` replaces the client address (``--anonymize``) before the id is computed,
    so ids never hash a real client address and stay stable across runs with one key.
    """
    if isinstance(obs, FlowObservation):
        return _flow_record(obs, judge, run_id=run_id, file_sha256=file_sha256,
                            vantage=vantage, pseudonym=pseudonym)
    if isinstance(obs, DnsObservation):
        failure = dns_failure(obs, bogons)
        if failure is None:
            return None
        return _dns_record(obs, failure, run_id=run_id, file_sha256=file_sha256,
                           vantage=vantage, pseudonym=pseudonym)
    # (QUIC last: its module is loaded only for captures with QUIC packets)
    return _quic_record(obs, judge, run_id=run_id, file_sha256=file_sha256, vantage=vantage,
                        pseudonym=pseudonym)

"""STARTTLS in captures: real SMTP/IMAP/POP3/FTP dialogues, then a real TLS 1.2 handshake on
the same flow (tlswatch.testing transcripts and pcap writer), and the ways it fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlswatch.capture.observe import FlowObservation, observe_capture
from tlswatch.capture.starttls import MAX_PLAINTEXT, StartTlsTracker, greeting_protocol
from tlswatch.classify.capture_record import STARTTLS_REASON, capture_record
from tlswatch.classify.chain import ChainJudge
from tlswatch.model import Vantage
from tlswatch.testing.certs import CertFactory
from tlswatch.testing.pcap_writer import Host, TcpFlow, pcap_bytes, replay
from tlswatch.testing.transcripts import Transcript, tls12_handshake
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import TrustStore

T0 = 1_564_660_800 * 1_000_000_000  # 2019-08-01T12:00:00Z, inside the factory's validity
CLIENT = Host("192.0.2.10", "02:00:00:00:00:01", ttl=64)
SERVER = Host("198.51.100.25", "02:00:00:00:00:02", ttl=52)

# (protocol, port, [(sender, line)] before the handshake; the last two lines: command, go-ahead)
DIALOGUES = {
    "smtp": (25, [("server", b"220 mx.example.org ESMTP ready\r\n"),
                  ("client", b"EHLO client.example\r\n"),
                  ("server", b"250-mx.example.org\r\n250-PIPELINING\r\n250 STARTTLS\r\n"),
                  ("client", b"STARTTLS\r\n"),
                  ("server", b"220 2.0.0 Ready to start TLS\r\n")]),
    "imap": (143, [("server", b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
                   ("client", b"a001 CAPABILITY\r\n"),
                   ("server", b"* CAPABILITY IMAP4rev1 STARTTLS\r\na001 OK done\r\n"),
                   ("client", b"a002 STARTTLS\r\n"),
                   ("server", b"a002 OK Begin TLS negotiation now\r\n")]),
    "pop3": (110, [("server", b"+OK POP3 server ready\r\n"),
                   ("client", b"CAPA\r\n"),
                   ("server", b"+OK\r\nSTLS\r\n.\r\n"),
                   ("client", b"STLS\r\n"),
                   ("server", b"+OK Begin TLS\r\n")]),
    "ftp": (21, [("server", b"220 FTP server ready\r\n"),
                 ("client", b"AUTH TLS\r\n"),
                 ("server", b"234 AUTH TLS OK.\r\n")]),
}


@pytest.fixture(scope="module")
def factory() -> CertFactory:
    return CertFactory(seed=7)


@pytest.fixture(scope="module")
def transcript(factory: CertFactory) -> Transcript:
    s = factory.legitimate("mx.example.org")
    assert s.leaf_key is not None
    return tls12_handshake(s.chain, s.leaf_key, sni="mx.example.org", seed=7, label="starttls")


class _Line:
    __slots__ = ("data", "sender")

    def __init__(self, sender: str, data: bytes) -> None:
        self.sender = sender
        self.data = data


def _capture(tmp_path: Path, port: int, lines: list[tuple[str, bytes]],
             transcript: Transcript | None, *, end: str = "close") -> Path:
    flow = TcpFlow(CLIENT, SERVER, client_port=40001, server_port=port, start_ns=T0)
    flow.connect()
    replay(flow, [_Line(s, d) for s, d in lines])
    if transcript is not None:
        replay(flow, transcript.flights)
    if end == "close":
        flow.close()
    elif end == "reset":  # an injected RST: TTL and IP ID unlike the server's
        flow.rst("server", delay=flow.server_reply_delay(), ttl=61, ip_id=0)
    elif end == "silence":
        flow.wait(30_000_000_000)
        flow.close()
    path = tmp_path / "starttls.pcap"
    path.write_bytes(pcap_bytes(flow.packets))
    return path


def _flow_obs(path: Path) -> FlowObservation:
    obs, _ = observe_capture(path)
    flows = [o for o in obs if isinstance(o, FlowObservation)]
    assert len(flows) == 1, obs
    return flows[0]


@pytest.mark.parametrize("proto", sorted(DIALOGUES))
def test_upgrade_is_followed_and_the_handshake_parsed(tmp_path: Path, transcript: Transcript,
                                                      proto: str) -> None:
    port, lines = DIALOGUES[proto]
    o = _flow_obs(_capture(tmp_path, port, lines, transcript))
    assert o.starttls == proto
    assert o.failure is None and o.handshake_complete
    assert o.sni == "mx.example.org" and o.client_hello
    assert o.version == 0x0303
    ders = next(f.data for f in transcript.flights if f.sender == "server")
    assert o.chain_der and o.chain_der[0] in ders  # the leaf, as presented
    plain = sum(len(d) for s, d in lines if s == "client")
    assert o.client_bytes > plain  # offsets count the whole stream, plaintext included


def test_the_upgraded_flow_is_judged_like_any_other(tmp_path: Path, transcript: Transcript,
                                                     factory: CertFactory) -> None:
    port, lines = DIALOGUES["smtp"]
    o = _flow_obs(_capture(tmp_path, port, lines, transcript))
    s = factory.legitimate("mx.example.org")
    store = TrustStore("test", "1", None, "test", tuple(s.roots))
    judge = ChainJudge([store], load_registry())
    out = capture_record(o, judge, run_id="r", file_sha256="0" * 64,
                         vantage=Vantage(name="t", kind="capture"))
    assert out is not None
    rec = out[0]
    assert rec.outcome == "cert/valid" and rec.verdict == "ok"
    assert f"{STARTTLS_REASON} (smtp)" in rec.reasons


def test_refused_starttls_is_the_finding(tmp_path: Path) -> None:
    lines = [("server", b"220 mx ESMTP\r\n"), ("client", b"EHLO c\r\n"),
             ("server", b"250 mx\r\n"), ("client", b"STARTTLS\r\n"),
             ("server", b"454 4.7.0 TLS not available due to local problem\r\n"),
             ("client", b"QUIT\r\n"), ("server", b"221 bye\r\n")]
    o = _flow_obs(_capture(tmp_path, 25, lines, None))
    assert o.failure == "tls/failed:starttls_refused"
    assert o.starttls == "smtp" and not o.client_hello
    assert any("454 4.7.0 TLS not available" in a for a in o.anomalies)
    assert o.handshake_ms is not None and o.handshake_ms > 0


def test_imap_refusal_by_tag(tmp_path: Path) -> None:
    lines = [("server", b"* OK ready\r\n"), ("client", b"a1 STARTTLS\r\n"),
             ("server", b"* BYE not now\r\na1 NO [UNAVAILABLE] no TLS today\r\n")]
    o = _flow_obs(_capture(tmp_path, 143, lines, None))
    assert o.failure == "tls/failed:starttls_refused" and o.starttls == "imap"


def test_reset_right_after_starttls(tmp_path: Path) -> None:
    lines = [("server", b"+OK ready\r\n"), ("client", b"STLS\r\n")]
    o = _flow_obs(_capture(tmp_path, 110, lines, None, end="reset"))
    assert o.failure == "tls/reset" and o.starttls == "pop3"
    assert o.rst is not None and "ip_id_zero" in o.rst.injected_evidence
    assert any("reset right after" in a for a in o.anomalies)


def test_unanswered_starttls_is_a_timeout(tmp_path: Path) -> None:
    lines = [("server", b"220 mx ESMTP\r\n"), ("client", b"STARTTLS\r\n")]
    o = _flow_obs(_capture(tmp_path, 25, lines, None, end="silence"))
    assert o.failure == "tls/timeout" and o.starttls == "smtp"


def test_plain_dialogue_without_starttls_gives_nothing(tmp_path: Path) -> None:
    lines = [("server", b"220 mx ESMTP\r\n"), ("client", b"EHLO c\r\n"),
             ("server", b"250 mx\r\n"), ("client", b"QUIT\r\n"), ("server", b"221 bye\r\n")]
    obs, observer = observe_capture(_capture(tmp_path, 25, lines, None))
    assert obs == [] and observer.stats.starttls == observer.stats.starttls_failed == 0


def test_other_server_first_protocols_are_not_followed() -> None:
    assert greeting_protocol(b"SSH-2.0-OpenSSH_9.6\r\n") is None
    assert greeting_protocol(b"HTTP/1.1 200 OK\r\n") is None
    assert greeting_protocol(b"220 ready") == "smtp/ftp"
    assert greeting_protocol(b"* PREAUTH hi") == "imap"


def test_tracker_is_bounded() -> None:
    t = StartTlsTracker("smtp/ftp")
    t.feed(True, 0, b"220 hi\r\n", 1)
    t.feed(False, 0, b"X" * 2000, 2)  # a line over MAX_LINE: not a dialogue we follow
    assert t.done and not t.upgraded and t.refusal is None
    t = StartTlsTracker("pop3")
    off = 0
    for i in range(MAX_PLAINTEXT // 10 + 1):
        t.feed(False, off, b"NOOP    \r\n", i)
        off += 10
    assert t.done and not t.upgraded


def test_tracker_split_lines_and_early_client_bytes() -> None:
    t = StartTlsTracker("smtp/ftp")
    for i, b in enumerate(b"220 mx\r\n"):
        t.feed(True, i, bytes([b]), i)
    t.feed(False, 0, b"STARTT", 10)
    t.feed(False, 6, b"LS\r\n\x16\x03\x01", 11)  # a client that did not wait
    assert t.waiting and t.client_tls_offset == 10 and bytes(t.early_client) == b"\x16\x03\x01"
    t.feed(True, 8, b"220-a\r\n220 go\r\n", 12)
    assert t.done and t.upgraded and t.protocol == "smtp" and t.server_tls_offset == 23

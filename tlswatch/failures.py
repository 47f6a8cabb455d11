"""The outcome vocabulary: verdicts and ``stage/class[:detail]`` outcomes, in one place.

Every string a record may carry in ``verdict`` or ``outcome`` is defined here and
documented in ``docs/verdicts.md``. Details taken from peers (an issuer's CN, an alert
name we do not know) pass through :func:`peer_detail` so they stay short and printable.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CertOutcome",
    "DnsFailure",
    "HttpFailure",
    "QuicOutcome",
    "SetupFailure",
    "Stage",
    "TcpFailure",
    "TlsFailure",
    "Verdict",
    "outcome",
    "outcome_class",
    "peer_detail",
]

MAX_DETAIL = 64


class Verdict(StrEnum):
    """Is the network interfering? (DESIGN.md §4)"""

    OK = "ok"
    INTERCEPTED = "intercepted"
    BLOCKED = "blocked"
    ANOMALY = "anomaly"
    DOWN = "down"
    INCONCLUSIVE = "inconclusive"


class Stage(StrEnum):
    DNS = "dns"
    TCP = "tcp"
    TLS = "tls"
    CERT = "cert"
    HTTP = "http"
    QUIC = "quic"
    SETUP = "setup"


class DnsFailure(StrEnum):
    NXDOMAIN = "nxdomain"
    NO_ANSWER = "no_answer"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    BOGON = "bogon"  # detail: private | loopback | zero
    INCONSISTENT = "inconsistent"  # vs the control resolver


class TcpFailure(StrEnum):
    REFUSED = "refused"
    RESET = "reset"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"


class TlsFailure(StrEnum):
    RESET = "reset"  # after our ClientHello
    TIMEOUT = "timeout"  # no ServerHello in time
    EOF = "eof"
    ALERT = "alert"  # detail: the alert's name
    NOT_TLS = "not_tls"  # e.g. an HTTP blockpage on 443
    OVERSIZED = "oversized"  # the handshake exceeded our byte cap
    FAILED = "failed"


class CertOutcome(StrEnum):
    VALID = "valid"
    KNOWN_INTERCEPTION_CA = "known_interception_ca"  # detail: registry label
    FORGERY_PATTERN = "forgery_pattern"
    UNTRUSTED_ROOT = "untrusted_root"  # detail: the anchor's CN
    SELF_SIGNED = "self_signed"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    INCOMPLETE_CHAIN = "incomplete_chain"
    STORE_DISAGREEMENT = "store_disagreement"
    MISMATCH_VS_CONTROL = "mismatch_vs_control"
    POLICY_VIOLATION = "policy_violation"
    INVALID = "invalid"
    NO_CHAIN = "no_chain"


class QuicOutcome(StrEnum):
    """What a QUIC flow's Initial packets show (captures; the handshake itself is encrypted)."""

    NO_RESPONSE = "no_response"  # client Initials, nothing back
    VERSION_NEGOTIATION = "version_negotiation"
    CONNECTION_CLOSE = "connection_close"  # detail: the error (e.g. crypto_error:...)
    RETRY = "retry"
    SERVER_RESPONSE = "server_response"  # server datagrams, none of them a readable Initial
    HANDSHAKE = "handshake"  # a ServerHello came back: not a failure


class HttpFailure(StrEnum):
    BLOCKPAGE = "blockpage"  # detail: fingerprint id
    SERVER_SIDE = "server_side"  # the site itself refuses us (CDN captcha, 403/451 geo-block)
    FAILED = "failed"


class SetupFailure(StrEnum):
    INVALID_INPUT = "invalid_input"
    CONTROL_FAILED = "control_failed"
    CAPTIVE_PORTAL = "captive_portal"
    SYSTEM_FAILURE = "system_failure"


def peer_detail(text: str) -> str:
    """Cut a peer-supplied detail to 64 printable ASCII characters (no ':' or '/')."""
    cleaned = "".join(c if c.isprintable() and c.isascii() and c not in ":/" else "_" for c in text)
    return cleaned[:MAX_DETAIL]


def outcome(stage: Stage, cls: StrEnum, detail: str | None = None) -> str:
    """Build ``stage/class[:detail]``; the detail is always sanitised."""
    base = f"{stage.value}/{cls.value}"
    return f"{base}:{peer_detail(detail)}" if detail else base


def outcome_class(value: str) -> str:
    """``stage/class`` without the detail: the only form allowed as a metrics label."""
    return value.split(":", 1)[0]

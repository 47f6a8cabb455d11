"""Both directions of one connection, the handshake history string and summary facts.

History letters (in the spirit of Zeek's ``ssl_history``): upper case = client, lower case =
server, in arrival order as fed.

====  ==========================================  ====  ===================================
C     client_hello                                 S     server_hello
H     hello_retry_request                          X     certificate (compressed too)
K     server_key_exchange                          G     client_key_exchange
R     certificate_request                          N     server_hello_done
Y     certificate_verify                           F     finished
T     new_session_ticket                           U     certificate_status
O     encrypted_extensions                         Z     other handshake message
I     change_cipher_spec                           A     alert
D     opaque/encrypted records (a run of them      V     invalid (stream stopped parsing)
      from one side counts once)
E     end of stream (eof) of that side
====  ==========================================  ====  ===================================

Unlike Zeek, ``H`` is the HelloRetryRequest (Zeek uses ``J``), ``A`` is an alert (Zeek ``L``),
and the string is capped at :data:`MAX_HISTORY` characters (a trailing ``+`` marks the cap).
"""

from __future__ import annotations

from typing import Final

from .events import (
    AlertEvent,
    CertificateEvent,
    ChangeCipherSpecEvent,
    ClientHelloEvent,
    CompressedCertificateErrorEvent,
    EncryptedRecordEvent,
    EndOfStreamEvent,
    Event,
    HandshakeMessageEvent,
    HelloRetryRequestEvent,
    InvalidEvent,
    ServerHelloEvent,
)
from .fingerprints import ja3, ja3s, ja4
from .handshake import DEFAULT_MAX_MESSAGE_SIZE, HandshakeType
from .hello import ClientHello, ServerHello
from .parser import TLSParser

__all__ = ["HISTORY_LETTERS", "MAX_HISTORY", "TLSConnection", "history_letter"]

MAX_HISTORY: Final = 100

_HANDSHAKE_LETTERS: Final[dict[int, str]] = {
    HandshakeType.SERVER_KEY_EXCHANGE: "k",
    HandshakeType.CLIENT_KEY_EXCHANGE: "g",
    HandshakeType.CERTIFICATE_REQUEST: "r",
    HandshakeType.SERVER_HELLO_DONE: "n",
    HandshakeType.CERTIFICATE_VERIFY: "y",
    HandshakeType.FINISHED: "f",
    HandshakeType.NEW_SESSION_TICKET: "t",
    HandshakeType.CERTIFICATE_STATUS: "u",
    HandshakeType.ENCRYPTED_EXTENSIONS: "o",
}

HISTORY_LETTERS: Final[dict[str, str]] = {
    "c": "client_hello",
    "s": "server_hello",
    "h": "hello_retry_request",
    "x": "certificate",
    "k": "server_key_exchange",
    "g": "client_key_exchange",
    "r": "certificate_request",
    "n": "server_hello_done",
    "y": "certificate_verify",
    "f": "finished",
    "t": "new_session_ticket",
    "u": "certificate_status",
    "o": "encrypted_extensions",
    "z": "other_handshake",
    "i": "change_cipher_spec",
    "a": "alert",
    "d": "encrypted_records",
    "v": "invalid",
    "e": "end_of_stream",
}


def history_letter(event: Event, from_client: bool) -> str:
    """The history letter for one event (upper case when it came from the client)."""
    match event:
        case ClientHelloEvent():
            letter = "c"
        case ServerHelloEvent():
            letter = "s"
        case HelloRetryRequestEvent():
            letter = "h"
        case CertificateEvent() | CompressedCertificateErrorEvent():
            letter = "x"
        case HandshakeMessageEvent(msg_type=t):
            letter = _HANDSHAKE_LETTERS.get(t, "z")
        case ChangeCipherSpecEvent():
            letter = "i"
        case AlertEvent():
            letter = "a"
        case EncryptedRecordEvent():
            letter = "d"
        case InvalidEvent():
            letter = "v"
        case EndOfStreamEvent():
            letter = "e"
    return letter.upper() if from_client else letter


class TLSConnection:
    """Holds the client and server :class:`TLSParser` and what both sides revealed.

    Feed each side's bytes in the order they arrived; cross-direction knowledge (a TLS 1.3
    ServerHello means the client's later records are encrypted; after an HRR the client's
    CCS does not start encryption) is passed from one parser to the other here.
    """

    __slots__ = (
        "_history",
        "_last",
        "alerts",
        "certificates",
        "client",
        "client_hello",
        "hello_retry_request",
        "server",
        "server_hello",
    )

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.client = TLSParser("client", max_message_size=max_message_size)
        self.server = TLSParser("server", max_message_size=max_message_size)
        self.client_hello: ClientHello | None = None  # the last one (a second follows an HRR)
        self.server_hello: ServerHello | None = None
        self.hello_retry_request: ServerHello | None = None
        self.certificates: tuple[bytes, ...] | None = None  # server's, leaf first
        self.alerts: list[tuple[bool, AlertEvent]] = []  # (from_client, alert)
        self._history: list[str] = []
        self._last = ""

    def feed_client(self, data: bytes | bytearray | memoryview) -> list[Event]:
        return self._observe(self.client.feed(data), True)

    def feed_server(self, data: bytes | bytearray | memoryview) -> list[Event]:
        return self._observe(self.server.feed(data), False)

    def eof_client(self) -> list[Event]:
        return self._observe(self.client.eof(), True)

    def eof_server(self) -> list[Event]:
        return self._observe(self.server.eof(), False)

    @property
    def history(self) -> str:
        return "".join(self._history)

    @property
    def version(self) -> int | None:
        """Negotiated protocol version, once a ServerHello was seen."""
        return self.server_hello.version if self.server_hello else None

    @property
    def ja3(self) -> str | None:
        return ja3(self.client_hello) if self.client_hello else None

    @property
    def ja4(self) -> str | None:
        return ja4(self.client_hello) if self.client_hello else None

    @property
    def ja3s(self) -> str | None:
        return ja3s(self.server_hello) if self.server_hello else None

    def _observe(self, events: list[Event], from_client: bool) -> list[Event]:
        for ev in events:
            if isinstance(ev, ClientHelloEvent) and from_client:
                self.client_hello = ev.hello
            elif isinstance(ev, HelloRetryRequestEvent) and not from_client:
                self.hello_retry_request = ev.hello
                # TLS 1.3: the client's compatibility CCS precedes a cleartext second hello.
                self.client.ccs_starts_encryption = False
            elif isinstance(ev, ServerHelloEvent) and not from_client:
                self.server_hello = ev.hello
                if ev.hello.version >= 0x0304:
                    self.client.ccs_starts_encryption = False
                    self.client.start_encryption()
            elif isinstance(ev, CertificateEvent) and not from_client:
                self.certificates = ev.certificates
            elif isinstance(ev, AlertEvent):
                self.alerts.append((from_client, ev))
            self._add_history(history_letter(ev, from_client))
        return events

    def _add_history(self, letter: str) -> None:
        if letter in "dD" and letter == self._last:
            return  # one letter per run of encrypted records keeps the string readable
        self._last = letter
        if len(self._history) < MAX_HISTORY:
            self._history.append(letter)
        elif len(self._history) == MAX_HISTORY:
            self._history.append("+")

"""STARTTLS in a capture: the plaintext dialogue before a TLS handshake on the same flow.

Sans-IO and bounded, like the TLS parser. :func:`greeting_protocol` tells from a server's first
bytes whether a STARTTLS dialogue may follow (the flow table keeps delivering such a flow);
:class:`StartTlsTracker` is then fed both sides' bytes (by stream offset) and says where each
side's TLS begins once the server agrees:

=========  ===================================  ==============================  ==============
protocol   server greeting                      client command                  go-ahead
=========  ===================================  ==============================  ==============
``smtp``   ``220 ...``                          ``STARTTLS``                    ``220``
``ftp``    ``220 ...``                          ``AUTH TLS`` (or ``AUTH SSL``)  ``234``
``imap``   ``* OK ...`` / ``* PREAUTH ...``     ``<tag> STARTTLS``              ``<tag> OK``
``pop3``   ``+OK ...``                          ``STLS``                        ``+OK``
=========  ===================================  ==============================  ==============

Any other reply to the command is a refusal (``smtp 454``, ``imap NO``, ``pop3 -ERR`` ...).
Lines are at most :data:`MAX_LINE` bytes and the plaintext phase at most
:data:`MAX_PLAINTEXT` bytes per side: past either, or on bytes that are not such a dialogue,
the tracker gives up (``done`` with ``upgraded`` False and no ``refusal``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_LINE", "MAX_PLAINTEXT", "PROTOCOLS", "StartTlsTracker", "greeting_protocol"]

#: Longest plaintext line followed (RFC 5321 allows 512 bytes for a reply line).
MAX_LINE: Final = 1024
#: Plaintext bytes followed per side before giving up on finding a STARTTLS upgrade.
MAX_PLAINTEXT: Final = 8192
#: What :attr:`StartTlsTracker.protocol` can be once the client's command is seen.
PROTOCOLS: Final = frozenset({"smtp", "ftp", "imap", "pop3"})

_WAIT_COMMAND: Final = 0
_WAIT_REPLY: Final = 1
_DONE: Final = 2


def greeting_protocol(first: bytes) -> str | None:
    """The protocol family a server's first bytes open (``smtp/ftp`` for a 220 greeting, which
    both use), or None when no STARTTLS dialogue can follow."""
    if first.startswith((b"220 ", b"220-")):
        return "smtp/ftp"
    if first.startswith((b"* OK", b"* PREAUTH")):
        return "imap"
    if first.startswith(b"+OK"):
        return "pop3"
    return None


class StartTlsTracker:
    """Follows one flow's plaintext phase. Feed each side's in-order bytes with their stream
    offsets; once :attr:`done`, :attr:`upgraded` says whether TLS follows, at
    :attr:`client_tls_offset` / :attr:`server_tls_offset` of each stream."""

    __slots__ = (
        "_buf", "_seen", "_state", "_tag", "client_gave_up_ns", "client_tls_offset",
        "command_ns", "early_client", "family", "protocol", "refusal", "reply_ns",
        "server_tls_offset", "upgraded",
    )

    def __init__(self, family: str) -> None:
        self.family = family  # greeting_protocol()'s answer
        self.protocol: str | None = None if family == "smtp/ftp" else family
        self._state = _WAIT_COMMAND
        self._buf = [bytearray(), bytearray()]  # an unfinished line per side (client, server)
        self._seen = [0, 0]  # plaintext bytes followed per side
        self._tag = b""  # IMAP: the STARTTLS command's tag
        self.upgraded = False
        self.refusal: str | None = None  # the server's refusing reply line (cut, printable)
        self.client_tls_offset: int | None = None
        self.server_tls_offset: int | None = None
        self.command_ns: int | None = None  # when the client asked (STARTTLS, STLS, AUTH)
        self.reply_ns: int | None = None  # when the server answered it
        # Client bytes after its command, before the reply (normally none): its first TLS.
        self.early_client = bytearray()
        self.client_gave_up_ns: int | None = None  # its FIN/RST while waiting (set by its user)

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def waiting(self) -> bool:
        """The client asked for TLS and the server has not answered yet."""
        return self._state == _WAIT_REPLY

    def feed(self, server: bool, offset: int, data: bytes, ts_ns: int) -> None:
        """In-order bytes of one side at stream ``offset`` (from the stream's first byte)."""
        if self._state == _DONE:
            return
        side = 1 if server else 0
        self._seen[side] += len(data)
        if self._seen[side] > MAX_PLAINTEXT:
            self._give_up()
            return
        if not server and self._state == _WAIT_REPLY:
            # After its command the client's next bytes are its TLS: kept for the reply.
            self.early_client += data
            return
        buf = self._buf[side]
        start, n = 0, len(data)
        while start < n and self._state != _DONE:
            nl = data.find(b"\n", start)
            end = n if nl < 0 else nl + 1
            buf += data[start:end]
            if len(buf) > MAX_LINE:
                self._give_up()
                return
            if nl < 0:
                return
            line = bytes(buf).rstrip(b"\r\n")
            buf.clear()
            if server:
                self._server_line(line, offset + end, ts_ns)
            else:
                self._client_line(line, offset + end, ts_ns)
                if self._state == _WAIT_REPLY:
                    self.early_client += data[end:]
                    return
            start = end

    # -- lines ------------------------------------------------------------------------------

    def _client_line(self, line: bytes, end_offset: int, ts: int) -> None:
        if self._state != _WAIT_COMMAND:
            return  # (bytes after the command, before the reply: the reply decides)
        words = line.split()
        if not words:
            return
        verb = words[0].upper()
        family = self.family
        asked = False
        if family == "smtp/ftp" or family == "smtp":
            if verb == b"STARTTLS" and len(words) == 1:
                self.protocol = "smtp"
                asked = True
            elif verb == b"AUTH" and len(words) == 2 and words[1].upper() in (b"TLS", b"SSL",
                                                                                b"TLS-C"):
                self.protocol = "ftp"
                asked = True
        elif family == "imap":
            if len(words) == 2 and words[1].upper() == b"STARTTLS":
                self._tag = words[0]
                asked = True
        elif family == "pop3":
            asked = verb == b"STLS" and len(words) == 1
        if asked:
            self._state = _WAIT_REPLY
            self.client_tls_offset = end_offset
            self.command_ns = ts

    def _server_line(self, line: bytes, end_offset: int, ts: int) -> None:
        if self._state != _WAIT_REPLY:
            return
        proto = self.protocol
        if proto == "imap":
            words = line.split(None, 2)
            if len(words) < 2 or words[0] != self._tag:
                return  # untagged (``* ...``) or another command's reply
            ok = words[1].upper() == b"OK"
        elif proto == "pop3":
            ok = line.startswith(b"+OK")
        else:  # smtp / ftp: multi-line replies are ``code-text`` until ``code text``
            if len(line) > 3 and line[3:4] == b"-":
                return
            ok = line[:3] == (b"220" if proto == "smtp" else b"234")
        self.reply_ns = ts
        self._state = _DONE
        if ok:
            self.upgraded = True
            self.server_tls_offset = end_offset
        else:
            text = line[:64].decode("ascii", "replace")
            self.refusal = "".join(c if c.isprintable() else "_" for c in text) or "(empty)"
        self._buf = [bytearray(), bytearray()]

    def _give_up(self) -> None:
        self._state = _DONE
        self._buf = [bytearray(), bytearray()]
        self.early_client = bytearray()

"""TLS key logs (NSS ``SSLKEYLOGFILE`` format): session secrets by client random.

Each line is ``LABEL <client random, 64 hex> <secret, hex>``; ``#`` starts a comment. Labels
kept (see the NSS key log format, also in draft-ietf-tls-keylogfile):

* TLS 1.3: ``CLIENT_EARLY_TRAFFIC_SECRET``, ``CLIENT_HANDSHAKE_TRAFFIC_SECRET``,
  ``SERVER_HANDSHAKE_TRAFFIC_SECRET``, ``CLIENT_TRAFFIC_SECRET_0``,
  ``SERVER_TRAFFIC_SECRET_0``, ``EARLY_EXPORTER_SECRET``, ``EXPORTER_SECRET`` (secrets of a
  hash's length: 32 or 48 bytes);
* TLS <= 1.2: ``CLIENT_RANDOM`` (the 48-byte master secret).

Parsing never raises on content: lines that do not fit (unknown label, bad hex, wrong
lengths, over :data:`MAX_LINE` characters) are counted in :attr:`KeyLog.bad_lines`, and
sessions beyond ``max_sessions`` in :attr:`KeyLog.dropped`. Sans-IO except
:func:`load_keylog`, which reads at most :data:`MAX_FILE_BYTES` of a file.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Final

__all__ = [
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_RANDOM",
    "KEYLOG_LABELS",
    "MAX_FILE_BYTES",
    "MAX_LINE",
    "MAX_SESSIONS",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "KeyLog",
    "load_keylog",
]

CLIENT_RANDOM: Final = "CLIENT_RANDOM"
CLIENT_HANDSHAKE_TRAFFIC_SECRET: Final = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
SERVER_HANDSHAKE_TRAFFIC_SECRET: Final = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
_TLS13_LABELS: Final = frozenset({
    "CLIENT_EARLY_TRAFFIC_SECRET",
    CLIENT_HANDSHAKE_TRAFFIC_SECRET,
    SERVER_HANDSHAKE_TRAFFIC_SECRET,
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
    "EARLY_EXPORTER_SECRET",
    "EXPORTER_SECRET",
})
#: Every label this module keeps.
KEYLOG_LABELS: Final = _TLS13_LABELS | {CLIENT_RANDOM}
#: Longest line accepted (a SHA-384 line is about 160 characters).
MAX_LINE: Final = 512
#: Sessions (client randoms) kept per key log by default.
MAX_SESSIONS: Final = 1_000_000
#: Bytes of a key log file read by :func:`load_keylog`.
MAX_FILE_BYTES: Final = 256 * 1024 * 1024
_RANDOM_LEN: Final = 32
_MASTER_SECRET_LEN: Final = 48
_TLS13_SECRET_LENS: Final = frozenset({32, 48})


class KeyLog:
    """Secrets by client random, from any number of key log texts (later lines win)."""

    __slots__ = ("_sessions", "bad_lines", "dropped", "labels", "lines", "max_sessions")

    def __init__(self, text: str | bytes = b"", *, max_sessions: int = MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions
        self._sessions: dict[bytes, dict[str, bytes]] = {}
        self.lines = 0  # secret lines kept
        self.bad_lines = 0  # lines that are neither secrets, comments nor blank
        self.dropped = 0  # secret lines of sessions over max_sessions
        self.labels: Counter[str] = Counter()  # kept lines per label
        if text:
            self.add_text(text)

    def __len__(self) -> int:
        """Sessions (client randoms) known."""
        return len(self._sessions)

    def __bool__(self) -> bool:
        return bool(self._sessions)

    def __contains__(self, client_random: object) -> bool:
        return client_random in self._sessions

    def add_text(self, text: str | bytes) -> int:
        """Add the secrets of a key log's text; returns the number of lines kept."""
        if isinstance(text, str):
            text = text.encode("utf-8", "replace")
        kept = 0
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(b"#"):
                continue
            if self._add_line(line):
                kept += 1
        return kept

    def _add_line(self, line: bytes) -> bool:
        parts = line.split()
        if len(line) > MAX_LINE or len(parts) != 3:
            self.bad_lines += 1
            return False
        try:
            label = parts[0].decode("ascii")
            random = bytes.fromhex(parts[1].decode("ascii"))
            secret = bytes.fromhex(parts[2].decode("ascii"))
        except ValueError:  # (UnicodeDecodeError is one)
            self.bad_lines += 1
            return False
        if label not in KEYLOG_LABELS or len(random) != _RANDOM_LEN or (
                len(secret) != _MASTER_SECRET_LEN if label == CLIENT_RANDOM
                else len(secret) not in _TLS13_SECRET_LENS):
            self.bad_lines += 1
            return False
        session = self._sessions.get(random)
        if session is None:
            if len(self._sessions) >= self.max_sessions:
                self.dropped += 1
                return False
            session = self._sessions[random] = {}
        session[label] = secret
        self.lines += 1
        self.labels[label] += 1
        return True

    def secrets(self, client_random: bytes) -> dict[str, bytes]:
        """A copy of the secrets known for a client random (empty when none)."""
        return dict(self._sessions.get(client_random, {}))

    def get(self, client_random: bytes, label: str) -> bytes | None:
        session = self._sessions.get(client_random)
        return None if session is None else session.get(label)

    def server_handshake_secret(self, client_random: bytes) -> bytes | None:
        return self.get(client_random, SERVER_HANDSHAKE_TRAFFIC_SECRET)

    def master_secret(self, client_random: bytes) -> bytes | None:
        """The TLS <= 1.2 master secret (a ``CLIENT_RANDOM`` line)."""
        return self.get(client_random, CLIENT_RANDOM)

    @property
    def tls13_sessions(self) -> int:
        return sum(1 for s in self._sessions.values() if SERVER_HANDSHAKE_TRAFFIC_SECRET in s)

    @property
    def tls12_sessions(self) -> int:
        return sum(1 for s in self._sessions.values() if CLIENT_RANDOM in s)

    def summary(self) -> str:
        """One line for a user: sessions by kind and what was not kept."""
        text = (f"{len(self)} session(s): {self.tls13_sessions} TLS 1.3, "
                f"{self.tls12_sessions} TLS 1.2 (CLIENT_RANDOM)")
        if self.bad_lines:
            text += f"; {self.bad_lines} line(s) not understood"
        if self.dropped:
            text += f"; {self.dropped} line(s) over the limit of {self.max_sessions} sessions"
        return text


def load_keylog(path: str | os.PathLike[str], keylog: KeyLog | None = None) -> KeyLog:
    """Read a key log file (at most :data:`MAX_FILE_BYTES`) into ``keylog`` (or a new one).

    Raises ``OSError`` when the file cannot be read; never for what it contains.
    """
    out = keylog if keylog is not None else KeyLog()
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES)
    if len(data) == MAX_FILE_BYTES:
        data = data[: data.rfind(b"\n") + 1]  # (a cut last line is not a bad line)
    out.add_text(data)
    return out

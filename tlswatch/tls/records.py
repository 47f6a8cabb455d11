"""TLS record layer framing (RFC 8446 §5.1, RFC 5246 §6.2) and content-based TLS detection."""

from __future__ import annotations

import enum
import struct
from typing import Final

__all__ = [
    "MAX_RECORD_LENGTH",
    "RECORD_HEADER_LENGTH",
    "ContentType",
    "Detection",
    "check_record_header",
    "looks_like_tls",
]

RECORD_HEADER_LENGTH: Final = 5
# 2^14 plaintext + 2048 expansion: the TLS 1.2 ciphertext limit, the loosest any version allows.
MAX_RECORD_LENGTH: Final = 2**14 + 2048

_HEADER: Final = struct.Struct(">BHH")


class ContentType(enum.IntEnum):
    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23
    HEARTBEAT = 24


_VALID_TYPES: Final = frozenset(int(t) for t in ContentType)
# Types that RFC 8446 §5.1 forbids sending as zero-length fragments.
_NONEMPTY_TYPES: Final = frozenset({20, 21, 22})


def check_record_header(content_type: int, version: int, length: int) -> str | None:
    """Return an invalid-reason string for a record header, or None when it is acceptable."""
    if content_type not in _VALID_TYPES:
        return "bad_content_type"
    if version >> 8 != 3:
        return "bad_record_version"
    if length > MAX_RECORD_LENGTH or (length == 0 and content_type in _NONEMPTY_TYPES):
        return "bad_record_length"
    return None


class Detection(enum.Enum):
    """Answer of :func:`looks_like_tls`."""

    YES = "yes"
    NO = "no"
    NEED_MORE = "need_more"


def looks_like_tls(prefix: bytes | bytearray | memoryview) -> Detection:
    """Decide from the first bytes of a stream whether it is TLS (or an SSLv2-compatible hello).

    Only looks at the first record header (5 bytes), so a verdict needs at most 5 bytes.
    """
    n = len(prefix)
    if n == 0:
        return Detection.NEED_MORE
    b0 = prefix[0]
    if b0 & 0x80:
        # SSLv2 record header: 2-byte length with the high bit set, then CLIENT-HELLO (1)
        # and a version of 0x0002 or 0x03xx.
        if n < 5:
            return _partial_sslv2(prefix)
        length = ((b0 & 0x7F) << 8) | prefix[1]
        ok = length >= 9 and prefix[2] == 1 and (prefix[3] == 3 or (prefix[3], prefix[4]) == (0, 2))
        return Detection.YES if ok else Detection.NO
    if b0 not in _VALID_TYPES:
        return Detection.NO
    if n < 2:
        return Detection.NEED_MORE
    if prefix[1] != 3:
        return Detection.NO
    if n < RECORD_HEADER_LENGTH:
        return Detection.NEED_MORE
    ctype, version, length = _HEADER.unpack_from(bytes(prefix[:5]))
    if check_record_header(ctype, version, length) is not None:
        return Detection.NO
    return Detection.YES


def _partial_sslv2(prefix: bytes | bytearray | memoryview) -> Detection:
    if len(prefix) >= 3 and prefix[2] != 1:
        return Detection.NO
    if len(prefix) >= 4 and prefix[3] not in (0, 3):
        return Detection.NO
    return Detection.NEED_MORE

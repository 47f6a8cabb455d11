"""QUIC frame parsing for Initial packets (RFC 9000 §12.4, §19).

Initial packets may carry only PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE (0x1c); we
also accept 0x1d so a misbehaving or injecting peer is still reported. Parsing stops at the
first unknown or malformed frame and says why, keeping the frames read so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..tls.alerts import alert_name

__all__ = [
    "TRANSPORT_ERROR_NAMES",
    "AckFrame",
    "ConnectionCloseFrame",
    "CryptoFrame",
    "Frame",
    "FrameError",
    "PaddingFrame",
    "PingFrame",
    "parse_frames",
    "read_varint",
    "transport_error_name",
]

#: Upper bound on ACK ranges walked per frame: the count is attacker-chosen (up to 2^62).
MAX_ACK_RANGES: Final = 256
#: Frames kept per packet; padding runs are merged so honest packets stay far below this.
MAX_FRAMES: Final = 512


class FrameError(ValueError):
    """Truncated or malformed frame data."""


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a variable-length integer (RFC 9000 §16) at ``pos``: (value, next position)."""
    if pos >= len(data):
        raise FrameError("truncated varint")
    first = data[pos]
    n = 1 << (first >> 6)
    if pos + n > len(data):
        raise FrameError("truncated varint")
    value = first & 0x3F
    for b in data[pos + 1 : pos + n]:
        value = (value << 8) | b
    return value, pos + n


@dataclass(frozen=True, slots=True)
class PaddingFrame:
    length: int  # a run of consecutive PADDING bytes


@dataclass(frozen=True, slots=True)
class PingFrame:
    pass


@dataclass(frozen=True, slots=True)
class AckFrame:
    largest: int
    delay: int
    first_range: int
    range_count: int
    ecn: tuple[int, int, int] | None


@dataclass(frozen=True, slots=True)
class CryptoFrame:
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionCloseFrame:
    error_code: int
    frame_type: int | None  # None for the application variant (0x1d)
    reason: bytes
    application: bool

    @property
    def error_name(self) -> str:
        if self.application:
            return f"application_{self.error_code}"
        return transport_error_name(self.error_code)


Frame = PaddingFrame | PingFrame | AckFrame | CryptoFrame | ConnectionCloseFrame

#: Transport error codes (RFC 9000 §20.1), lower-case for use in outcome strings.
TRANSPORT_ERROR_NAMES: Final[dict[int, str]] = {
    0x00: "no_error",
    0x01: "internal_error",
    0x02: "connection_refused",
    0x03: "flow_control_error",
    0x04: "stream_limit_error",
    0x05: "stream_state_error",
    0x06: "final_size_error",
    0x07: "frame_encoding_error",
    0x08: "transport_parameter_error",
    0x09: "connection_id_limit_error",
    0x0A: "protocol_violation",
    0x0B: "invalid_token",
    0x0C: "application_error",
    0x0D: "crypto_buffer_exceeded",
    0x0E: "key_update_error",
    0x0F: "aead_limit_reached",
    0x10: "no_viable_path",
    0x11: "version_negotiation_error",  # RFC 9368
}


def transport_error_name(code: int) -> str:
    """Name of a transport error; CRYPTO_ERROR (0x0100-0x01ff) carries a TLS alert."""
    if 0x0100 <= code <= 0x01FF:
        return f"crypto_error:{alert_name(code - 0x0100)}"
    return TRANSPORT_ERROR_NAMES.get(code, str(code))


def parse_frames(payload: bytes) -> tuple[list[Frame], str | None]:
    """Frames of a decrypted Initial payload and the reason parsing stopped early (or None)."""
    frames: list[Frame] = []
    pos, n = 0, len(payload)
    try:
        while pos < n:
            if len(frames) >= MAX_FRAMES:
                return frames, "too_many_frames"
            ftype = payload[pos]
            if ftype == 0x00:
                start = pos
                while pos < n and payload[pos] == 0:
                    pos += 1
                frames.append(PaddingFrame(pos - start))
                continue
            # Frame types are varints; every type we accept fits in one byte, so a longer
            # encoding of a known type is left as unknown (RFC 9000 §12.4 allows rejecting it).
            pos += 1
            if ftype == 0x01:
                frames.append(PingFrame())
            elif ftype in (0x02, 0x03):
                largest, pos = read_varint(payload, pos)
                delay, pos = read_varint(payload, pos)
                count, pos = read_varint(payload, pos)
                first, pos = read_varint(payload, pos)
                if count > MAX_ACK_RANGES:
                    return frames, "too_many_ack_ranges"
                for _ in range(count * 2):  # gap, length
                    _, pos = read_varint(payload, pos)
                ecn: tuple[int, int, int] | None = None
                if ftype == 0x03:
                    e0, pos = read_varint(payload, pos)
                    e1, pos = read_varint(payload, pos)
                    e2, pos = read_varint(payload, pos)
                    ecn = (e0, e1, e2)
                frames.append(AckFrame(largest, delay, first, count, ecn))
            elif ftype == 0x06:
                offset, pos = read_varint(payload, pos)
                length, pos = read_varint(payload, pos)
                if pos + length > n:
                    raise FrameError("truncated CRYPTO data")
                frames.append(CryptoFrame(offset, payload[pos : pos + length]))
                pos += length
            elif ftype in (0x1C, 0x1D):
                code, pos = read_varint(payload, pos)
                frame_type: int | None = None
                if ftype == 0x1C:
                    frame_type, pos = read_varint(payload, pos)
                length, pos = read_varint(payload, pos)
                if pos + length > n:
                    raise FrameError("truncated CONNECTION_CLOSE reason")
                frames.append(ConnectionCloseFrame(code, frame_type, payload[pos : pos + length],
                                                   ftype == 0x1D))
                pos += length
            else:
                return frames, f"unexpected_frame:{ftype:#x}"
    except FrameError as exc:
        return frames, f"malformed_frame:{exc}"
    return frames, None

"""Our own errors and warnings for capture reading (DESIGN §3.3: few, each with a clear message).

A file that is not a capture at all raises :class:`CaptureFormatError`. A capture that is
truncated or corrupt part-way is *not* an exception: the reader stops, keeps what it read,
counts an anomaly and emits a :class:`CaptureWarning`.
"""

from __future__ import annotations

__all__ = ["CaptureError", "CaptureFormatError", "CaptureWarning"]


class CaptureError(Exception):
    """Base class of the capture layer's own errors."""


class CaptureFormatError(CaptureError, ValueError):
    """The input is not a readable pcap/pcapng file; the message is one line naming the file."""


class CaptureWarning(UserWarning):
    """A capture was cut short (truncated or corrupt): results so far are partial."""

"""Server-side ClientHello fingerprint counts (JA3/JA4) per client network, with flags for
known interception boxes and rare fingerprints (``tlswatch fingerprints``)."""

from __future__ import annotations

from .count import CaptureStats, FingerprintCounter, Hello, Row, count_captures, network_of
from .known import KnownFingerprint, load_known, match_known

__all__ = [
    "CaptureStats",
    "FingerprintCounter",
    "Hello",
    "KnownFingerprint",
    "Row",
    "count_captures",
    "load_known",
    "match_known",
    "network_of",
]

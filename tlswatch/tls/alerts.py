"""Alert protocol names (RFC 8446 §6, RFC 5246 §7.2, plus later IANA registrations)."""

from __future__ import annotations

from typing import Final

__all__ = ["ALERT_LEVEL_NAMES", "ALERT_NAMES", "alert_level_name", "alert_name"]

ALERT_LEVEL_NAMES: Final[dict[int, str]] = {1: "warning", 2: "fatal"}

ALERT_NAMES: Final[dict[int, str]] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
    121: "ech_required",
}


def alert_name(description: int) -> str:
    """Name of an alert description; unknown codes become ``unknown_<n>`` (still a usable key)."""
    return ALERT_NAMES.get(description, f"unknown_{description}")


def alert_level_name(level: int) -> str:
    return ALERT_LEVEL_NAMES.get(level, f"unknown_{level}")

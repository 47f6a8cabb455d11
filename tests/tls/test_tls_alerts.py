from __future__ import annotations

from tlswatch.tls.alerts import ALERT_NAMES, alert_level_name, alert_name


def test_rfc_alert_names() -> None:
    assert alert_name(40) == "handshake_failure"
    assert alert_name(112) == "unrecognized_name"
    assert alert_name(0) == "close_notify"
    assert alert_name(70) == "protocol_version"
    assert alert_name(116) == "certificate_required"
    assert alert_name(120) == "no_application_protocol"


def test_all_rfc8446_and_5246_codes_named() -> None:
    rfc8446 = {0, 10, 20, 22, 40, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 70, 71, 80, 86, 90}
    rfc8446 |= {109, 110, 112, 113, 115, 116, 120}
    rfc5246 = {21, 30, 41, 60, 100, 110}
    assert rfc8446 | rfc5246 <= ALERT_NAMES.keys()
    assert len(set(ALERT_NAMES.values())) == len(ALERT_NAMES)


def test_unknown_alert_is_data_not_error() -> None:
    assert alert_name(250) == "unknown_250"
    assert alert_level_name(2) == "fatal"
    assert alert_level_name(9) == "unknown_9"

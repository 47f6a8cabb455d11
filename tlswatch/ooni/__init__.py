"""OONI measurements as tlswatch records: years of public data as an interception detector.

:func:`parse_measurement` finds the TLS handshakes (and early DNS/TCP failures) of one
measurement, :class:`OoniConverter` judges them into ``tlswatch/1`` records, and
:func:`map_failure` is the failure-string table (``docs/report.md``).
"""

from tlswatch.ooni.failures import CERT_FAILURES, OoniStage, map_failure
from tlswatch.ooni.measurement import (
    Measurement,
    MeasurementError,
    MeasurementInfo,
    OoniFailure,
    OoniHandshake,
    open_measurements,
    parse_measurement,
    read_measurements,
)
from tlswatch.ooni.records import OoniConverter, OoniRecord, vantage_of

__all__ = [
    "CERT_FAILURES",
    "Measurement",
    "MeasurementError",
    "MeasurementInfo",
    "OoniConverter",
    "OoniFailure",
    "OoniHandshake",
    "OoniRecord",
    "OoniStage",
    "map_failure",
    "open_measurements",
    "parse_measurement",
    "read_measurements",
    "vantage_of",
]

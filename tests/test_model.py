"""The record contract: round trips, the committed JSON Schema, deterministic ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import jsonschema
import pytest

from tlswatch.ids import new_run_id, record_id
from tlswatch.model import (
    CertFacts,
    Control,
    Flow,
    Interception,
    KeyInfo,
    Record,
    RunRecord,
    Target,
    TlsInfo,
    Validation,
    Vantage,
    from_dict,
    rfc3339,
    to_dict,
)
from tlswatch.record_schema import build_schema, load_schema


def _full_record() -> Record:
    cert = CertFacts(sha256="ab" * 32, der_b64="AAAA", spki_sha256="cd" * 32, subject="CN=x",
                     issuer="CN=y", serial="01", key=KeyInfo(type="rsa", bits=2048, exponent=3),
                     sans=("x",), extensions=("subjectAltName",))
    return Record(
        id="i", run_id="r", source="pcap", time="2019-08-01T00:00:00Z",
        target=Target(domain="x", sni="x", ip="127.0.0.1", port=443),
        vantage=Vantage(name="kz", kind="remote"),
        flow=Flow("127.0.0.2", 5555, "127.0.0.1", 443),
        tls=TlsInfo(version="TLSv1.2", ja3="j"),
        chain=(cert,),
        validation=(Validation(store="mozilla", store_version="1", trusted=False,
                               at="2019-08-01T00:00:00Z", error="untrusted_root"),),
        interception=Interception(matched=True, label="kz-2019-qaznet-root", incident="kz-2019",
                                  evidence="issuer_name_only", pattern=("rsa_exponent_3",)),
        control=Control(kind="sni", outcome="cert/valid", chain=(cert,)),
        verdict="intercepted", outcome="cert/known_interception_ca:kz-2019-qaznet-root",
        confidence=0.7, reasons=("because",),
    )


def test_round_trip_through_json() -> None:
    rec = _full_record()
    back = from_dict(Record, json.loads(json.dumps(to_dict(rec))))
    assert back == rec


def test_absent_sections_are_omitted_and_unknown_keys_ignored() -> None:
    rec = Record(id="i", run_id="r", source="probe", time="t", target=Target(domain="d"))
    d = to_dict(rec)
    assert "flow" not in d and "tls" not in d and d["schema"] == "tlswatch/1"
    d["future_key"] = {"x": 1}
    assert from_dict(Record, d) == rec


def test_committed_schema_is_current() -> None:
    assert load_schema() == build_schema(), (
        "regenerate: python -m tlswatch.record_schema > tlswatch/schema/tlswatch-1.schema.json")


def test_records_validate_against_schema() -> None:
    schema = load_schema()
    jsonschema.validate(to_dict(_full_record()), schema)
    run = RunRecord(run_id="r", tool="tlswatch", tool_version="0", started="t",
                    stores=(("mozilla", "2026.5.20"),))
    jsonschema.validate(to_dict(run), schema)
    bad = to_dict(_full_record())
    bad["verdict"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_rfc3339_is_utc_and_rejects_naive_times() -> None:
    t = datetime(2019, 8, 1, 6, 0, tzinfo=timezone(timedelta(hours=6)))
    assert rfc3339(t) == "2019-08-01T00:00:00Z"
    assert rfc3339(t.replace(microsecond=5)) == "2019-08-01T00:00:00.000005Z"
    with pytest.raises(ValueError):
        rfc3339(datetime(2019, 8, 1))


def test_ids_are_deterministic_and_discriminating() -> None:
    t = Target(domain="vk.com", sni="vk.com", ip="127.0.0.1")
    a = record_id(source="probe", target=t, vantage=Vantage(), attempt=0)
    assert a == record_id(source="probe", target=t, vantage=Vantage(), attempt=0)
    assert a != record_id(source="probe", target=t, vantage=Vantage(), attempt=1)
    assert a != record_id(source="probe", target=Target(domain="vk.com", sni="ok.ru",
                                                          ip="127.0.0.1"), vantage=Vantage())
    f = Flow("10.0.0.1", 1, "10.0.0.2", 443)
    assert record_id(source="pcap", flow=f, file_sha256="aa", first_packet_ns=1) != record_id(
        source="pcap", flow=f, file_sha256="aa", first_packet_ns=2)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert new_run_id(t0) != new_run_id(t0)

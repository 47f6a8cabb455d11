"""SQLite: schema and indexes for dashboards, certificates once, no duplicates, WAL, readers."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from pathlib import Path

import pytest
from sink_samples import input_record, record, run_record, stream

from tlswatch.sinks.base import RecordError, SinkError, open_sink
from tlswatch.sinks.readers import read_records
from tlswatch.sinks.sqlite_sink import MEASUREMENT_COLUMNS, SqliteSink


def _db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


def test_schema_indexes_and_wal(tmp_path: Path) -> None:
    out = tmp_path / "s.sqlite"
    with open_sink(out, append=False) as sink:
        for x in stream(0, 5):
            sink.write(x)
    db = _db(out)
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert {"runs", "runs_latest", "measurements", "certificates", "chain_links", "inputs",
            "extras", "meta"} <= names
    for col in ("time", "target_domain", "verdict", "outcome_class", "interception_label",
                "vantage_name"):
        assert f"measurements_{col}" in names
        plan = " ".join(str(r) for r in db.execute(
            f"EXPLAIN QUERY PLAN SELECT count(*) FROM measurements WHERE {col} = ?", ("x",)))
        assert f"measurements_{col}" in plan
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = [r[1] for r in db.execute("PRAGMA table_info(measurements)")]
    assert cols == ["seq", "id", *[c for c in MEASUREMENT_COLUMNS if c != "id"], "record"]
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM runs_latest").fetchone()[0] == 1
    ended = db.execute("SELECT ended FROM runs_latest").fetchone()[0]
    assert ended == "2019-08-01T13:00:00.500000Z"
    assert db.execute("SELECT path, complete FROM inputs").fetchone() == ("captures/+1+2.pcap", 1)


def test_certificates_stored_once_and_chain_links_in_order(tmp_path: Path) -> None:
    out = tmp_path / "s.sqlite"
    r0 = record(0)
    with open_sink(out, append=False) as sink:
        sink.write(r0)
        sink.write(record(1))  # other certificates
    db = _db(out)
    # record 0: 3 seen + 1 control certificate; record 1: 3 seen.
    assert db.execute("SELECT count(*) FROM certificates").fetchone()[0] == 7
    links = db.execute("SELECT role, position, sha256 FROM chain_links WHERE measurement_id=? "
                       "ORDER BY role DESC, position", (r0.id,)).fetchall()
    assert [(role, pos) for role, pos, _ in links] == [("seen", 0), ("seen", 1), ("seen", 2),
                                                       ("control", 0)]
    assert [sha for _, _, sha in links[:3]] == [c.sha256 for c in r0.chain]
    der, key_exp, subject = db.execute(
        "SELECT der, key_exponent, subject FROM certificates WHERE sha256=?",
        (r0.chain[0].sha256,)).fetchone()
    assert der == base64.b64decode(r0.chain[0].der_b64)
    assert hashlib.sha256(der).hexdigest() == r0.chain[0].sha256 and key_exp == 3
    assert subject == "=HYPERLINK(\"http://x\",\"click\")"  # stored as is: SQL is no spreadsheet


def test_a_resumed_run_never_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "s.sqlite"
    with open_sink(out, append=False) as sink:
        for i in range(5):
            sink.write(record(i))
    with open_sink(out, append=True, batch=2) as sink:
        assert isinstance(sink, SqliteSink)
        sink.write(run_record(2))
        for i in range(3, 8):
            sink.write(record(i))
        sink.close()
        assert sink.duplicates == 2
    ids = [r["id"] for r in read_records(out) if "id" in r]
    assert ids == [f"m{i:06d}" for i in range(8)]
    db = _db(out)
    assert db.execute("SELECT count(*) FROM chain_links").fetchone()[0] == \
        sum(len(record(i).chain) + (len(record(i).control.chain)  # type: ignore[union-attr]
                                    if record(i).control else 0) for i in range(8))


def test_dashboards_read_while_a_writer_is_open(tmp_path: Path) -> None:
    out = tmp_path / "s.sqlite"
    sink = open_sink(out, append=False, batch=1000)
    try:
        for i in range(10):
            sink.write(record(i))
        reader = _db(out)
        assert reader.execute("SELECT count(*) FROM measurements").fetchone()[0] == 0
        sink.checkpoint()
        assert reader.execute("SELECT count(*) FROM measurements").fetchone()[0] == 10
        got = reader.execute("SELECT verdict, count(*) FROM measurements GROUP BY verdict "
                             "ORDER BY verdict").fetchall()
        assert got == [("blocked", 3), ("intercepted", 7)]
        reader.close()
    finally:
        sink.close()


def test_records_without_id_are_rejected_one_by_one(tmp_path: Path) -> None:
    with open_sink(tmp_path / "s.sqlite", append=False) as sink:
        with pytest.raises(RecordError, match="without an id"):
            sink.write({"schema": "tlswatch/1", "verdict": "ok"})
        sink.write(record(0))
    assert len(list(read_records(tmp_path / "s.sqlite"))) == 1


def test_other_kinds_are_kept_whole(tmp_path: Path) -> None:
    out = tmp_path / "s.sqlite"
    future = {"schema": "tlswatch/1", "kind": "future", "run_id": "r", "x": [1, 2]}
    with open_sink(out, append=False) as sink:
        sink.write(record(0))
        sink.write(future)
        sink.write(input_record(3))
    kinds = [r.get("kind") for r in read_records(out)]
    assert kinds == [None, "future", "input"]
    assert list(read_records(out))[1] == future


def test_foreign_and_broken_databases(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE customers (name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(SinkError, match="not a tlswatch store"):
        open_sink(foreign, append=True)
    with pytest.raises(SinkError, match="not a tlswatch SQLite store"):
        list(read_records(foreign))
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    for call in (lambda: open_sink(broken, append=True), lambda: list(read_records(broken))):
        with pytest.raises(SinkError, match="not a usable SQLite database"):
            call()


def test_an_older_store_gets_new_columns(tmp_path: Path) -> None:
    out = tmp_path / "s.sqlite"
    with open_sink(out, append=False) as sink:
        sink.write(record(0))
    db = _db(out)
    if sqlite3.sqlite_version_info < (3, 35):
        pytest.skip("DROP COLUMN needs SQLite 3.35")
    db.execute("DROP INDEX measurements_interception_label")
    db.execute("ALTER TABLE measurements DROP COLUMN interception_label")
    db.commit()
    db.close()
    with open_sink(out, append=True) as sink:
        sink.write(record(1))
    db = _db(out)
    assert db.execute("SELECT id, interception_label FROM measurements ORDER BY seq").fetchall() \
        == [("m000000", None), ("m000001", "kz-2019-qaznet-root")]

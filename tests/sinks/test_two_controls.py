"""The SNI control (``control_sni``) in every sink: flat columns, SQLite chain links, round
trips through ``tlswatch convert`` and ``rejudge``, and outputs written before it existed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import require_module
from sink_samples import record
from two_controls import two_control_records, write_store

from tlswatch.cli.main import cli
from tlswatch.model import Record, to_dict
from tlswatch.sinks import sqlite_sink
from tlswatch.sinks.base import open_sink
from tlswatch.sinks.csv_sink import CsvSink, read_header
from tlswatch.sinks.flat import COLUMN_NAMES, COLUMNS, flatten
from tlswatch.sinks.readers import read_records

NEW = ("control_sni_outcome", "control_sni_outcome_class", "control_sni_leaf_sha256")
OLD_COLUMNS = tuple(c for c in COLUMN_NAMES if c not in NEW)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("store") / "public.pem")


@pytest.fixture(scope="module")
def recs(store: Path) -> list[Record]:
    return two_control_records(store)


def _jsonl(path: Path, items: list[Any]) -> Path:
    with open_sink(path, append=False) as sink:
        for x in items:
            sink.write(x)
    return path


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_columns_are_appended_after_every_older_one() -> None:
    assert COLUMN_NAMES[-3:] == NEW
    assert all(c.type == "str" for c in COLUMNS[-3:])


def test_flat_row_has_both_controls(recs: list[Record]) -> None:
    both, sni_decides, disagree, one = (flatten(r) for r in recs)
    ctl, sni = recs[0].control, recs[0].control_sni
    assert ctl is not None and sni is not None
    assert (both["control_kind"], both["control_outcome"]) == ("path", "cert/valid")
    assert both["control_leaf_sha256"] == ctl.chain[0].sha256
    assert (both["control_sni_outcome"], both["control_sni_outcome_class"]) == \
        ("cert/valid", "cert/valid")
    assert both["control_sni_leaf_sha256"] == sni.chain[0].sha256 != both["control_leaf_sha256"]
    # The path control saw the forgery; the SNI control decided.
    assert sni_decides["control_outcome_class"] == "cert/untrusted_root"
    assert sni_decides["control_sni_outcome_class"] == "cert/valid"
    assert (disagree["control_sni_outcome"], disagree["control_sni_leaf_sha256"]) == \
        ("tls/reset", None)
    assert all(one[c] is None for c in NEW) and one["control_outcome"] == "cert/valid"


def test_hostile_sni_control_fields_are_escaped_and_odd_shapes_do_not_raise() -> None:
    row = flatten({"id": "x", "control_sni": {
        "outcome": "cert/untrusted_root:\x1b[31mEvil\u202e\n", "chain": [{"sha256": "a\tb"}]}})
    assert row["control_sni_outcome"] == "cert/untrusted_root:\\x1b[31mEvil\\u202e\\n"
    assert row["control_sni_outcome_class"] == "cert/untrusted_root"
    assert row["control_sni_leaf_sha256"] == "a\\tb"
    odds: tuple[Any, ...] = ([], "sni", {"outcome": 3, "chain": "x"}, {"chain": [None]})
    for odd in odds:
        assert all(flatten({"id": "x", "control_sni": odd})[c] is None for c in NEW)


def test_sqlite_links_the_sni_controls_chain(tmp_path: Path, recs: list[Record]) -> None:
    out = _jsonl(tmp_path / "s.sqlite", list(recs))
    db = sqlite3.connect(out)
    for rec in recs:
        links = db.execute("SELECT role, position, sha256 FROM chain_links WHERE "
                           "measurement_id = ? ORDER BY role, position", (rec.id,)).fetchall()
        want = [("control", i, c.sha256) for i, c in enumerate(rec.control.chain)]  # type: ignore[union-attr]
        if rec.control_sni is not None:
            want += [("control_sni", i, c.sha256) for i, c in enumerate(rec.control_sni.chain)]
        want += [("seen", i, c.sha256) for i, c in enumerate(rec.chain)]
        assert links == want
    sni = recs[0].control_sni
    assert sni is not None
    subject, der = db.execute("SELECT subject, der FROM certificates WHERE sha256 = ?",
                              (sni.chain[0].sha256,)).fetchone()
    assert subject == "CN=example.com" and der and len(der) > 100
    got = db.execute("SELECT control_sni_outcome, control_sni_leaf_sha256 FROM measurements "
                     "ORDER BY seq").fetchall()
    assert got == [(flatten(r)["control_sni_outcome"], flatten(r)["control_sni_leaf_sha256"])
                   for r in recs]


def test_jsonl_sqlite_jsonl_gives_the_same_lines(tmp_path: Path, recs: list[Record]) -> None:
    src = _jsonl(tmp_path / "in.jsonl", list(recs))
    db, back = tmp_path / "mid.sqlite", tmp_path / "back.jsonl"
    for a, b in ((src, db), (db, back)):
        code, _, err = _run("convert", str(a), str(b))
        assert code == 0, err
    assert back.read_bytes() == src.read_bytes()
    first = json.loads(back.read_text().splitlines()[0])
    assert first["control_sni"] == json.loads(json.dumps(to_dict(recs[0])))["control_sni"]
    assert "der_b64" in first["control_sni"]["chain"][0]  # raw evidence kept: re-judgeable


def test_rejudge_from_sqlite_keeps_the_sni_control(tmp_path: Path, store: Path,
                                                   recs: list[Record]) -> None:
    db = _jsonl(tmp_path / "in.sqlite", list(recs))
    out = tmp_path / "new.jsonl"
    code, stdout, err = _run("rejudge", str(db), "-o", str(out), "--store", str(store),
                             "--show", "0")
    assert code == 0, err
    assert stdout.splitlines()[0] == \
        "re-judged 4 records: 0 changed, 4 unchanged, 0 not re-judgeable"
    got = [r for r in read_records(out) if r.get("kind") is None]
    assert got == [json.loads(json.dumps(to_dict(r))) for r in recs]


def test_an_sqlite_store_of_the_old_columns_is_still_appendable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recs: list[Record]) -> None:
    out = tmp_path / "old.sqlite"
    old_measurement = tuple(c for c in sqlite_sink.MEASUREMENT_COLUMNS if c not in NEW)
    with monkeypatch.context() as m:  # the sink as it was before these columns
        m.setattr(sqlite_sink, "MEASUREMENT_COLUMNS", old_measurement)
        with open_sink(out, append=False) as sink:
            sink.write(record(0))
    db = sqlite3.connect(out)
    have = [r[1] for r in db.execute("PRAGMA table_info(measurements)")]
    assert have == ["seq", "id", *old_measurement[1:], "record"]
    db.close()
    with open_sink(out, append=True) as sink:
        sink.write(recs[0])
    db = sqlite3.connect(out)
    have = [r[1] for r in db.execute("PRAGMA table_info(measurements)")]
    assert have == ["seq", "id", *old_measurement[1:], "record", *NEW]
    rows = db.execute(f"SELECT id, {', '.join(NEW)} FROM measurements ORDER BY seq").fetchall()
    assert rows == [("m000000", None, None, None),
                    (recs[0].id, "cert/valid", "cert/valid",
                     recs[0].control_sni.chain[0].sha256)]  # type: ignore[union-attr]
    roles = {r[0] for r in db.execute("SELECT role FROM chain_links WHERE measurement_id = ?",
                                      (recs[0].id,))}
    assert roles == {"seen", "control", "control_sni"}
    assert [r["id"] for r in read_records(out)] == ["m000000", recs[0].id]


def test_a_csv_of_the_old_columns_keeps_its_header(tmp_path: Path, recs: list[Record]) -> None:
    out = tmp_path / "old.csv"
    out.write_bytes((",".join(OLD_COLUMNS) + "\r\n").encode())
    with open_sink(out, append=True) as sink:
        assert isinstance(sink, CsvSink) and sink.columns == OLD_COLUMNS
        sink.write(recs[0])
    assert read_header(out) == list(OLD_COLUMNS)
    [row] = read_records(out)
    assert row["control_outcome"] == "cert/valid" and all(row[c] is None for c in NEW)
    new = _jsonl(tmp_path / "new.csv", list(recs))
    assert read_header(new) == list(COLUMN_NAMES)
    assert [dict(r) for r in read_records(new)] == [dict(flatten(r)) for r in recs]


def test_parquet_parts_of_the_old_columns_read_beside_new_ones(
        tmp_path: Path, recs: list[Record]) -> None:
    require_module("pyarrow")
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from tlswatch.sinks.parquet_sink import arrow_schema

    out = tmp_path / "o.parquet"
    out.mkdir()
    schema = arrow_schema()
    old_schema = pa.schema([f for f in schema if f.name not in NEW])
    old_row = {k: v for k, v in flatten(record(1)).items() if k not in NEW}
    table = pa.Table.from_pylist([old_row], schema=pa.schema(
        [f if f.name not in ("time", "run_ended") else pa.field(f.name, pa.string())
         for f in old_schema]))
    pq.write_table(table.cast(old_schema), out / "part-0000.parquet")
    with open_sink(out, append=True) as sink:
        sink.write(recs[0])
    rows = list(read_records(out))
    assert [r["id"] for r in rows] == ["m000001", recs[0].id]
    assert all(rows[0][c] is None for c in NEW)
    assert dict(rows[1]) == dict(flatten(recs[0]))
    # The documented way for other tools: read by name, with tlswatch's schema.
    got = ds.dataset(out, schema=schema).to_table().to_pylist()
    assert [r["control_sni_outcome"] for r in got] == [None, "cert/valid"]


def test_csv_and_parquet_convert_keep_the_sni_columns(tmp_path: Path,
                                                      recs: list[Record]) -> None:
    require_module("pyarrow")
    src = _jsonl(tmp_path / "in.jsonl", list(recs))
    pq_out, csv_out = tmp_path / "o.parquet", tmp_path / "o.csv"
    for a, b in ((src, pq_out), (pq_out, csv_out)):
        code, _, err = _run("convert", str(a), str(b))
        assert code == 0, err
    want = [dict(flatten(r)) for r in recs]
    assert [dict(r) for r in read_records(pq_out)] == want
    assert [dict(r) for r in read_records(csv_out)] == want

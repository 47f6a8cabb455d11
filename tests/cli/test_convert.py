"""``tlswatch convert`` as a user runs it: every direction, bad lines, one-line errors."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import require_module

from tlswatch.cli.main import cli
from tlswatch.sinks.base import open_sink
from tlswatch.sinks.flat import flatten
from tlswatch.sinks.readers import read_records

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sinks"))
from sink_samples import record, stream

require_module("pyarrow")


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    with open_sink(path, append=False) as sink:
        for x in stream(0, 12):
            sink.write(x)
    return path


def test_jsonl_sqlite_gz_and_back_give_the_same_lines(jsonl: Path, tmp_path: Path) -> None:
    chain = [jsonl, tmp_path / "a.sqlite", tmp_path / "b.jsonl.gz", tmp_path / "c.db",
             tmp_path / "d.jsonl"]
    for src, dst in itertools.pairwise(chain):
        code, out, err = run("convert", str(src), str(dst))
        assert code == 0, err
        assert out == ""
        assert "converted 12 records (and 1 input, 2 run records)" in err
    assert chain[-1].read_bytes() == jsonl.read_bytes()


@pytest.mark.parametrize("flat", ["out.csv", "out.parquet"])
def test_records_to_flat_and_flat_to_flat(jsonl: Path, tmp_path: Path, flat: str) -> None:
    first = tmp_path / flat
    assert run("convert", str(jsonl), str(first))[0] == 0
    other = tmp_path / ("again.parquet" if flat.endswith(".csv") else "again.csv")
    code, _, err = run("convert", str(first), str(other))
    assert code == 0, err
    want = [dict(flatten(x)) for x in stream(0, 12)]
    assert [dict(r) for r in read_records(first)] == want
    assert [dict(r) for r in read_records(other)] == want


@pytest.mark.parametrize("src", ["x.csv", "x.parquet"])
def test_flat_inputs_cannot_become_records(jsonl: Path, tmp_path: Path, src: str) -> None:
    flat = tmp_path / src
    assert run("convert", str(jsonl), str(flat))[0] == 0
    for dst in ("y.jsonl", "y.sqlite", "y.jsonl.gz"):
        code, out, err = run("convert", str(flat), str(tmp_path / dst))
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and "only the flat projection" in err
        assert not (tmp_path / dst).exists()


def test_bad_lines_are_counted_and_the_rest_converts(jsonl: Path, tmp_path: Path) -> None:
    lines = jsonl.read_bytes().splitlines(keepends=True)
    damaged = tmp_path / "damaged.jsonl"
    bad_lines = [lines[0], b"{not json\n", lines[1], b"[1, 2]\n", b'{"no": "schema"}\n',
                 b"\xff\xfe\n", b"[" * 100000 + b"]" * 100000 + b"\n", *lines[2:], b'{"torn']
    damaged.write_bytes(b"".join(bad_lines))
    code, _, err = run("convert", str(damaged), str(tmp_path / "o.sqlite"))
    assert code == 0
    assert "line 2: not JSON" in err and "line 4: not a JSON object" in err
    assert "line 5: not a tlswatch record" in err and "line 6: not" in err
    assert "line 7: not JSON (nested too deeply)" in err
    assert f"line {len(bad_lines)}: no line end" in err
    assert "converted 12 records" in err and "6 bad lines skipped" in err
    assert len(list(read_records(tmp_path / "o.sqlite"))) == len(lines)


def test_one_line_errors(jsonl: Path, tmp_path: Path) -> None:
    cases = [
        ([str(jsonl), str(tmp_path / "o.txt")], "unknown output format"),
        ([str(tmp_path / "missing.jsonl"), str(tmp_path / "o.csv")], "no such file"),
        ([str(jsonl), str(jsonl)], "is also the output"),
        ([str(jsonl), str(tmp_path / "no" / "dir.csv")], "cannot write"),
    ]
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"\x00\x01 binary\n\x02\n")
    cases.append(([str(junk), str(tmp_path / "o2.csv")], "no record in the file"))
    for args, message in cases:
        code, _, err = run("convert", *args)
        assert code == 2, (args, err)
        assert err.startswith("tlswatch: error: ") and err.count("\n") == 1, err
        assert message in err
    assert not (tmp_path / "o2.csv").exists()


def test_existing_output_needs_append_and_sqlite_skips_known_ids(jsonl: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "o.sqlite"
    assert run("convert", str(jsonl), str(out))[0] == 0
    code, _, err = run("convert", str(jsonl), str(out))
    assert code == 2 and "exists and is not empty" in err
    more = tmp_path / "more.jsonl"
    with open_sink(more, append=False) as sink:
        for i in range(10, 15):
            sink.write(record(i))
    code, _, err = run("convert", "--append", str(jsonl), str(more), str(out))
    assert code == 0, err
    assert "14 measurements already there (ignored)" in err  # 10 and 11 were in both
    ids = [r["id"] for r in read_records(out) if "id" in r]
    assert ids == [f"m{i:06d}" for i in range(15)]


def test_help_describes_formats() -> None:
    code, out, _ = run("convert", "--help")
    assert code == 0
    assert "IN... OUT" in out and ".parquet" in out and "--append" in out
    assert "convert only to .csv or .parquet" in out


def test_converted_json_is_identical_json(jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.sqlite"
    run("convert", str(jsonl), str(out))
    assert list(read_records(out)) == [json.loads(x) for x in jsonl.read_text().splitlines()]

"""``tlswatch report`` as a user runs it."""

from __future__ import annotations

import gzip
from pathlib import Path

from click.testing import CliRunner
from report.hostile import write_results

from tlswatch.cli.main import cli

FIXTURES = Path(__file__).resolve().parents[1] / "ooni" / "fixtures"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_summary_and_html(tmp_path: Path) -> None:
    results = write_results(tmp_path / "r.jsonl", ("{torn", '"a string"'))
    page = tmp_path / "r.html"
    code, out, err = run("report", str(results), "--html", str(page))
    assert code == 0 and err == ""
    assert out.startswith("5 records from 1 file(s)")
    assert "2 unusable line(s) skipped" in out and f"HTML report: {page}" in out
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert not list(tmp_path.glob("*.tmp"))


def test_ooni_output_and_several_files(tmp_path: Path) -> None:
    out = tmp_path / "ooni.jsonl"
    CliRunner().invoke(cli, ["ooni", *map(str, sorted(FIXTURES.glob("*.jsonl"))),
                             "-o", str(out)])
    gz = tmp_path / "copy.jsonl.gz"
    gz.write_bytes(gzip.compress(out.read_bytes()))
    code, text, _ = run("report", str(out), str(gz))
    assert code == 0 and text.startswith("16 records from 2 file(s)")
    assert "kz-2019-qaznet-root (incident kz-2019): 2 records, first 2019-08-01 12:00" in text
    assert "1337x.be: tls/reset 2" in text


def test_unreadable_inputs_exit_2(tmp_path: Path) -> None:
    code, out, err = run("report", str(tmp_path / "nope.jsonl"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "cannot read" in err
    bad = tmp_path / "x.jsonl.gz"
    bad.write_bytes(b"not gzip at all")
    code, _, err = run("report", str(bad))
    assert code == 2 and "x.jsonl.gz: cannot read" in err
    other = tmp_path / "x.parquet"
    other.write_bytes(b"PAR1")
    code, _, err = run("report", str(other))
    assert code == 2 and err.count("\n") == 1
    ok = write_results(tmp_path / "ok.jsonl")
    code, _, err = run("report", str(ok), "--html", str(tmp_path / "no-dir" / "r.html"))
    assert code == 2 and "cannot write" in err


def test_help() -> None:
    code, out, _ = run("report", "--help")
    assert code == 0 and "--html FILE" in out and "self-contained" in out


def test_other_formats_through_the_sinks_readers(tmp_path: Path) -> None:
    from report.hostile import records

    from tlswatch.sinks import base

    for name in ("r.sqlite", "r.csv"):
        path = tmp_path / name
        sink = base.open_sink(path, append=False)
        for rec in records():
            sink.write(rec)
        sink.close()
        code, out, err = run("report", str(path))
        assert code == 0, err
        assert out.startswith("5 records from 1 file(s)"), out
        assert "untrusted issuer" in out and "blocked.example: tls/reset 1" in out

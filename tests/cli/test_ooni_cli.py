"""``tlswatch ooni`` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from click.testing import CliRunner

from tlswatch.cli.main import cli
from tlswatch.record_schema import load_schema

FIXTURES = Path(__file__).resolve().parents[1] / "ooni" / "fixtures"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_all_fixtures_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "ooni.jsonl"
    files = sorted(str(p) for p in FIXTURES.glob("*.jsonl"))
    code, stdout, err = run("ooni", *files, "-o", str(out))
    assert code == 0 and stdout == ""
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    runs = [x for x in lines if x.get("kind") == "run"]
    recs = [x for x in lines if x.get("kind") != "run"]
    assert len(runs) == 2 and runs[1]["ended"] and runs[0]["run_id"] == runs[1]["run_id"]
    assert {s["name"] for s in runs[1]["stores"]} == {"mozilla@2019-06", "mozilla@2020-12"}
    assert len(recs) == 8 and all(r["source"] == "ooni" for r in recs)
    schema = load_schema()
    for x in lines:
        jsonschema.validate(x, schema)
    kz = [r for r in recs if r["vantage"]["name"] == "KZ AS9198"]
    assert kz[0]["verdict"] == "intercepted"
    assert kz[0]["interception"]["label"] == "kz-2019-qaznet-root"
    assert "6 measurements, 8 records" in err and "0 malformed lines" in err
    # The output is refused a second time, and the ids are the same on a fresh file.
    code, _, err = run("ooni", *files, "-o", str(out))
    assert code == 2 and "exists and is not empty" in err
    again = tmp_path / "again.jsonl"
    run("ooni", *files, "-o", str(again))
    ids = [json.loads(x).get("id") for x in again.read_text().splitlines()]
    assert ids[1:-1] == [r["id"] for r in recs]


def test_malformed_lines_are_counted_and_the_rest_runs(tmp_path: Path) -> None:
    f = tmp_path / "mixed.jsonl"
    good = (FIXTURES / "ts-037-tlsmiddlebox.example.jsonl").read_text()
    f.write_text("{nope\n" + good + '{"test_keys": 5}\n' + "[]\n")
    code, stdout, err = run("ooni", str(f))
    assert code == 0
    recs = [json.loads(x) for x in stdout.splitlines() if '"kind":"run"' not in x]
    assert [r["verdict"] for r in recs] == ["blocked"]
    assert f"{f}:1: not JSON" in err and f"{f}:3: no test_keys object" in err
    assert f"{f}:4: not a JSON object" in err and "3 malformed lines skipped" in err


def test_unreadable_input_and_bad_options(tmp_path: Path) -> None:
    code, stdout, err = run("ooni", str(tmp_path / "missing.jsonl"))
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert err.startswith("tlswatch: error: ") and "cannot read" in err
    f = FIXTURES / "ts-024-sni-blocking.example.jsonl"
    code, _, err = run("ooni", str(f), "--store", "auto", "--store", "mozilla")
    assert code == 2 and "give it alone" in err
    code, _, err = run("ooni", str(f), "--store", "no-such-store")
    assert code == 2 and err.count("\n") == 1
    code, _, err = run("ooni", str(f), "-o", str(tmp_path / "out.csv"))
    assert code == 2 and "only .jsonl" in err
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    code, _, err = run("ooni", str(broken))
    assert code == 2 and "broken.jsonl.gz: cannot read" in err


def test_explicit_store(tmp_path: Path) -> None:
    code, stdout, _ = run("ooni", str(FIXTURES / "ts-027-urlgetter.example.jsonl"),
                          "--store", "mozilla@2020-12")
    rec = [json.loads(x) for x in stdout.splitlines()][1]
    assert code == 0 and rec["validation"][0]["store"] == "mozilla@2020-12"


def test_help() -> None:
    code, out, _ = run("ooni", "--help")
    assert code == 0 and "tls_handshakes" in out and "--store" in out

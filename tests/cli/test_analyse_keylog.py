"""``tlswatch analyse --keylog``: TLS 1.3 chains judged from key logs, as the MANIFEST says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from tlswatch.cli.analyse import analyse
from tlswatch.record_schema import load_schema

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
STORE = str(CAPTURES / "lab-public-root.pem")
VALIDATOR = jsonschema.Draft202012Validator(load_schema())
DECRYPTED = "TLS 1.3: the handshake was decrypted with a key log"


def manifest() -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in json.loads((CAPTURES / "MANIFEST.json").read_text())["files"]}


def run(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    r = CliRunner().invoke(analyse, [*args, "--store", STORE], catch_exceptions=False)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    for rec in lines:
        VALIDATOR.validate(rec)
    return r.exit_code, [x for x in lines if "kind" not in x], r.stderr


@pytest.mark.parametrize("name", ["clean-tls13", "clean-tls13-chacha20", "clean-tls13-aes256",
                                  "clean-tls13-hrr", "kz2019-intercepted-tls13"])
def test_tls13_capture_with_its_key_log_gives_the_manifest_verdict(name: str) -> None:
    expect = manifest()[f"{name}.pcapng"]["expect"]
    code, recs, err = run(str(CAPTURES / f"{name}.pcapng"), "--keylog",
                          str(CAPTURES / f"{name}.keylog"))
    assert code == 0, err
    (rec,) = recs
    assert (rec["verdict"], rec["outcome"]) == (expect["verdict"], expect["outcome"])
    assert DECRYPTED in rec["reasons"] and rec["chain"]
    assert "1 decrypted with key logs" in err


def test_dsb_capture_without_keylog() -> None:
    expect = manifest()["tls13-with-dsb.pcapng"]["expect"]
    code, recs, err = run(str(CAPTURES / "tls13-with-dsb.pcapng"))
    assert code == 0
    (rec,) = recs
    assert (rec["verdict"], rec["outcome"]) == (expect["verdict"], expect["outcome"])
    assert rec["outcome"] == "cert/known_interception_ca:kz-2019-qaznet-root"
    assert DECRYPTED in rec["reasons"]
    assert "note: 1 embedded TLS key log(s) read: 1 session(s): 1 TLS 1.3" in err


def test_without_keys_the_record_says_the_chain_was_encrypted() -> None:
    _code, recs, _ = run(str(CAPTURES / "kz2019-intercepted-tls13.pcapng"))
    (rec,) = recs
    assert (rec["verdict"], rec["outcome"]) == ("inconclusive", "cert/no_chain")
    assert "TLS 1.3: the certificate is encrypted; a key log is needed" in rec["reasons"]


def test_wrong_key_log_is_a_clear_reason_not_a_crash() -> None:
    code, recs, err = run(str(CAPTURES / "clean-tls13.pcapng"), "--keylog",
                          str(CAPTURES / "clean-tls13.wrong.keylog"))
    assert code == 0
    (rec,) = recs
    assert (rec["verdict"], rec["outcome"]) == ("inconclusive", "cert/no_chain")
    assert "TLS 1.3: the certificate is encrypted; a key log is needed" in rec["reasons"]
    assert any(r.startswith("the key log did not decrypt the handshake") for r in rec["reasons"])
    assert rec["chain"] == []
    assert "warning: the key log did not decrypt 1 TLS 1.3 handshake(s)" in err
    assert "1 not decrypted by the key log" in err


def test_several_key_logs_and_a_tls12_one(tmp_path: Path) -> None:
    junk = tmp_path / "junk.keylog"
    junk.write_text("not a key log line\n")
    code, recs, err = run(str(CAPTURES / "clean-tls13.pcapng"), str(CAPTURES / "clean-tls12.pcap"),
                          "--keylog", str(CAPTURES / "clean-tls13.keylog"),
                          "--keylog", str(CAPTURES / "clean-tls12.keylog"),
                          "--keylog", str(junk))
    assert code == 0, err
    assert "key log(s): 2 session(s): 1 TLS 1.3, 1 TLS 1.2 (CLIENT_RANDOM); 1 line(s) not " \
           "understood" in err
    assert sorted((r["verdict"], r["outcome"]) for r in recs) == [("ok", "cert/valid")] * 2
    tls12 = next(r for r in recs if r["tls"]["version"] == "TLSv1.2")
    assert any("TLS 1.2 master secret (CLIENT_RANDOM)" in r for r in tls12["reasons"])


def test_missing_key_log_is_a_usage_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(analyse, [str(CAPTURES / "clean-tls13.pcapng"), "--keylog",
                                     str(tmp_path / "nope.keylog")])
    assert r.exit_code == 2

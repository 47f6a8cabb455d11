"""``tlswatch verify`` and ``tlswatch anchors`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from tlswatch.cli.main import cli
from tlswatch.record_schema import load_schema
from tlswatch.testing import CertFactory, to_pem

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
AT = "2019-08-01T12:00:00Z"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_forged_chain_text_output() -> None:
    code, out, _ = run("verify", str(EXAMPLES / "kz2019-forged-facebook.pem"),
                       "--host", "facebook.com", "--at", AT)
    assert code == 0
    assert out.startswith("verdict      intercepted")
    assert "kz-2019-qaznet-root" in out and "rsa_exponent_3" in out
    assert "mozilla@2019-06" in out  # auto store for a 2019 time


def test_json_output_is_one_schema_valid_record() -> None:
    code, out, _ = run("verify", str(EXAMPLES / "kz2019-real-root-facebook.pem"),
                       "--host", "facebook.com", "--at", AT, "--format", "json")
    assert code == 0 and out.count("\n") == 1
    rec = json.loads(out)
    jsonschema.validate(rec, load_schema())
    assert rec["verdict"] == "intercepted" and rec["confidence"] >= 0.99
    assert rec["interception"]["evidence"] == "verified_signature"
    assert len(rec["chain"]) == 3 and rec["chain"][0]["key"]["exponent"] == 3


def test_store_path_all_and_control() -> None:
    legit = str(EXAMPLES / "legit-example.pem")
    store = str(EXAMPLES / "test-public-root.pem")
    _, out, _ = run("verify", legit, "--host", "example.com", "--at", AT, "--store", store,
                    "--format", "json")
    assert json.loads(out)["verdict"] == "ok"
    code, out, _ = run("verify", legit, "--host", "example.com", "--at", AT, "--store", "all",
                       "--format", "json")
    assert len(json.loads(out)["validation"]) == 9
    # An expired chain while the control path saw a valid one: still only an anomaly.
    code, out, _ = run("verify", str(EXAMPLES / "expired-example.pem"), "--host", "example.com",
                       "--at", AT, "--store", store, "--control", legit, "--format", "json")
    rec = json.loads(out)
    assert code == 0 and rec["outcome"] == "cert/expired" and rec["verdict"] == "anomaly"
    assert rec["control"]["kind"] == "path"


def _many(n: int) -> bytes:
    return to_pem([CertFactory(seed=0).public_root().cert]) * n


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty input"),
    (b"\x00\x01garbage" * 10, "no certificate found"),
    (b"-----BEGIN CERTIFICATE-----\nMIIB!!!\n-----END CERTIFICATE-----\n", "block 1"),
    (_many(1)[:300], "truncated"),
    (_many(10_000), "more than 100"),
])
def test_malformed_input_is_one_line_and_exit_2(tmp_path: Path, data: bytes, message: str) -> None:
    f = tmp_path / "in.pem"
    f.write_bytes(data)
    code, out, err = run("verify", str(f))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and str(f) in err


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    legit = str(EXAMPLES / "legit-example.pem")
    assert run("verify", legit, "--at", "soon")[0] == 2
    assert "unknown trust store" in run("verify", legit, "--store", "nope")[2]
    assert run("verify", str(tmp_path / "missing.pem"))[0] == 2


def test_hostile_subject_is_neutralised_on_the_terminal(tmp_path: Path) -> None:
    f = CertFactory(seed=0)
    leaf = f.leaf(None, ["evil.example"], subject="CN=evil\x1b[2J\u202etxt.exe")
    p = tmp_path / "evil.pem"
    p.write_bytes(to_pem([leaf.cert]))
    code, out, _ = run("verify", str(p), "--host", "evil.example", "--at", AT)
    assert code == 0 and "\x1b" not in out and "\u202e" not in out


def test_anchors_list_and_show() -> None:
    code, out, _ = run("anchors", "list")
    assert code == 0 and "kz-2019-qaznet-root" in out and "mozilla@2020-12" in out
    code, out, _ = run("anchors", "show", "kz-2020-isca-root-0704")
    assert "235150de7df7db2e538d461bc4d210c4e0819be2c4c76969476e3cbe67b723dd" in out
    assert run("anchors", "show", "nope")[0] == 2


def test_checkout_shim_and_examples_are_current(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "--version"], capture_output=True,
                       text=True, check=True)
    assert r.stdout.startswith("tlswatch, version")
    before = {p.name: p.read_bytes() for p in EXAMPLES.glob("*.pem")}
    subprocess.run([sys.executable, str(EXAMPLES / "make_examples.py")], check=True)
    assert {p.name: p.read_bytes() for p in EXAMPLES.glob("*.pem")} == before

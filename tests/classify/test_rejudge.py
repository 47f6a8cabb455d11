"""Re-judging stored records: same configuration -> same record; new registry -> new verdict.

The second half runs ``tlswatch rejudge`` as a user does. (It lives here, not in
``tests/cli/test_rejudge.py``: test modules need unique basenames in this suite.)"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tlswatch.classify.chain import ChainJudge, compare_with_control, decide
from tlswatch.classify.probe_record import judge_observation, probe_record
from tlswatch.classify.record import chain_record
from tlswatch.classify.rejudge import VERDICT_FIELDS, Rejudge, rejudge_record
from tlswatch.cli.main import cli
from tlswatch.model import HttpInfo, RunRecord, Target, TcpInfo, TlsInfo, Vantage, to_dict
from tlswatch.probe.observation import ProbeObservation
from tlswatch.sinks.base import open_sink
from tlswatch.sinks.readers import read_records
from tlswatch.testing import CertFactory, to_pem, write_store_pem
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import TrustStore, load_store

F = CertFactory(seed=0)
T = Target(domain="facebook.com", sni="facebook.com", ip="127.0.0.1", port=443)
ROOT = Path(__file__).resolve().parents[2]


def _ders(chain: Sequence[x509.Certificate]) -> tuple[bytes, ...]:
    return tuple(c.public_bytes(Encoding.DER) for c in chain)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TrustStore:
    path = tmp_path_factory.mktemp("store") / "public.pem"
    write_store_pem(path, [F.public_root().cert])
    return load_store(str(path))


@pytest.fixture(scope="module")
def judge(store: TrustStore) -> ChainJudge:
    return ChainJudge([store], load_registry())


def _obs(**kw: Any) -> ProbeObservation:
    return ProbeObservation(target=kw.pop("target", T), started=F.now, **kw)


def _probe(judge: ChainJudge, seen: ProbeObservation, control: ProbeObservation | None = None,
           kind: str = "path", captive: bool = False,
           sni_control: ProbeObservation | None = None) -> dict[str, Any]:
    c = judge_observation(control, judge) if control else None
    sc = judge_observation(sni_control, judge) if sni_control else None
    rec, _ = probe_record(record_id="id-1", run_id="run-1", seen=judge_observation(seen, judge),
                          control=c, control_kind=kind, captive_portal=captive,
                          sni_control=sc)
    d: dict[str, Any] = json.loads(json.dumps(to_dict(rec)))  # as read back from a file
    return d


def _scenarios(judge: ChainJudge) -> dict[str, dict[str, Any]]:
    legit = _ders(F.legitimate("facebook.com").chain)
    forged = _ders(F.forged_2019("facebook.com").chain)
    random_ca = _ders(F.forged_random_ca("facebook.com").chain)
    raw = b"HTTP/1.1 302 Found\r\nLocation: https://vk.com/blank.php?rkn=1\r\n\r\n"
    sni_target = Target(domain="facebook.com", sni="example.com", ip="127.0.0.1", port=443)
    sni_ok = _obs(chain_der=_ders(F.legitimate("example.com").chain), target=sni_target)
    return {
        "valid": _probe(judge, _obs(chain_der=legit, tls=TlsInfo(version="TLSv1.3"))),
        "forged": _probe(judge, _obs(chain_der=forged)),
        "expired": _probe(judge, _obs(chain_der=_ders(F.expired("facebook.com").chain))),
        "self_signed": _probe(judge, _obs(chain_der=_ders(F.self_signed("facebook.com").chain))),
        "random_ca_control_valid": _probe(judge, _obs(chain_der=random_ca),
                                          _obs(chain_der=legit)),
        "random_ca_control_same": _probe(judge, _obs(chain_der=random_ca),
                                         _obs(chain_der=random_ca)),
        "reset_control_ok": _probe(judge, _obs(failure="tls/reset", tcp=TcpInfo(connect_ms=1)),
                                   _obs(chain_der=legit)),
        "down": _probe(judge, _obs(failure="tcp/timeout"), _obs(failure="tcp/timeout")),
        "dns": _probe(judge, _obs(failure="dns/bogon:private")),
        "blockpage_443": _probe(judge, _obs(failure="tls/not_tls", non_tls_prefix=raw,
                                            tls=TlsInfo(failure="tls/not_tls"))),
        "captcha": _probe(judge, _obs(chain_der=legit, http=HttpInfo(
            status=403, title="Attention Required! | Cloudflare"))),
        "http_fail_after": _probe(judge, _obs(chain_der=forged, failure="http/failed:timeout")),
        "alert_with_chain": _probe(judge, _obs(chain_der=legit,
                                               failure="tls/alert:bad_record_mac")),
        "sni_control": _probe(judge, _obs(chain_der=random_ca), _obs(
            chain_der=_ders(F.legitimate("example.com").chain),
            target=Target(domain="facebook.com", sni="example.com")), kind="sni"),
        "captive": _probe(judge, _obs(chain_der=forged), captive=True),
        # Two controls: the path control in `control`, the SNI control in `control_sni`.
        "two_controls_intercepted": _probe(judge, _obs(chain_der=random_ca),
                                           _obs(chain_der=legit), sni_control=sni_ok),
        "two_controls_disagree": _probe(judge, _obs(failure="tls/reset"),
                                        _obs(chain_der=legit), sni_control=_obs(
                                            failure="tls/reset", target=sni_target)),
        "two_controls_sni_decides": _probe(judge, _obs(chain_der=random_ca),
                                           _obs(chain_der=random_ca), sni_control=sni_ok),
        "two_controls_both_failed": _probe(judge, _obs(chain_der=random_ca),
                                           _obs(failure="tcp/timeout"), kind="resolver",
                                           sni_control=_obs(failure="tcp/refused",
                                                            target=sni_target)),
        "no_chain": _probe(judge, _obs()),
    }


def test_unchanged_rules_give_byte_identical_records(judge: ChainJudge) -> None:
    scenarios = _scenarios(judge)
    # The scenarios cover every column of the verdict table.
    assert {d["verdict"] for d in scenarios.values()} == {
        "ok", "intercepted", "blocked", "anomaly", "down", "inconclusive"}
    for name, d in scenarios.items():
        before = json.dumps(d, sort_keys=True)
        r = rejudge_record(d, lambda _at: judge)
        assert r.skipped is None, name
        assert not r.changed, (name, r.old, r.new)
        assert json.dumps(d, sort_keys=True) == before  # the input is not modified
        assert json.dumps(r.record, sort_keys=True) == before, name


def test_two_control_records_rejudge_with_both_controls(judge: ChainJudge) -> None:
    sc = _scenarios(judge)
    both = sc["two_controls_intercepted"]
    assert both["control"]["kind"] == "path" and both["control_sni"]["kind"] == "sni"
    assert (both["verdict"], both["rule_id"]) == ("intercepted", "R42-untrusted-control-valid")
    assert "control_sni" not in sc["random_ca_control_valid"]
    # The disagreement lowers the confidence, and rejudge finds it again from the record.
    dis = sc["two_controls_disagree"]
    assert (dis["verdict"], dis["rule_id"], dis["confidence"]) == (
        "blocked", "R72-failure-control-succeeded", 0.6)
    assert any("controls disagree" in r for r in dis["reasons"])
    # Only the SNI control saw the site work: without it, the same record is no interception.
    sni = sc["two_controls_sni_decides"]
    assert sni["verdict"] == "intercepted" and sni["confidence"] == 0.55
    alone = {k: v for k, v in sni.items() if k != "control_sni"}
    r = rejudge_record(alone, lambda _at: judge)
    assert r.changed and r.record["verdict"] == "ok" and "control_sni" not in r.record
    # The SNI control's chain is re-judged too: its stored judgement is replaced by today's.
    stale = copy.deepcopy(both)
    stale["control_sni"]["outcome"] = "cert/untrusted_root:stale"
    stale["control_sni"]["chain"][0]["subject"] = "CN=stale"
    r = rejudge_record(stale, lambda _at: judge)
    assert r.record["control_sni"] == both["control_sni"] and r.modified and not r.changed
    # A control_sni without DER cannot be re-judged, and says where.
    broken = copy.deepcopy(both)
    del broken["control_sni"]["chain"][0]["der_b64"]
    skipped = rejudge_record(broken, lambda _at: judge).skipped
    assert skipped == "control_sni.chain[0] has no der_b64"


def test_verify_records_rejudge_to_themselves(judge: ChainJudge) -> None:
    sc = F.forged_random_ca("facebook.com")
    j = judge.judge(_ders(sc.chain), host="facebook.com", at=F.now)
    cj = judge.judge(_ders(F.legitimate("facebook.com").chain), host="facebook.com", at=F.now)
    view = compare_with_control(j, cj, "path")
    rec = chain_record(record_id="v", run_id="r", source="file", at=F.now, target=T,
                       judgement=j, decision=decide(j, view), control=view,
                       control_judgement=cj)
    d = json.loads(json.dumps(to_dict(rec)))
    r = rejudge_record(d, lambda _at: judge)
    assert r.record == d and d["verdict"] == "intercepted"


def test_a_ca_added_to_the_registry_changes_the_verdict(tmp_path: Path,
                                                        store: TrustStore) -> None:
    # Judged when the registry did not know this CA: an untrusted root, no control.
    sc = F.forged_random_ca("facebook.com")
    old_judge = ChainJudge([store], load_registry())
    d = _probe(old_judge, _obs(chain_der=_ders(sc.chain)))
    assert (d["verdict"], d["rule_id"]) == ("anomaly", "R40-untrusted-no-control")
    assert d["outcome"].startswith("cert/untrusted_root:")

    root = tmp_path / "new-ca.pem"
    root.write_bytes(to_pem([sc.chain[-1]]))
    new_judge = ChainJudge([store], load_registry([root]))
    rj = Rejudge(lambda _at: new_judge)
    new = rj(d)
    assert (new["verdict"], new["rule_id"]) == ("intercepted", "R20-interception-ca-verified")
    assert new["outcome"].startswith("cert/known_interception_ca:user_")
    assert new["interception"]["matched"] and new["interception"]["evidence"] == \
        "verified_signature"
    assert new["id"] == d["id"] and new["time"] == d["time"]
    s = rj.summary
    assert (s.records, s.changed, s.skipped) == (1, 1, 0)
    assert s.verdicts == {("anomaly", "intercepted"): 1}
    assert s.outcome_classes == {("cert/untrusted_root", "cert/known_interception_ca"): 1}
    assert s.examples[0][0] == d["id"]

    # And a record the new CA does not concern keeps its verdict fields exactly.
    other = _probe(old_judge, _obs(chain_der=_ders(F.expired("facebook.com").chain)))
    again = rj(other)
    assert [again[f] for f in VERDICT_FIELDS] == [other[f] for f in VERDICT_FIELDS]
    assert rj.summary.changed == 1


def test_old_rules_version_and_verdict_are_replaced(judge: ChainJudge) -> None:
    d = _scenarios(judge)["forged"]
    old = copy.deepcopy(d)
    old.update(verdict="anomaly", rule_id="R40-untrusted-no-control", rules_version="2019.1",
               confidence=0.5, reasons=["old wording"])
    r = rejudge_record(old, lambda _at: judge)
    assert r.changed
    assert {f: r.record[f] for f in VERDICT_FIELDS} == {f: d[f] for f in VERDICT_FIELDS}


def test_a_removed_blockpage_fingerprint_falls_back_to_the_failure(judge: ChainJudge) -> None:
    d = _scenarios(judge)["blockpage_443"]
    d["outcome"] = "http/blockpage:no-longer-known"
    r = rejudge_record(d, lambda _at: judge)
    assert (r.record["verdict"], r.record["outcome"]) == ("anomaly", "tls/not_tls")
    del d["tls"]  # an older record without the stage failure: still the non-TLS answer
    r = rejudge_record(d, lambda _at: judge)
    assert (r.record["verdict"], r.record["outcome"]) == ("anomaly", "tls/not_tls")


def test_records_without_raw_evidence_pass_through(judge: ChainJudge) -> None:
    d = _scenarios(judge)["valid"]
    no_der = copy.deepcopy(d)
    del no_der["chain"][0]["der_b64"]
    bad_time = dict(d, time="yesterday")
    for rec, why in ((no_der, "chain[0] has no der_b64"), (bad_time, "not RFC 3339")):
        r = rejudge_record(rec, lambda _at: judge)
        assert r.skipped is not None and why in r.skipped
        assert r.record == rec and not r.changed


def test_judge_for_gets_the_record_time(judge: ChainJudge) -> None:
    seen: list[str] = []

    def judge_for(at: Any) -> ChainJudge:
        seen.append(at.isoformat())
        return judge

    rejudge_record(_scenarios(judge)["valid"], judge_for)
    assert seen == [F.now.isoformat()]


# -- tlswatch rejudge ------------------------------------------------------------------


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def results(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A probe output judged before the registry knew a CA, its store, and that CA."""
    store = write_store_pem(tmp_path / "public.pem", [F.public_root().cert])
    judge = ChainJudge([load_store(str(store))], load_registry())
    forged = F.forged_random_ca("facebook.com")
    path = tmp_path / "old.jsonl"
    with open_sink(path, append=False) as sink:
        sink.write(RunRecord(run_id="r1", tool="tlswatch", tool_version="0.0.1",
                             started="2019-08-01T12:00:00Z", rules_version="2019.1"))
        for i, (host, chain) in enumerate([
                ("facebook.com", forged.chain), ("vk.com", F.legitimate("vk.com").chain),
                ("example.com", F.expired("example.com").chain),
                ("mail.google.com", F.forged_random_ca("mail.google.com").chain)]):
            obs = ProbeObservation(target=Target(domain=host, sni=host, port=443),
                                   started=F.now, chain_der=_ders(chain))
            rec, _ = probe_record(record_id=f"id-{i}", run_id="r1",
                                  seen=judge_observation(obs, judge),
                                  vantage=Vantage("kz", "vantage"))
            sink.write(rec)
    ca = tmp_path / "new-ca.pem"
    ca.write_bytes(to_pem([forged.chain[-1]]))
    return path, store, ca


def _verdicts(path: Path) -> dict[str, Any]:
    return {r["id"]: r["verdict"] for r in read_records(path) if r.get("id")}


@pytest.mark.parametrize("new", ["new.jsonl", "new.sqlite", "new.csv"])
def test_a_new_registry_entry_changes_verdicts_and_says_so(
        results: tuple[Path, Path, Path], tmp_path: Path, new: str) -> None:
    old, store, ca = results
    assert _verdicts(old) == {"id-0": "anomaly", "id-1": "ok", "id-2": "anomaly",
                              "id-3": "anomaly"}
    out = tmp_path / new
    code, stdout, stderr = run("rejudge", str(old), "-o", str(out), "--store", str(store),
                               "--registry", str(ca))
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == "re-judged 4 records: 2 changed, 2 unchanged, 0 not re-judgeable"
    assert "        2  anomaly -> intercepted" in lines
    assert "        2  cert/untrusted_root -> cert/known_interception_ca" in lines
    changed = [ln for ln in lines if ln.startswith("  id-")]
    assert [ln.split()[0] for ln in changed] == ["id-0", "id-3"]
    assert "anomaly -> intercepted  (cert/untrusted_root:" in changed[0]
    assert _verdicts(out) == {"id-0": "intercepted", "id-1": "ok", "id-2": "anomaly",
                              "id-3": "intercepted"}
    rows = list(read_records(out))
    kinds = [r.get("kind") for r in rows]
    assert kinds[0] == "run" and kinds[1] == "run" and kinds[-1] == "run"
    mine = [r for r in rows if r.get("kind") == "run" and r["run_id"] != "r1"]
    assert len(mine) == 2  # opening and closing run record of the re-judging
    if new != "new.csv":
        closing = mine[-1]
        assert closing["registry_version"].endswith("+user") and closing["ended"]
        assert closing["stores"][0]["name"] == load_store(str(store)).name
        assert isinstance(closing["command"], list)  # sys.argv (pytest's, here)


def test_unchanged_records_are_copied_exactly(results: tuple[Path, Path, Path],
                                              tmp_path: Path) -> None:
    old, store, _ = results
    out = tmp_path / "same.jsonl"
    code, stdout, _ = run("rejudge", str(old), "-o", str(out), "--store", str(store),
                          "--show", "0")
    assert code == 0
    assert stdout.splitlines()[0] == \
        "re-judged 4 records: 0 changed, 4 unchanged, 0 not re-judgeable"
    old_lines = old.read_text().splitlines()
    new_lines = out.read_text().splitlines()
    assert new_lines[1:-1] == old_lines  # all but the re-judging's own run records


def test_auto_store_by_default(results: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, _, _ = results
    out = tmp_path / "auto.jsonl"
    code, stdout, _ = run("rejudge", str(old), "-o", str(out))
    assert code == 0
    # The test PKI is in no Mozilla snapshot: the valid chain is now an untrusted root.
    assert "ok -> anomaly" in stdout
    closing = json.loads(out.read_text().splitlines()[-1])
    assert closing["stores"] == [{"name": "mozilla@2019-06",
                                  "version": closing["stores"][0]["version"]}]


def test_one_line_errors(results: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, _, _ = results
    flat = tmp_path / "flat.csv"
    assert run("convert", str(old), str(flat))[0] == 0
    existing = tmp_path / "exists.jsonl"
    existing.write_text("x\n")
    cases = [
        (["rejudge", str(flat), "-o", str(tmp_path / "n.jsonl")], "without the raw chains"),
        (["rejudge", str(old), "-o", str(existing)], "exists and is not empty"),
        (["rejudge", str(old), "-o", str(old)], "is also the output"),
        (["rejudge", str(old), "-o", str(tmp_path / "n.txt")], "unknown output format"),
        (["rejudge", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "n.jsonl")],
         "no such file"),
        (["rejudge", str(old), "-o", str(tmp_path / "n.jsonl"), "--store", "nonsense"],
         "unknown trust store"),
        (["rejudge", str(old), "-o", str(tmp_path / "n.jsonl"), "--registry",
          str(tmp_path / "missing.pem")], "cannot read registry"),
    ]
    for args, message in cases:
        code, out, err = run(*args)
        assert code == 2, (args, err)
        assert err.startswith("tlswatch: error: ") and err.count("\n") == 1, err
        assert message in err and out == ""
    assert not (tmp_path / "n.jsonl").exists()


def test_help() -> None:
    code, out, _ = run("rejudge", "--help")
    assert code == 0
    for text in ("RESULTS", "-o, --output NEW", "--store", "--registry", "--show",
                 "der_b64", "auto"):
        assert text in out


@pytest.mark.parametrize("command", ["analyse", "ooni"])
def test_other_producers_outputs_rejudge_to_themselves(tmp_path: Path, command: str) -> None:
    # Captures (no SNI, failures after a chain) and OONI data (test helpers judged without a
    # name, notes after the rule's reasons) come back byte for byte.
    src = tmp_path / f"{command}.jsonl"
    inputs = [str(ROOT / "captures")] if command == "analyse" else \
        [str(p) for p in sorted((ROOT / "tests" / "ooni" / "fixtures").glob("*.jsonl"))]
    code, _, err = run(command, *inputs, "-o", str(src))
    assert code == 0, err
    out = tmp_path / "again.jsonl"
    code, stdout, err = run("rejudge", str(src), "-o", str(out))
    assert code == 0, err
    assert " 0 changed" in stdout and "differ in details" not in stdout
    assert out.read_text().splitlines()[1:-1] == src.read_text().splitlines()

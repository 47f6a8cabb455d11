"""``tlswatch analyse`` as a user runs it: the sample captures, damaged and foreign files,
directories, resume after kill -9, anonymization, schema-valid output."""

from __future__ import annotations

import base64
import gzip
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from capture.capbuild import Conv, client_hello, pcap_bytes, record, server_flight
from click.testing import CliRunner

from tlswatch.capture import open_capture
from tlswatch.cli.analyse import analyse, record_dict
from tlswatch.model import Record, from_dict, to_dict
from tlswatch.record_schema import load_schema

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
STORE = str(CAPTURES / "lab-public-root.pem")
VALIDATOR = jsonschema.Draft202012Validator(load_schema())
TLS13 = ("clean-tls13.pcapng", "clean-tls13-chacha20.pcapng", "clean-tls13-aes256.pcapng",
         "clean-tls13-hrr.pcapng", "kz2019-intercepted-tls13.pcapng", "tls13-with-dsb.pcapng")
# Run the command alone (not through the whole CLI group) in subprocesses.
ANALYSE = [sys.executable, "-c", "from tlswatch.cli.analyse import analyse; "
           "analyse.main(prog_name='tlswatch analyse')"]


def invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(analyse, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def lines_of(text: str, *, validate: bool = True) -> list[dict[str, Any]]:
    out = [json.loads(line) for line in text.splitlines() if line.strip()]
    for rec in out if validate else ():
        VALIDATOR.validate(rec)
    return out


def records(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in lines if "kind" not in r]


def expected() -> dict[str, list[tuple[str, str]]]:
    out = {}
    for e in json.loads((CAPTURES / "MANIFEST.json").read_text())["files"]:
        if not e["name"].endswith((".pcap", ".pcapng")):
            continue
        if (e["name"] in TLS13 and e["name"] != "tls13-with-dsb.pcapng") \
                or e["name"].endswith("-quic.pcap"):
            # chains encrypted without key logs (the DSB capture carries its own)
            out[e["name"]] = [("inconclusive", "cert/no_chain")]
        else:
            out[e["name"]] = [(e["expect"]["verdict"], o)
                              for o in e["expect"]["outcome"].split(", ")]
    return out


def replicated(path: Path, template: str, copies: int, salt: int = 0) -> Path:
    """A capture holding ``copies`` of a sample capture's connection, each with its own client
    port and time (bytes patched, as the benchmark does)."""
    with open_capture(CAPTURES / template) as cap:
        frames = [(ts, data) for ts, _lt, _cl, _ol, data in cap]
    client = bytes([192, 0, 2, 10])
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for i in range(copies):
        port = 1024 + (salt * 7919 + i) % 60000
        shift = i * 50_000_000  # 50 ms apart: the connections overlap a little
        for ts, data in frames:
            fr = bytearray(data)
            at = 34 if fr[26:30] == client else 36
            struct.pack_into("!H", fr, at, port)
            sec, ns = divmod(ts + shift, 1_000_000_000)
            out.append(struct.pack("<IIII", sec, ns // 1000, len(fr), len(fr)) + bytes(fr))
    path.write_bytes(b"".join(out))
    return path


# -- the sample captures ----------------------------------------------------------------------


def test_every_sample_capture_gives_its_manifest_verdict(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    code, stdout, err = invoke(str(CAPTURES), "--store", STORE, "-o", str(out))
    assert code == 0, err
    assert stdout == ""
    lines = lines_of(out.read_text())
    first, last = lines[0], lines[-1]
    assert first["kind"] == "run" and "ended" not in first and first["resumed"] is False
    assert last["kind"] == "run" and last["ended"] and last["run_id"] == first["run_id"]
    assert [s["name"] for s in first["stores"]] == [STORE]
    got: dict[str, list[tuple[str, str]]] = {}
    pending: list[dict[str, Any]] = []
    for line in lines[1:-1]:
        if line.get("kind") == "input":
            assert line["complete"] and not line["partial"] and line["records"] == len(pending)
            got[Path(line["path"]).name] = sorted((r["verdict"], r["outcome"]) for r in pending)
            pending = []
        else:
            assert line["source"] == "pcap" and line["run_id"] == first["run_id"]
            pending.append(line)
    assert got == {k: sorted(v) for k, v in expected().items()}
    # Non-captures in a directory are noted and skipped (found by content, not by name).
    assert f"tlswatch: {CAPTURES / 'MANIFEST.md'}: not a capture, skipped" in err
    assert "clean-tls12.keylog: not a capture, skipped" in err
    assert "tlswatch: note: 1 embedded TLS key log(s) read: 1 session(s)" in err
    assert "TLS handshakes 14" in err and "intercepted        2" in err and "MB/s" in err


def test_records_go_to_stdout_and_the_reset_evidence_is_there() -> None:
    code, out, err = invoke(str(CAPTURES / "reset-after-clienthello.pcap"), "--store", STORE)
    assert code == 0, err
    (rec,) = records(lines_of(out))
    assert rec["outcome"] == "tls/reset" and rec["verdict"] == "anomaly"
    assert rec["tcp"]["rst"] == {"ttl": 61, "ip_id": 0, "injected_evidence": [
        "ttl_differs_from_server(61!=52)", "ip_id_zero"]}
    assert rec["tcp"]["connect_ms"] == 40.0  # SYN -> SYN-ACK, one round trip at the client
    assert rec["flow"] == {"client_ip": "192.0.2.10", "client_port": 40009,
                           "server_ip": "198.51.100.31", "server_port": 443, "transport": "tcp"}
    assert rec["vantage"] == {"name": "reset-after-clienthello.pcap", "kind": "capture"}


def test_dns_capture() -> None:
    code, out, err = invoke(str(CAPTURES / "dns-tampering.pcap"), "-v")
    assert code == 0, err
    recs = records(lines_of(out))
    assert sorted((r["target"]["domain"], r["outcome"]) for r in recs) == [
        ("blocked-dns-nxdomain.test", "dns/nxdomain"), ("blocked-dns-zero.test", "dns/bogon:zero")]
    assert all(r["dns"]["resolver"] == "203.0.113.53:53" for r in recs)
    assert "3 DNS answers (1 with nothing wrong: no record)" in err
    assert "dns/bogon:zero  blocked-dns-zero.test  192.0.2.10:53002 -> 203.0.113.53:53/udp" in err


def test_fast_record_dict_equals_to_dict() -> None:
    code, out, _ = invoke(str(CAPTURES / "kz2019-intercepted-tls12.pcap"), "--store", STORE)
    assert code == 0
    (rec,) = records(lines_of(out))
    again = from_dict(Record, rec)
    assert record_dict(again) == to_dict(again) == rec


# -- damaged, foreign and compressed input ----------------------------------------------------


def test_a_named_non_capture_is_a_one_line_error(tmp_path: Path) -> None:
    junk = tmp_path / "notes.pcap"
    junk.write_text("hello\n")
    code, out, err = invoke(str(CAPTURES / "clean-tls12.pcap"), str(junk))
    assert code == 2 and out == ""
    assert err == f"tlswatch: error: {junk}: not a pcap or pcapng file (magic 0x68656c6c)\n"
    code, _, err = invoke(str(tmp_path / "missing.pcap"))
    assert code == 2 and err == f"tlswatch: error: {tmp_path / 'missing.pcap'}: no such file " \
                                "or directory\n"


@pytest.mark.parametrize("keep", [30, 700, 2500, 4000, 6000])
def test_truncated_copies_give_partial_results(tmp_path: Path, keep: int) -> None:
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((CAPTURES / "kz2019-intercepted-tls12.pcap").read_bytes()[:keep])
    code, out, err = invoke(str(cut), "--store", STORE)
    assert code == 0, err
    lines = lines_of(out)
    (inp,) = [r for r in lines if r.get("kind") == "input"]
    assert inp["partial"] and inp["complete"] and inp["anomalies"]["truncated_file"] == 1
    assert f"tlswatch: warning: {cut}: " in err and "results are partial" in err
    assert "Traceback" not in err
    recs = records(lines)
    if keep == 6000:  # the handshake is in the part kept
        assert [r["verdict"] for r in recs] == ["intercepted"]


def test_directory_with_junk_and_compressed_captures(tmp_path: Path) -> None:
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    shutil.copy(CAPTURES / "injected-alert.pcap", d / "b-alert.pcap")
    (d / "a-junk.pcap").write_bytes(b"\x00" * 100)
    (d / "sub" / "reset.bin").write_bytes(
        gzip.compress((CAPTURES / "reset-after-clienthello.pcap").read_bytes()))
    (d / "sub" / "z.gz").write_bytes(gzip.compress(b"not a capture inside"))
    code, out, err = invoke(str(d), "-v")
    assert code == 0, err
    lines = lines_of(out)
    inputs = [Path(r["path"]).name for r in lines if r.get("kind") == "input"]
    assert inputs == ["b-alert.pcap", "reset.bin"]  # sorted walk, found by magic number
    assert [r["outcome"] for r in records(lines)] == ["tls/alert:handshake_failure",
                                                       "tls/reset"]
    assert f"tlswatch: {d / 'a-junk.pcap'}: not a capture, skipped" in err
    assert f"{d / 'sub' / 'z.gz'}: not a pcap or pcapng file" in err and "skipped" in err


def test_the_same_content_twice_is_analysed_once(tmp_path: Path) -> None:
    copy = tmp_path / "copy.pcap"
    shutil.copy(CAPTURES / "clean-tls12.pcap", copy)
    code, out, err = invoke(str(CAPTURES / "clean-tls12.pcap"), str(copy), "--store", STORE)
    assert code == 0, err
    assert len(records(lines_of(out))) == 1
    assert f"{copy}: same content as {CAPTURES / 'clean-tls12.pcap'}, skipped" in err


def test_output_refusals(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("{}\n")
    code, _, err = invoke(str(CAPTURES / "clean-tls12.pcap"), "-o", str(out))
    assert code == 2 and "exists and is not empty: add --resume" in err
    code, _, err = invoke(str(CAPTURES / "clean-tls12.pcap"), "--resume")
    assert code == 2 and "--resume needs -o FILE" in err
    code, _, err = invoke(str(CAPTURES / "clean-tls12.pcap"), "--store", "auto", "--store",
                          STORE)
    assert code == 2 and "--store auto cannot be combined" in err


def test_default_store_is_auto_at_the_capture_time() -> None:
    code, out, err = invoke(str(CAPTURES / "clean-tls12.pcap"))
    assert code == 0, err
    lines = lines_of(out)
    assert {s["name"] for s in lines[0]["stores"]} >= {"mozilla@2019-06", "mozilla@2020-12"}
    (rec,) = records(lines)
    assert rec["validation"][0]["store"] == "mozilla@2019-06"


def test_300kb_certificate_over_200_segments_is_judged_whole(tmp_path: Path) -> None:
    from capture.test_observe import _cert

    cert = _cert(12_600)
    c = Conv()
    frames = [*c.handshake(), *c.send(0, client_hello(b"big.example"))]
    flight = c.send(1, server_flight([cert]) + record(20, b"\x01"), mss=1400)
    assert len(flight) > 200 and len(cert) > 300_000
    path = tmp_path / "big.pcap"
    path.write_bytes(pcap_bytes([*frames, *flight, *c.close()]))
    code, out, err = invoke(str(path))
    assert code == 0, err
    (rec,) = records(lines_of(out))
    (facts,) = rec["chain"]
    assert base64.b64decode(facts["der_b64"]) == cert
    assert facts["sha256"] == hashlib.sha256(cert).hexdigest()
    assert rec["outcome"] == "cert/self_signed" and rec["tls"]["bytes_read"] > 300_000


# -- resume after kill -9 ---------------------------------------------------------------------


def _comparable(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in records(lines):
        assert r["id"] not in out, f"duplicate record {r['id']}"
        out[r["id"]] = {k: v for k, v in r.items() if k != "run_id"}
    return out


def test_resume_after_sigkill_loses_and_repeats_nothing(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    copies = 400
    for i in range(5):
        replicated(inputs / f"c{i}.pcap", "kz2019-intercepted-tls12.pcap" if i % 2 else
                   "reset-after-clienthello.pcap", copies, salt=i)
    full = tmp_path / "full.jsonl"
    r = subprocess.run([*ANALYSE, str(inputs), "--store", STORE, "-o", str(full)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    reference = _comparable(lines_of(full.read_text(), validate=False))
    assert len(reference) == 5 * copies
    # Kill a third into the second file's records: where the reference output says it is.
    text = full.read_text()
    first_done = text.index('"kind":"input"')
    kill_at = first_done + (text.index('"kind":"input"', first_done + 1) - first_done) // 3

    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([*ANALYSE, str(inputs), "--store", STORE, "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.stat().st_size >= kill_at:
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed = out.read_text()
    assert 1 <= killed.count('"kind":"input"') < 5 and killed.count("\n") < 5 * copies

    r = subprocess.run([*ANALYSE, str(inputs), "--store", STORE, "-o", str(out), "--resume",
                        "-v"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "already complete in the output, skipped" in r.stderr
    lines = lines_of(out.read_text(), validate=False)
    assert _comparable(lines) == reference
    runs = [x for x in lines if x.get("kind") == "run"]
    assert runs[-1]["resumed"] is True and runs[-1]["ended"]
    assert sorted(Path(x["path"]).name for x in lines if x.get("kind") == "input") == [
        f"c{i}.pcap" for i in range(5)]


# -- anonymization ----------------------------------------------------------------------------


def _common_prefix(a: int, b: int) -> int:
    return 32 - (a ^ b).bit_length()


def test_anonymize_keeps_prefixes_and_ids_stable(tmp_path: Path) -> None:
    frames: list[tuple[int, bytes]] = []
    clients = ["10.1.2.3", "10.1.2.200", "10.9.0.1"]
    for i, ip in enumerate(clients):
        c = Conv(client=(ip, 40000 + i), t0=10**18 + i * 10**9)
        frames += [*c.handshake(), *c.send(0, client_hello()), c.frame(c.pkt(1, "RA")),
                   *Conv(client=("10.200.0.1", 1), t0=c.t0 + 30 * 10**9).handshake()]
    path = tmp_path / "a.pcap"
    path.write_bytes(pcap_bytes(sorted(frames)))
    key = tmp_path / "key"
    runs = []
    for _ in range(2):
        code, out, err = invoke(str(path), "--anonymize", "--anonymize-key", str(key))
        assert code == 0, err
        runs.append(lines_of(out))
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert "created the anonymization key" not in err  # only the first run creates it
    recs = [r for r in records(runs[0]) if r["outcome"] == "tls/reset"]
    pseudo = {r["flow"]["client_port"]: r["flow"]["client_ip"] for r in recs}
    assert len(pseudo) == 3 and not set(pseudo.values()) & set(clients)
    anon = [int(ipaddress.ip_address(pseudo[40000 + i])) for i in range(3)]
    real = [int(ipaddress.ip_address(ip)) for ip in clients]
    for i, j in ((0, 1), (0, 2), (1, 2)):  # shared prefix lengths exactly as the originals'
        assert _common_prefix(anon[i], anon[j]) == _common_prefix(real[i], real[j])
    assert _common_prefix(anon[0], anon[1]) >= 24  # the /24 stays one /24
    assert all(r["flow"]["server_ip"] == "10.0.0.2" for r in recs)  # servers stay as they are
    assert [r["id"] for r in records(runs[0])] == [r["id"] for r in records(runs[1])]
    plain = records(lines_of(invoke(str(path))[1]))
    assert {r["id"] for r in plain}.isdisjoint(r["id"] for r in records(runs[0]))
    (inp,) = [r for r in runs[0] if r.get("kind") == "input"]
    assert inp["anonymize_key_id"] and len(inp["anonymize_key_id"]) == 16


def test_resume_refuses_other_anonymize_settings(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    assert invoke(str(CAPTURES / "clean-tls12.pcap"), "-o", str(out))[0] == 0
    code, _, err = invoke(str(CAPTURES / "clean-tls12.pcap"), "-o", str(out), "--resume",
                          "--anonymize-key", str(tmp_path / "k"))
    assert code == 2 and "other --anonymize settings" in err


def test_sigterm_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        replicated(inputs / f"t{i}.pcap", "kz2019-intercepted-tls12.pcap", 300, salt=10 + i)
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([*ANALYSE, str(inputs), "--store", STORE, "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.stat().st_size > 100_000:  # inside the first file
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted; run again with --resume to finish" in err and "Traceback" not in err
    r = subprocess.run([*ANALYSE, str(inputs), "--store", STORE, "-o", str(out), "--resume"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    recs = _comparable(lines_of(out.read_text(), validate=False))
    assert len(recs) == 900


def test_the_live_line_is_for_terminals_only() -> None:
    import io

    from tlswatch.cli.analyse import _FileProgress

    _, out, _ = invoke(str(CAPTURES / "clean-tls12.pcap"), "--store", STORE)
    rec = from_dict(Record, records(lines_of(out))[0])
    stream = io.StringIO()
    p = _FileProgress(stream, live=True, verbose=False, interval=0)
    p.index, p.count, p.file, p.size = 1, 2, "a.pcap", 1000
    p.record(rec)
    p.tick(500)
    p.message("tlswatch: hello")
    p.close()
    text = stream.getvalue()
    assert "\r\x1b[Kfile 1/2  50% a.pcap  1 records  ok 1" in text
    assert "\r\x1b[Ktlswatch: hello\n" in text or "tlswatch: hello\n" in text
    quiet = io.StringIO()
    q = _FileProgress(quiet, live=False, verbose=False)
    q.record(rec)
    q.tick(5)
    assert quiet.getvalue() == ""


def test_sqlite_output_and_resume(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tlswatch.cli.main import cli
    from tlswatch.sinks.readers import read_records

    out = tmp_path / "r.sqlite"
    args = ["analyse", str(CAPTURES / "kz2019-intercepted-tls12.pcap"), "--store",
            str(CAPTURES / "lab-public-root.pem"), "-o", str(out)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.stderr
    first = [x for x in read_records(out) if x.get("kind") is None]
    assert [x["verdict"] for x in first] == ["intercepted"]
    r = CliRunner().invoke(cli, [*args, "--resume"])
    assert r.exit_code == 0, r.stderr
    assert [x["id"] for x in read_records(out) if x.get("kind") is None] == [first[0]["id"]]


def test_routable_networks_are_not_bogons(tmp_path: Path) -> None:
    from capture.capbuild import eth
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP

    answer = eth() / IP(src="203.0.113.53", dst="192.0.2.10") / UDP(sport=53, dport=53001) / DNS(
        id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname="testbed.example"),
        an=DNSRR(rrname="testbed.example", type="A", rdata="10.9.8.7"))
    cap = tmp_path / "testbed-dns.pcap"
    cap.write_bytes(pcap_bytes([(1_700_000_000 * 10**9, bytes(answer))]))
    code, out, err = invoke(str(cap))
    assert code == 0, err
    (rec,) = records(lines_of(out))
    assert rec["outcome"] == "dns/bogon:private"  # 10/8 is no public address by default
    code, out, err = invoke(str(cap), "--routable", "10.0.0.0/8")
    assert code == 0, err
    assert records(lines_of(out)) == []  # the testbed's word: a normal answer, no record
    assert "1 with nothing wrong" in err
    code, _, err = invoke(str(cap), "--routable", "10.0.0.0/33")
    assert code == 2
    assert err.strip().splitlines()[-1].endswith(
        "--routable '10.0.0.0/33': expected a network such as 198.18.0.0/15")


def test_summary_counts_quic_flows() -> None:
    code, out, err = invoke(str(CAPTURES / "kz2019-intercepted-quic.pcap"), "--keylog",
                            str(CAPTURES / "kz2019-intercepted-quic.keylog"), "--store", STORE)
    assert code == 0, err
    (rec,) = records(lines_of(out))
    assert rec["verdict"] == "intercepted" and rec["flow"]["transport"] == "udp"
    assert "in 0 TCP flows and 1 QUIC flows;" in err


def test_the_tlswatch_command_ends_fast_with_everything_written(tmp_path: Path) -> None:
    """`tlswatch analyse` skips the interpreter's teardown (tlswatch.cli.main.FAST_EXIT):
    its records, input and closing run records are all in the file, stdout is flushed and
    the exit status is kept."""
    out = tmp_path / "out.jsonl"
    base = [sys.executable, "-m", "tlswatch", "analyse", str(CAPTURES / "clean-tls12.pcap"),
            "--store", STORE]
    r = subprocess.run([*base, "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = lines_of(out.read_text())
    assert [x.get("kind") for x in lines] == ["run", None, "input", "run"]
    assert lines[-1].get("ended")
    r = subprocess.run(base, capture_output=True, text=True, timeout=60)  # to a pipe
    assert r.returncode == 0 and r.stdout.count("\n") == 4 and r.stdout.endswith("}\n")
    r = subprocess.run([*base[:4], str(tmp_path / "missing.pcap")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "no such file" in r.stderr

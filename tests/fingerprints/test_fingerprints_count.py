"""tlswatch fingerprints: counting ClientHellos per client network, flags, CLI output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from capture.capbuild import Conv, pcap_bytes
from click.testing import CliRunner
from tls.tls_builders import client_hello_body, hs, record, sni_ext

from tlswatch.cli.main import cli
from tlswatch.fingerprints import FingerprintCounter, Hello, load_known, network_of
from tlswatch.fingerprints.count import hellos_in

BROWSER = tuple(range(0xC001, 0xC011))  # 16 suites
BOX = tuple(range(0x0030, 0x003D))  # 13 suites
RARE = (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F)


def hello(ciphers: tuple[int, ...], sni: bytes, rv: int = 0x0303) -> bytes:
    return record(22, hs(1, client_hello_body(ciphers, [sni_ext(sni)])), version=rv)


def flow(client: str, port: int, payload: bytes) -> list[tuple[int, bytes]]:
    # Flows one after the other (each its own second): capture order is time order.
    t0 = 1_700_000_000_000_000_000 + port * 1_000_000_000
    c = Conv(client=(client, port), server=("198.51.100.10", 443), t0=t0)
    return [*c.handshake(), *c.send(0, payload), *c.close()]


def write_capture(path: Path) -> Path:
    frames: list[tuple[int, bytes]] = []
    for i in range(3):
        frames += flow(f"10.1.1.{i + 1}", 40000 + i, hello(BROWSER, b"www.example.test", 0x0301))
        frames += flow(f"10.2.2.{i + 1}", 41000 + i, hello(BROWSER, b"www.example.test", 0x0301))
    frames += flow("10.3.3.7", 42000, hello(BOX, b"facebook.com", 0x0301))
    frames += flow("10.4.4.9", 43000, hello(RARE, "odd\x1b[31m\u202e.test".encode()))
    path.write_bytes(pcap_bytes(frames))
    return path


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    return write_capture(tmp_path / "server.pcap")


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["fingerprints", *args])
    return r.exit_code, r.stdout, r.stderr


def test_hellos_read_client_side_with_record_version(capture: Path) -> None:
    hs_ = list(hellos_in(capture))
    assert len(hs_) == 8
    box = [h for h in hs_ if h.network == "10.3.3.0/24"]
    assert box[0].record_version == 0x0301 and box[0].cipher_suite_count == 13
    assert {h.network for h in hs_} == {"10.1.1.0/24", "10.2.2.0/24", "10.3.3.0/24",
                                        "10.4.4.0/24"}


def test_flags_known_rare_and_common(capture: Path) -> None:
    code, out, err = run("--format", "json", "--min-share", "0.2", str(capture))
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    by_net = {r["network"]: r for r in rows}
    assert by_net["10.3.3.0/24"]["flag"] == "known:kz-2019-box-pattern"
    assert by_net["10.4.4.0/24"]["flag"] == "rare"
    assert by_net["10.1.1.0/24"]["flag"] == "" and by_net["10.2.2.0/24"]["flag"] == ""
    assert by_net["10.1.1.0/24"]["count"] == 3
    assert by_net["10.1.1.0/24"]["fingerprint_count"] == 6
    assert by_net["10.1.1.0/24"]["share"] == 0.75
    assert [r["flag"] for r in rows][:2] == ["known:kz-2019-box-pattern", "rare"]
    assert "8 hellos" in err and "1 known, 1 rare" in err


def test_json_schema_is_stable(capture: Path) -> None:
    code, out, _ = run("--format", "json", str(capture))
    assert code == 0
    for line in out.splitlines():
        row = json.loads(line)
        assert sorted(row) == ["count", "fingerprint_count", "fingerprint_networks", "flag",
                               "ja3", "ja4", "network", "share", "sni"]
        assert isinstance(row["count"], int) and isinstance(row["share"], float)
        assert len(row["ja3"]) == 32 and row["ja4"].startswith("t")


def test_default_threshold_rare_needs_small_share(capture: Path) -> None:
    # 1 of 8 hellos is 12.5%: not rare at the default 1%.
    code, out, _ = run("--format", "json", str(capture))
    assert code == 0
    flags = {json.loads(line)["network"]: json.loads(line)["flag"] for line in out.splitlines()}
    assert flags["10.4.4.0/24"] == ""


def test_text_table_neutralises_hostile_sni(capture: Path) -> None:
    code, out, _ = run("--min-share", "0.2", "--top", "2", str(capture))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["NETWORK", "JA4", "JA3", "COUNT", "SHARE", "FLAG"]
    assert len(lines) == 3
    assert "\x1b" not in out and "\u202e" not in out
    assert "odd\\x1b[31m" in out  # ESC shown as text; the parser escapes non-ASCII bytes
    assert "known:kz-2019-box-pattern" in lines[1] and "rare" in lines[2]


def test_non_capture_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    code, out, err = run(str(bad))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("tlswatch: error: ")
    code, _, err = run(str(tmp_path / "missing.pcap"))
    assert code == 2 and "no such file" in err and err.count("\n") == 1


def test_directory_skips_non_captures(tmp_path: Path) -> None:
    write_capture(tmp_path / "a.pcap")
    (tmp_path / "readme.txt").write_text("x")
    code, out, err = run("--format", "json", str(tmp_path))
    assert code == 0 and len(out.splitlines()) == 4
    assert "not a capture, skipped" in err


def test_cap_bounds_rows_and_counts_overflow(capture: Path) -> None:
    code, out, err = run("--format", "json", "--max-keys", "2", str(capture))
    assert code == 0
    assert len(out.splitlines()) == 2
    assert "overflow: 2 hellos" in err  # 8 hellos: 6 tabulated in 2 rows, box + rare over


def test_counter_cap_unit() -> None:
    c = FingerprintCounter(max_keys=1)
    for i in range(5):
        c.add(Hello(f"10.0.{i}.0/24", "t13x", "a" * 32, None, 0x0303, 3))
    assert c.total == 5 and c.overflow == 4 and len(c.rows()) == 1


def test_anonymize_key_keeps_networks_grouped(capture: Path, tmp_path: Path) -> None:
    key = tmp_path / "key"
    code, out, _ = run("--format", "json", "--anonymize-key", str(key), str(capture))
    assert code == 0 and key.stat().st_size == 32
    nets = {json.loads(line)["network"] for line in out.splitlines()}
    assert len(nets) == 4 and not nets & {"10.1.1.0/24", "10.2.2.0/24"}


def test_network_of_v4_v6() -> None:
    assert network_of("192.0.2.77") == "192.0.2.0/24"
    assert network_of("2001:db8:1:2::5") == "2001:db8:1::/48"


def test_bundled_known_list_has_provenance() -> None:
    known = load_known()
    kz = [k for k in known if k.label == "kz-2019-box-pattern"]
    assert kz and kz[0].record_version == 0x0301 and kz[0].cipher_suite_count == 13
    assert kz[0].ja3 is None and "Kazakhstan" in kz[0].source and "IMC 2020" in kz[0].source
    for k in known:
        assert k.source and k.description


def test_bad_known_list_is_one_line(capture: Path, tmp_path: Path) -> None:
    bad = tmp_path / "known.json"
    bad.write_text('{"entries": [{"label": "x", "match": {"colour": 1}}]}')
    code, _, err = run("--known", str(bad), str(capture))
    assert code == 2 and err.count("\n") == 1

"""One capture split into chunks (offset index + "the first packet decides") gives the records
of a whole-file run: at every split point of small files, through the CLI on a cluster, with
--resume after a half-written file, and when a worker dies mid-chunk."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import require_module

from tlswatch.capture import open_capture
from tlswatch.capture.chunk import LOOKBACK_NS
from tlswatch.capture.offset_index import NotSplittable, build_index, plan_at, plan_chunks
from tlswatch.cli.analyse import AnalyseOptions, analyse, analyse_file, parse_size
from tlswatch.cli.errors import InputError
from tlswatch.distributed.split import FileIndex, analyse_chunk, merge_chunks
from tlswatch.sinks.base import EncodedRecord

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
STORE = str(CAPTURES / "lab-public-root.pem")
OPTIONS = AnalyseOptions(run_id="split-test", stores=(STORE,))
_CLIENT = bytes([192, 0, 2, 10])  # the sample captures' client


def canon(records: list[EncodedRecord] | list[dict[str, Any]]) -> Counter[str]:
    """Records (from a worker, or read back from an output) without their run ids."""
    dicts = [r.as_dict() if isinstance(r, EncodedRecord) else r for r in records]
    return Counter(json.dumps({k: v for k, v in r.items() if k != "run_id"}, sort_keys=True)
                   for r in dicts)


def interleaved(tmp: Path, names: list[str], copies: int = 3) -> Path:
    """The sample captures' packets, each capture replayed ``copies`` times with its own
    client address, all copies overlapping in time (1 ms apart): flows cross every split."""
    frames: list[tuple[int, bytes]] = []
    for c in range(copies):
        for n, name in enumerate(names):
            with open_capture(CAPTURES / name) as cap:
                packets = list(cap)
            t0 = packets[0][0]
            new = bytes([10, 9, c, n + 1])
            for ts, _lt, _cl, _ol, data in packets:
                fr = bytearray(data)
                for at in (26, 30):  # IPv4 source, destination (Ethernet framing)
                    if fr[at : at + 4] == _CLIENT:
                        fr[at : at + 4] = new
                frames.append((1_564_660_800_000_000_000 + (ts - t0) + (c * 7 + n) * 1_000_000,
                               bytes(fr)))
    frames.sort(key=lambda f: f[0])
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)]
    for ts, fr in frames:
        sec, ns = divmod(ts, 1_000_000_000)
        out += [struct.pack("<IIII", sec, ns, len(fr), len(fr)), fr]
    path = tmp / "interleaved.pcap"
    path.write_bytes(b"".join(out))
    return path


PCAP_NAMES = ["clean-tls12.pcap", "kz2019-intercepted-tls12.pcap", "reset-after-clienthello.pcap",
              "blockpage-on-443.pcap", "dns-tampering.pcap", "injected-alert.pcap"]


def split_run(path: Path, starts: list[int], step: int = 1,
              lookback_ns: int = LOOKBACK_NS) -> Any:
    idx = build_index(path, step=step)
    plans = plan_at(idx, starts, lookback_ns=lookback_ns)
    fi = FileIndex(idx.sha256, idx.size, idx.format, idx.total_packets, idx.key_logs,
                   tuple(plans))
    return merge_chunks(str(path), fi, [analyse_chunk(p, OPTIONS, idx.sha256) for p in plans],
                        OPTIONS.run_id)


def test_index_counts_every_packet_and_hashes_the_file(tmp_path: Path) -> None:
    for path in [interleaved(tmp_path, PCAP_NAMES[:2]), CAPTURES / "tls13-with-dsb.pcapng"]:
        idx = build_index(path, step=1)
        with open_capture(path) as cap:
            n = sum(1 for _ in cap)
        assert idx.total_packets == n > 10 and not idx.damaged
        assert idx.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        # a checkpoint after every record (pcapng: every block) and one before the first
        assert len(idx.offsets) == n + 1 if idx.format == "pcap" else len(idx.offsets) > n
        assert list(idx.packets) == sorted(idx.packets) and idx.offsets[-1] == idx.size


def test_every_split_point_of_a_pcap_gives_the_same_records(tmp_path: Path) -> None:
    path = interleaved(tmp_path, PCAP_NAMES)
    whole = analyse_file(path, OPTIONS)
    assert whole.input is not None and len(whole.records) >= 18
    n = len(build_index(path, step=1).offsets)
    assert n > 150
    for i in range(1, n):
        got = split_run(path, [0, i])
        assert got.error is None and got.input is not None
        assert canon(got.records) == canon(whole.records), f"split at checkpoint {i}"
        inp = got.input
        assert (inp.packets, inp.flows, inp.handshakes, inp.sha256) == (
            whole.input.packets, whole.input.flows, whole.input.handshakes, whole.input.sha256)


@pytest.mark.parametrize("name", ["tls13-with-dsb.pcapng", "kz2019-intercepted-tls13.pcapng"])
def test_every_split_point_of_a_pcapng_gives_the_same_records(name: str) -> None:
    """pcapng chunks carry the section header, interfaces and embedded key logs they need."""
    path = CAPTURES / name
    whole = analyse_file(path, OPTIONS)
    assert whole.input is not None and whole.records
    n = len(build_index(path, step=1).offsets)
    for i in range(1, n):
        got = split_run(path, [0, i])
        assert canon(got.records) == canon(whole.records), f"split at checkpoint {i}"
        assert got.input is not None and got.input.warnings == whole.input.warnings
    # and into many chunks at once
    got = split_run(path, list(range(0, n, 3)))
    assert canon(got.records) == canon(whole.records)


def test_many_chunks_and_a_short_lookback(tmp_path: Path) -> None:
    path = interleaved(tmp_path, PCAP_NAMES, copies=4)
    whole = analyse_file(path, OPTIONS)
    idx = build_index(path, step=1)
    for k in (3, 7, 20):
        got = split_run(path, [p.start and idx.offsets.index(p.start)
                               for p in plan_chunks(idx, k, lookback_ns=LOOKBACK_NS)])
        assert canon(got.records) == canon(whole.records), k
    # Without a look-back a chunk cannot tell a flow that began before it from its own: the
    # look-back is what keeps other chunks' flows out.
    cuts = [0, len(idx.offsets) // 3, 2 * len(idx.offsets) // 3]
    assert canon(split_run(path, cuts, lookback_ns=LOOKBACK_NS).records) == canon(whole.records)
    no_lookback = split_run(path, cuts, lookback_ns=-(1 << 62))  # reads from its start only
    assert canon(no_lookback.records) != canon(whole.records)


def test_compressed_and_non_captures_are_not_split(tmp_path: Path) -> None:
    import gzip

    gz = tmp_path / "a.pcap.gz"
    gz.write_bytes(gzip.compress((CAPTURES / "clean-tls12.pcap").read_bytes()))
    with pytest.raises(NotSplittable):
        build_index(gz)
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(NotSplittable):
        build_index(junk)


def test_truncated_file_split_gives_the_same_records_and_warning(tmp_path: Path) -> None:
    path = interleaved(tmp_path, PCAP_NAMES)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(path.read_bytes()[:-30])
    whole = analyse_file(cut, OPTIONS)
    assert whole.input is not None and whole.input.partial
    idx = build_index(cut, step=1)
    assert idx.damaged
    for i in range(1, len(idx.offsets), 17):
        got = split_run(cut, [0, i])
        assert canon(got.records) == canon(whole.records)
        assert got.input is not None and got.input.partial
        assert got.input.warnings == whole.input.warnings


def test_parse_size() -> None:
    assert parse_size("64MB") == 64_000_000 and parse_size("1GiB") == 1 << 30
    assert parse_size("0") == 0 and parse_size("512k") == 512_000
    with pytest.raises(InputError):
        parse_size("lots")


# -- through the CLI, on a cluster ---------------------------------------------------------

distributed = require_module("distributed", module_level=True)


def invoke(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(analyse, list(args), catch_exceptions=False)
    return r.exit_code, r.stderr


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("big")
    path = interleaved(tmp, PCAP_NAMES, copies=6)
    out = tmp / "single.jsonl"
    code, err = invoke(str(path), "--store", STORE, "-o", str(out))
    assert code == 0, err
    return path, lines_of(out)


def records_and_inputs(lines: list[dict[str, Any]]) -> tuple[Counter[str], list[dict[str, Any]]]:
    recs = [x for x in lines if x.get("kind") is None]
    inputs = [{k: v for k, v in x.items() if k != "run_id"} for x in lines
              if x.get("kind") == "input"]
    return canon(recs), inputs


def test_cli_splits_a_large_file_on_the_cluster(
        tmp_path: Path, cluster: Any, big: tuple[Path, list[dict[str, Any]]]) -> None:
    path, single = big
    out = tmp_path / "out.jsonl"
    code, err = invoke(str(path), "--store", STORE, "-o", str(out), "--scheduler",
                       cluster.scheduler_address, "--split-size", "4KB")
    assert code == 0, err
    got = lines_of(out)
    assert records_and_inputs(got) == records_and_inputs(single)
    assert got[-2]["kind"] == "input" and got[-2]["complete"]  # after all its records


def test_resume_after_a_half_written_split_file(
        tmp_path: Path, cluster: Any, big: tuple[Path, list[dict[str, Any]]]) -> None:
    """Records of some chunks were written, the input record was not: --resume redoes the
    file and writes only the records still missing, then the input record."""
    path, single = big
    out = tmp_path / "out.jsonl"
    recs = [x for x in single if x.get("kind") is None]
    out.write_text("".join(json.dumps(x) + "\n" for x in [single[0], *recs[: len(recs) // 2]]))
    code, err = invoke(str(path), "--store", STORE, "-o", str(out), "--resume",
                       "--scheduler", cluster.scheduler_address, "--split-size", "4KB")
    assert code == 0, err
    got = lines_of(out)
    assert records_and_inputs(got)[0] == records_and_inputs(single)[0]
    assert all(n == 1 for n in records_and_inputs(got)[0].values())
    code, err = invoke(str(path), "--store", STORE, "-o", str(out), "--resume",
                       "--scheduler", cluster.scheduler_address, "--split-size", "4KB")
    assert code == 0 and "already done" in err
    assert len(lines_of(out)) == len(got) + 2  # only the resumed run's run records


def test_worker_killed_mid_chunk(tmp_path: Path, cluster: Any, monkeypatch: pytest.MonkeyPatch,
                                 big: tuple[Path, list[dict[str, Any]]]) -> None:
    import tlswatch.distributed.analyse as dist

    path, single = big
    marker = tmp_path / "killed"

    def kill_once(plan: Any, options: AnalyseOptions, sha: str) -> Any:
        """Die in the middle of chunk 1 the first time (its work is lost with the worker)."""
        if plan.index == 1 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return analyse_chunk(plan, options, sha)

    monkeypatch.setattr(dist, "CHUNK_TASK", kill_once)
    out = tmp_path / "out.jsonl"
    code, err = invoke(str(path), "--store", STORE, "-o", str(out), "--scheduler",
                       cluster.scheduler_address, "--split-size", "4KB")
    assert code == 0, err
    assert marker.exists()
    got = lines_of(out)
    assert records_and_inputs(got) == records_and_inputs(single)
    assert all(n == 1 for n in records_and_inputs(got)[0].values())
    client = distributed.Client(cluster, set_as_default=False)
    try:
        client.wait_for_workers(2, timeout=30)
    finally:
        client.close()

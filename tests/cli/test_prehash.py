"""The early SHA-256 of the first capture on an analyse command line (tlswatch.cli.prehash)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tlswatch.cli import prehash


def _capture(path: Path, size: int = 2 << 20) -> Path:
    path.write_bytes(b"\xd4\xc3\xb2\xa1" + os.urandom(size))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_first_capture_is_hashed_early_and_handed_out_once(tmp_path: Path) -> None:
    store = tmp_path / "store.pem"
    store.write_bytes(b"-----BEGIN CERTIFICATE-----\n" * 100_000)  # not a capture: skipped
    cap = _capture(tmp_path / "a.pcap")
    prehash.start(["--store", str(store), str(cap), "-o", str(tmp_path / "out.jsonl")])
    assert len(prehash._pending) == 1
    assert prehash.sha256(cap) == _sha(cap)
    assert not prehash._pending  # taken; a second ask computes it again
    assert prehash.sha256(cap) == _sha(cap)


def test_a_file_changed_after_the_early_hash_is_hashed_again(tmp_path: Path) -> None:
    cap = _capture(tmp_path / "a.pcap")
    prehash.start([str(cap)])
    with open(cap, "ab") as f:
        f.write(b"more packets")
    assert prehash.sha256(cap) == _sha(cap)
    prehash._pending.clear()


def test_small_files_and_missing_ones_are_left_alone(tmp_path: Path) -> None:
    small = _capture(tmp_path / "small.pcap", size=1000)
    prehash.start([str(small), str(tmp_path / "missing.pcap")])
    assert not prehash._pending
    assert prehash.sha256(small) == _sha(small)

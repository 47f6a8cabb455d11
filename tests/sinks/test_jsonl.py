"""The append-only JSONL writer: round trip, torn tails, and a writer killed mid-write."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tlswatch.model import Record, Target, from_dict
from tlswatch.sinks.jsonl import JsonlError, JsonlWriter, read_jsonl, repair_tail


def _rec(i: int) -> Record:
    return Record(id=f"id{i}", run_id="r", source="probe", time="2019-08-01T00:00:00Z",
                  target=Target(domain=f"d{i}.example", sni=f"d{i}.example"))


def test_round_trip_and_append(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with JsonlWriter(out, batch=3) as w:
        for i in range(5):
            w.write(_rec(i))
    with JsonlWriter(out) as w:
        w.write(_rec(5))
    got = [from_dict(Record, d) for d in read_jsonl(out)]
    assert got == [_rec(i) for i in range(6)]


def test_batches_reach_the_file_before_close(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    w = JsonlWriter(out, batch=2)
    w.write(_rec(0))
    assert out.read_bytes() == b""
    w.write(_rec(1))
    assert len(out.read_bytes().splitlines()) == 2
    w.close()


@pytest.mark.parametrize("tail", [b'{"id": "torn', b"x", b'{"a":1}'])
def test_torn_last_line_is_cut_on_reopen(tmp_path: Path, tail: bytes) -> None:
    out = tmp_path / "r.jsonl"
    with JsonlWriter(out) as w:
        w.write(_rec(0))
    good = out.read_bytes()
    out.write_bytes(good + tail)
    with JsonlWriter(out) as w:
        assert w.repaired_bytes == len(tail)
        w.write(_rec(1))
    assert [d["id"] for d in read_jsonl(out, strict=True)] == ["id0", "id1"]


def test_repair_of_a_file_with_no_complete_line(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.write_bytes(b'{"partial')
    assert repair_tail(out) == 9
    assert out.read_bytes() == b""


def test_strict_read_names_file_and_line(tmp_path: Path) -> None:
    out = tmp_path / "bad.jsonl"
    out.write_bytes(b'{"a":1}\nnot json\n')
    with pytest.raises(JsonlError, match=r"bad\.jsonl: line 2: not JSON"):
        list(read_jsonl(out, strict=True))
    assert list(read_jsonl(out)) == [{"a": 1}]


def test_stream_target_and_hostile_strings_stay_on_one_line() -> None:
    buf = io.StringIO()
    w = JsonlWriter(buf, batch=1)
    w.write({"subject": "CN=evil\n\r\x1b[31m\u202e"})
    line = buf.getvalue()
    assert line.count("\n") == 1 and line.isascii()
    assert json.loads(line)["subject"] == "CN=evil\n\r\x1b[31m\u202e"


_WRITER = """
import sys
from pathlib import Path
from tlswatch.sinks.jsonl import JsonlWriter
w = JsonlWriter(Path(sys.argv[1]), batch=7)
start = int(sys.argv[2])
i = start
while True:
    w.write({"id": i, "pad": "x" * (i % 997)})
    i += 1
"""


def test_killed_writer_leaves_a_readable_file(tmp_path: Path) -> None:
    out = tmp_path / "k.jsonl"
    start = 0
    for delay in (0.15, 0.05, 0.3):
        p = subprocess.Popen([sys.executable, "-c", _WRITER, str(out), str(start)])
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        with JsonlWriter(out):
            pass  # reopen repairs a torn tail
        ids = [d["id"] for d in read_jsonl(out, strict=True)]
        assert ids == list(range(len(ids)))  # contiguous: nothing duplicated or reordered
        start = len(ids)
    assert start > 0

"""Campaign inputs: text and CSV target lists, IDN, bad lines, duplicates, streaming, vantages."""

from __future__ import annotations

import itertools
import os
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tlswatch.ids import record_id
from tlswatch.model import Target, Vantage
from tlswatch.probe.inputs import (
    IDNA_BACKEND,
    Endpoint,
    InputLineError,
    TargetSpec,
    VantageSpec,
    count_lines,
    iter_targets,
    iter_tasks,
    load_vantages,
    parse_endpoint,
    parse_target,
    to_a_label,
)


def collect(path: Path | None = None, args: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    got = [t.domain for t in iter_targets(args, [path] if path else [], report=problems.append)]
    return got, problems


def test_text_list_names_urls_comments_idn(tmp_path: Path) -> None:
    f = tmp_path / "list.txt"
    f.write_text(
        "# a comment line\n"
        "example.com\n"
        "\n"
        "  https://www.Example.org/some/path?q=1  \n"
        "http://site.example:8080/   # trailing comment\n"
        "Bücher.example.\n"
        "xn--bcher-kva.example\n"
        "under_score.example\n",
        encoding="utf-8",
    )
    got, problems = collect(f)
    assert got == ["example.com", "www.example.org", "site.example", "xn--bcher-kva.example",
                   "under_score.example"]
    # The A-label given literally is the same target as its U-label: a duplicate.
    assert problems == [f"{f}:7: duplicate target xn--bcher-kva.example, skipped"]
    assert IDNA_BACKEND in ("idna", "python-codec")


def test_bad_lines_get_one_exact_message_each(tmp_path: Path) -> None:
    f = tmp_path / "bad.txt"
    f.write_bytes(
        b"good.example\n"
        b"a..b.example\n"
        b"1.2.3.4\n"
        b"999.1.1.1\n"
        b"-lead.example\n"
        b"two words\n"
        b"https://[::1]/\n"
        b"https://host:99999/\n"
        b"\xff\xfe.example\n"
        + b"x" * 9000 + b"\n"
        + b"xn--zz.example\n"
        b"example.123\n"
        b"last.example\n"
    )
    got, problems = collect(f)
    assert got == ["good.example", "last.example"]
    assert problems == [
        f"{f}:2: empty label in 'a..b.example'",
        f"{f}:3: 1.2.3.4 is an IP address, not a domain (use --connect to choose IPs)",
        f"{f}:4: '999.1.1.1' is not a valid IP address or domain name",
        f"{f}:5: invalid character or hyphen placement in '-lead.example'",
        f"{f}:6: expected one domain or URL, got 'two words'",
        f"{f}:7: ::1 is an IP address, not a domain (use --connect to choose IPs)",
        f"{f}:8: not a valid URL 'https://host:99999/' (Port out of range 0-65535)",
        f"{f}:9: not UTF-8 text",
        f"{f}:10: line longer than 8192 bytes",
        f"{f}:11: invalid A-label 'xn--zz' in 'xn--zz.example'",
        f"{f}:12: 'example.123' has an all-numeric top-level label",
    ]


def test_citizen_lab_csv(tmp_path: Path) -> None:
    f = tmp_path / "global.csv"
    f.write_text(
        "url,category_code,category_description,date_added,source,notes\n"
        "https://www.facebook.com/,GRP,Social Networking,2017-04-12,,\n"
        'http://vk.com/,GRP,Social Networking,2017-04-12,citizenlab,"notes, with a comma"\n'
        'https://broken.example/,NEWS,"News Media,2017-04-12,,\n'
        "https://short.example/,NEWS\n"
        ",NEWS,News Media,2017-04-12,,\n"
        "https://1.1.1.1/,ANON,Anonymization,2017-04-12,,\n"
        "https://пример.рф/,GOVT,Government,2017-04-12,,\n"
        "https://www.facebook.com/other,GRP,Social Networking,2017-04-12,,\n"
        "https://last.example/,NEWS,News Media,2017-04-12,,\n",
        encoding="utf-8",
    )
    got, problems = collect(f)
    assert got == ["www.facebook.com", "vk.com", "xn--e1afmkfd.xn--p1ai", "last.example"]
    assert problems == [
        f"{f}:4: malformed CSV row (unexpected end of data)",
        f"{f}:5: malformed CSV row: 2 fields, the header has 6",
        f"{f}:6: malformed CSV row: empty url",
        f"{f}:7: 1.1.1.1 is an IP address, not a domain (use --connect to choose IPs)",
        f"{f}:9: duplicate target www.facebook.com, skipped",
    ]


def test_arguments_and_files_share_duplicate_detection(tmp_path: Path) -> None:
    f = tmp_path / "l.txt"
    f.write_text("a.example\nb.example\n")
    got, problems = collect(f, ("A.example", "bad..x", "c.example"))
    assert got == ["a.example", "c.example", "b.example"]
    assert problems == ["argument 2: empty label in 'bad..x'",
                        f"{f}:1: duplicate target a.example, skipped"]


def test_unreadable_file_is_reported_and_the_rest_runs(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    problems: list[str] = []
    got = list(iter_targets(["x.example"], [missing], report=problems.append))
    assert [t.domain for t in got] == ["x.example"]
    assert problems == [f"{missing}: cannot read (No such file or directory)"]


def test_targets_stream_from_a_pipe_before_the_writer_finishes(tmp_path: Path) -> None:
    # A FIFO proves laziness: the writer blocks until the first target has been read, so
    # a reader that loaded the file whole would never see it.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    first_seen = threading.Event()

    def writer() -> None:
        with open(fifo, "w") as w:
            w.write("first.example\n")
            w.flush()
            first_seen.wait(5)
            w.write("".join(f"n{i}.example\n" for i in range(1000)))

    t = threading.Thread(target=writer)
    t.start()
    it = iter_targets([], [fifo], report=lambda m: None)
    assert next(it).domain == "first.example"
    first_seen.set()
    assert sum(1 for _ in it) == 1000
    t.join(5)


def test_a_large_file_is_streamed_in_constant_memory(tmp_path: Path) -> None:
    f = tmp_path / "large.txt"
    pad = "p" * 250  # long lines: a whole-file read would show up clearly in the peak
    with open(f, "w") as w:
        for i in range(3_000):
            w.write(f"https://host-{i:06d}.example.com/{pad}\n")
    size = f.stat().st_size
    assert count_lines(f) == 3_000
    list(iter_targets(["warm.example"], [], report=lambda m: None))  # import-time caches
    tracemalloc.start()
    try:
        n = 0
        for n, _ in enumerate(iter_targets([], [f], report=lambda m: None, dedup=False), 1):
            if n == 1_000:
                mid, _ = tracemalloc.get_traced_memory()
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 3_000
    # Flat after the first thousand lines (urllib's 128-entry URL cache fills first).
    assert end - mid < 8_000 and peak < size / 4, (mid, end, peak, size)


def test_tasks_are_targets_times_vantages_lazily() -> None:
    def endless() -> Iterator[TargetSpec]:
        for i in itertools.count():
            yield TargetSpec(f"t{i}.example", f"argument {i}")

    vantages = [VantageSpec("kz", "127.0.0.2"), VantageSpec("127.0.0.3:8443", "127.0.0.3", 8443)]
    tasks = list(itertools.islice(iter_tasks(endless(), vantages, port=443), 5))
    assert [(t.domain, t.ip, t.port) for t in tasks] == [
        ("t0.example", "127.0.0.2", 443), ("t0.example", "127.0.0.3", 8443),
        ("t1.example", "127.0.0.2", 443), ("t1.example", "127.0.0.3", 8443),
        ("t2.example", "127.0.0.2", 443)]
    assert tasks[0].record_vantage == Vantage("kz", "remote")
    assert len({t.id for t in tasks}) == 5


def test_task_id_is_the_record_id_of_the_request() -> None:
    spec = TargetSpec("example.com", "argument 1")
    (direct,) = iter_tasks([spec], port=443)
    assert direct.id == record_id(source="probe",
                                  target=Target("example.com", "example.com", None, 443),
                                  vantage=Vantage(), attempt=0)
    (no_sni,) = iter_tasks([spec], port=443, send_sni=False)
    assert no_sni.sni is None and no_sni.id != direct.id
    (again,) = iter_tasks([TargetSpec("example.com", "elsewhere:9")], port=443)
    assert again.id == direct.id  # where it came from does not matter


def test_parse_endpoint() -> None:
    assert parse_endpoint("127.0.0.1") == Endpoint("127.0.0.1", None)
    assert parse_endpoint("127.0.0.1:8443") == Endpoint("127.0.0.1", 8443)
    assert parse_endpoint("[::1]:443") == Endpoint("::1", 443)
    assert parse_endpoint("::1") == Endpoint("::1", None)
    assert str(Endpoint("::1", 443)) == "[::1]:443"
    with pytest.raises(InputLineError, match="is not an IP address"):
        parse_endpoint("example.com:443")
    with pytest.raises(InputLineError, match="port must be a number from 1 to 65535"):
        parse_endpoint("127.0.0.1:0")
    with pytest.raises(InputLineError, match="is not an IP address"):
        parse_endpoint("300.1.1.1")


def test_vantages_file(tmp_path: Path) -> None:
    f = tmp_path / "vantages.txt"
    f.write_text(
        "# name ip[:port]\n"
        "kz-1 127.0.0.2\n"
        "127.0.0.3:8443   # no name\n"
        "v6 [::1]:443\n"
        "bad 999.0.0.1\n"
        "too many fields here\n"
        "kz-1 127.0.0.2\n"
    )
    problems: list[str] = []
    vs = load_vantages(f, report=problems.append)
    assert vs == [VantageSpec("kz-1", "127.0.0.2"),
                  VantageSpec("127.0.0.3:8443", "127.0.0.3", 8443),
                  VantageSpec("v6", "::1", 443)]
    assert problems == [
        f"{f}:5: '999.0.0.1' is not an IP address (names are not accepted here)",
        f"{f}:6: expected 'name IP[:PORT]' or 'IP[:PORT]'",
        f"{f}:7: duplicate vantage kz-1, skipped",
    ]


def test_to_a_label_and_parse_target() -> None:
    assert to_a_label("ЯНДЕКС.рф") == "xn--d1acpjx3f.xn--p1ai"
    assert to_a_label("EXAMPLE.COM.") == "example.com"
    assert parse_target("//example.com") == "example.com"
    assert parse_target("example.com/path") == "example.com"
    with pytest.raises(InputLineError):
        to_a_label("a" * 64 + ".example")
    with pytest.raises(InputLineError):
        to_a_label("*.example.com")

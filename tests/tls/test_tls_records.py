from __future__ import annotations

import pytest

from tlswatch.tls.records import (
    MAX_RECORD_LENGTH,
    Detection,
    check_record_header,
    looks_like_tls,
)

from .tls_builders import hs, record, side_stream, sslv2_hello


def test_max_record_length_allows_ciphertext_expansion() -> None:
    assert MAX_RECORD_LENGTH == 2**14 + 2048
    assert check_record_header(23, 0x0303, MAX_RECORD_LENGTH) is None
    assert check_record_header(23, 0x0303, MAX_RECORD_LENGTH + 1) == "bad_record_length"


@pytest.mark.parametrize(
    ("ctype", "version", "length", "reason"),
    [
        (22, 0x0301, 100, None),
        (23, 0x0303, 0, None),  # empty application data is allowed
        (22, 0x0303, 0, "bad_record_length"),  # empty handshake fragments are not
        (19, 0x0303, 10, "bad_content_type"),
        (25, 0x0303, 10, "bad_content_type"),
        (22, 0x0203, 10, "bad_record_version"),
    ],
)
def test_check_record_header(ctype: int, version: int, length: int, reason: str | None) -> None:
    assert check_record_header(ctype, version, length) == reason


def test_looks_like_tls_on_real_client_hello() -> None:
    data = side_stream("tls13", "c")
    assert looks_like_tls(data) is Detection.YES
    assert looks_like_tls(data[:5]) is Detection.YES
    for n in range(5):
        assert looks_like_tls(data[:n]) is Detection.NEED_MORE


@pytest.mark.parametrize(
    "prefix",
    [b"GET / HTTP/1.1\r\n", b"HTTP/1.1 403 Forbidden", b"SSH-2.0-OpenSSH", b"\x16\x02\x01\x00\x10"],
)
def test_looks_like_tls_rejects_other_protocols(prefix: bytes) -> None:
    assert looks_like_tls(prefix) is Detection.NO


def test_looks_like_tls_early_no() -> None:
    assert looks_like_tls(b"G") is Detection.NO
    assert looks_like_tls(b"\x16\x01") is Detection.NO


def test_looks_like_tls_sslv2() -> None:
    hello = sslv2_hello()
    assert looks_like_tls(hello) is Detection.YES
    assert looks_like_tls(hello[:2]) is Detection.NEED_MORE
    assert looks_like_tls(b"\x80\x2e\x02\x03\x01") is Detection.NO  # msg type 2, not a hello


def test_looks_like_tls_accepts_memoryview_and_record() -> None:
    assert looks_like_tls(memoryview(record(22, hs(1, b"x")))) is Detection.YES

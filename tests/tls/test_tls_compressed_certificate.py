"""RFC 8879 CompressedCertificate: inflated into the chain, hostile messages become notes.

The certificates are real (the test kit's seeded PKI); the compressed messages are made with
zlib, brotli and (when installed) zstandard, plus hand-made liars and bombs.
"""

from __future__ import annotations

import tracemalloc
import zlib
from functools import lru_cache

import brotli
import pytest
from conftest import require_module
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswatch.tls import compressed_certificate as cc
from tlswatch.tls.compressed_certificate import (
    CompressedCertificate,
    DecompressionError,
    available_algorithms,
    decode_compressed_certificate,
    decompress_certificate,
)
from tlswatch.tls.connection import TLSConnection
from tlswatch.tls.events import CertificateEvent, CompressedCertificateErrorEvent
from tlswatch.tls.handshake import DEFAULT_MAX_MESSAGE_SIZE, HandshakeMessage
from tlswatch.tls.parser import Status, TLSParser, decode_handshake_message

from .tls_builders import certificate_body, hs, record, vec24

MiB = 1 << 20


@lru_cache(maxsize=1)
def chain_ders() -> tuple[bytes, ...]:
    from tlswatch.testing import CertFactory

    sc = CertFactory(seed=0).legitimate("example.org")
    return tuple(c.public_bytes(Encoding.DER) for c in sc.chain)


def cert_body() -> bytes:
    return certificate_body(chain_ders(), tls13=True)


def message(algorithm: int, length: int, data: bytes) -> bytes:
    return algorithm.to_bytes(2, "big") + length.to_bytes(3, "big") + vec24(data)


def compressed(algorithm: str, body: bytes | None = None) -> bytes:
    body = cert_body() if body is None else body
    if algorithm == "zlib":
        return message(1, len(body), zlib.compress(body))
    if algorithm == "brotli":
        return message(2, len(body), brotli.compress(body))
    zstandard = require_module("zstandard")
    return message(3, len(body), zstandard.ZstdCompressor().compress(body))


def decode(body: bytes, cap: int = DEFAULT_MAX_MESSAGE_SIZE) -> object:
    return decode_handshake_message(HandshakeMessage(25, body), max_certificate_size=cap)


def problem(body: bytes, cap: int = DEFAULT_MAX_MESSAGE_SIZE) -> str:
    ev = decode(body, cap)
    assert isinstance(ev, CompressedCertificateErrorEvent), ev
    assert ev.note == f"certificate_compressed:{ev.algorithm}:{ev.problem}"
    return ev.problem


@pytest.mark.parametrize("algorithm", ["zlib", "brotli", "zstd"])
def test_compressed_chain_is_recovered(algorithm: str) -> None:
    ev = decode(compressed(algorithm))
    assert isinstance(ev, CertificateEvent)
    assert ev.certificates == chain_ders() and ev.tls13
    assert ev.compression == algorithm and ev.note == f"certificate_compressed:{algorithm}"


def test_an_uncompressed_certificate_has_no_note() -> None:
    ev = decode_handshake_message(HandshakeMessage(11, cert_body()), tls13=True)
    assert isinstance(ev, CertificateEvent) and ev.compression is None and ev.note is None


def test_decode_splits_the_message() -> None:
    msg = decode_compressed_certificate(message(2, 1234, b"abc"))
    assert msg == CompressedCertificate(2, 1234, b"abc") and msg.algorithm_name == "brotli"
    assert CompressedCertificate(0x4242, 1, b"x").algorithm_name == "0x4242"
    assert "zlib" in available_algorithms() and "brotli" in available_algorithms()


@pytest.mark.parametrize("body", [
    b"", b"\x00", b"\x00\x01\x00\x00",  # shorter than the fixed fields
    message(1, 10, b""),  # empty compressed_certificate_message
    message(1, 10, b"abc")[:-1],  # its length runs past the end
    message(1, 10, b"abc") + b"\x00",  # trailing byte
])
def test_malformed_framing(body: bytes) -> None:
    assert problem(body) == "malformed"


def test_unknown_algorithm() -> None:
    ev = decode(message(0x0009, 100, b"\x01\x02\x03"))
    assert isinstance(ev, CompressedCertificateErrorEvent)
    assert (ev.algorithm, ev.problem) == ("0x0009", "unknown_algorithm")


def test_missing_library_is_not_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cc, "_library", lambda code: None)
    ev = decode(compressed("brotli"))
    assert isinstance(ev, CompressedCertificateErrorEvent)
    assert ev.problem == "not_supported" and "brotli is not installed" in ev.detail
    assert "brotli" not in available_algorithms()
    assert isinstance(decode(compressed("zlib")), CertificateEvent)  # zlib needs nothing


@pytest.mark.parametrize("algorithm", ["zlib", "brotli", "zstd"])
def test_declared_length_that_lies(algorithm: str) -> None:
    body = cert_body()
    good = compressed(algorithm, body)
    algo, data = good[:2], good[5 + 3:]
    for length in (len(body) - 1, len(body) + 1, 1):
        liar = algo + length.to_bytes(3, "big") + vec24(data)
        assert problem(liar) == "length_mismatch", length


@pytest.mark.parametrize("algorithm", ["zlib", "brotli", "zstd"])
def test_truncated_or_damaged_stream(algorithm: str) -> None:
    good = compressed(algorithm)
    length, data = good[2:5], good[8:]
    truncated = good[:2] + length + vec24(data[: len(data) // 2])
    assert problem(truncated) in ("corrupt", "length_mismatch")
    flipped = bytearray(data)
    for i in range(4, len(flipped), 7):
        flipped[i] ^= 0x5A
    assert problem(good[:2] + length + vec24(bytes(flipped))) in ("corrupt", "length_mismatch")


def test_zlib_trailing_garbage_is_corrupt() -> None:
    body = cert_body()
    assert problem(message(1, len(body), zlib.compress(body) + b"junk")) == "corrupt"


def test_inflated_bytes_that_are_no_certificate_message() -> None:
    junk = b"\x00" + b"not a certificate list"
    assert problem(message(1, len(junk), zlib.compress(junk))) == "malformed_certificate"


def test_over_cap_is_refused_before_inflating(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> bytes:
        raise AssertionError("decompressed although uncompressed_length is over the cap")

    monkeypatch.setattr(cc, "_zlib", boom)
    assert problem(message(1, 0xFFFFFF, b"\x78\x9c")) == "over_cap"
    assert problem(message(1, 4097, zlib.compress(bytes(4097))), cap=4096) == "over_cap"
    with pytest.raises(DecompressionError) as exc:
        decompress_certificate(CompressedCertificate(1, 2 * MiB, b"x"), max_length=MiB)
    assert exc.value.problem == "over_cap"


def _zlib_bomb(size: int) -> bytes:
    comp = zlib.compressobj(9)
    block = bytes(MiB)
    return b"".join(comp.compress(block) for _ in range(size // MiB)) + comp.flush()


def _bounded(body: bytes) -> tuple[str, int]:
    tracemalloc.start()
    try:
        got = problem(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return got, peak


@pytest.mark.parametrize("algorithm", ["zlib", "brotli", "zstd"])
def test_decompression_bombs_cost_bounded_memory(algorithm: str) -> None:
    # 64 MiB of zeros, declared as 1 MiB (the cap) and as 1000 bytes: the output stops
    # just past the declared length, never near 64 MiB.
    size = 64 * MiB
    if algorithm == "zlib":
        data = _zlib_bomb(size)
    elif algorithm == "brotli":
        data = brotli.compress(bytes(size), quality=1)
    else:
        zstandard = require_module("zstandard")
        data = zstandard.ZstdCompressor(level=1).compress(bytes(size))
    assert len(data) * 200 < size  # really a bomb
    code = {"zlib": 1, "brotli": 2, "zstd": 3}[algorithm]
    for declared in (DEFAULT_MAX_MESSAGE_SIZE, 1000):
        got, peak = _bounded(message(code, declared, data))
        # zstd refuses the 64 MiB window outright ("corrupt"); the others stop at the limit.
        assert got in ("length_mismatch", "corrupt"), got
        assert peak < 8 * MiB, (declared, peak)


def test_cleartext_parser_reads_a_compressed_certificate_and_goes_on() -> None:
    conn = TLSConnection()
    stream = record(22, hs(25, compressed("brotli"))) + record(22, hs(25, b"\x00\x01"))
    events = conn.feed_server(stream)
    assert isinstance(events[0], CertificateEvent) and events[0].compression == "brotli"
    assert isinstance(events[1], CompressedCertificateErrorEvent)
    assert events[1].problem == "malformed"
    assert conn.certificates == chain_ders() and conn.history == "xx"
    assert conn.server.status is Status.INCOMPLETE


def test_parser_cap_bounds_the_inflated_size() -> None:
    body = compressed("zlib")
    small = TLSParser("server", max_message_size=len(body) + 16)  # the message fits, not its chain
    (ev,) = small.feed(record(22, hs(25, body)))
    assert isinstance(ev, CompressedCertificateErrorEvent) and ev.problem == "over_cap"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([1, 2, 3, 4]), st.integers(0, 0xFFFFFF))
def test_hostile_bodies_never_raise(data: bytes, algorithm: int, length: int) -> None:
    for body in (data, message(algorithm, length, data or b"\x00")):
        ev = decode(body)
        assert isinstance(ev, CertificateEvent | CompressedCertificateErrorEvent)

"""CompressedCertificate (RFC 8879): the server's Certificate message, compressed.

Browsers offer the ``compress_certificate`` extension and large sites answer with a
CompressedCertificate (handshake type 25) in place of the TLS 1.3 Certificate::

    struct {
        CertificateCompressionAlgorithm algorithm;   // u16: 1 zlib, 2 brotli, 3 zstd
        uint24 uncompressed_length;
        opaque compressed_certificate_message<1..2^24-1>;
    } CompressedCertificate;

The inflated bytes are a Certificate message body (TLS 1.3 layout). The peer is hostile:
``uncompressed_length`` is checked against a cap *before* anything is inflated, and every
decompressor is asked for at most ``uncompressed_length + 1`` bytes, so a decompression bomb
costs bounded memory and time. zlib is the standard library's; brotli needs the ``brotli``
package (1.2 or later: bounded output), zstd the optional ``zstandard`` package. Sans-IO.
"""

from __future__ import annotations

import functools
import importlib
import zlib
from dataclasses import dataclass
from types import ModuleType
from typing import Final

from ._reader import DecodeError, Reader

__all__ = [
    "ALGORITHMS",
    "CompressedCertificate",
    "DecompressionError",
    "algorithm_name",
    "available_algorithms",
    "decode_compressed_certificate",
    "decompress_certificate",
]

ZLIB: Final = 1
BROTLI: Final = 2
ZSTD: Final = 3

#: CertificateCompressionAlgorithm code points (IANA registry of RFC 8879).
ALGORITHMS: Final[dict[int, str]] = {ZLIB: "zlib", BROTLI: "brotli", ZSTD: "zstd"}
#: The PyPI package each non-stdlib algorithm needs.
_MODULES: Final[dict[int, str]] = {BROTLI: "brotli", ZSTD: "zstandard"}
_MIN_ZSTD_WINDOW: Final = 1 << 10  # ZSTD_WINDOWLOG_MIN


@dataclass(frozen=True, slots=True)
class CompressedCertificate:
    """A CompressedCertificate message as sent (nothing inflated yet)."""

    algorithm: int
    uncompressed_length: int
    data: bytes

    @property
    def algorithm_name(self) -> str:
        return algorithm_name(self.algorithm)


class DecompressionError(Exception):
    """The certificate could not be inflated. ``problem`` is one short token:

    ``unknown_algorithm``, ``not_supported`` (the library is not installed), ``over_cap``
    (``uncompressed_length`` above the cap), ``corrupt`` (the decompressor failed or the
    stream is incomplete), ``length_mismatch`` (inflated size differs from the declared one).
    """

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem
        self.detail = detail


def algorithm_name(code: int) -> str:
    """``zlib`` / ``brotli`` / ``zstd``, or the code in hex for others."""
    return ALGORITHMS.get(code) or f"0x{code:04x}"


@functools.cache
def _library(code: int) -> ModuleType | None:
    name = _MODULES.get(code)
    if name is None:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def available_algorithms() -> tuple[str, ...]:
    """The algorithms this installation can inflate."""
    return tuple(name for code, name in ALGORITHMS.items()
                 if code == ZLIB or _library(code) is not None)


def decode_compressed_certificate(body: bytes) -> CompressedCertificate:
    """Split a CompressedCertificate body. :class:`DecodeError` when the lengths don't fit."""
    r = Reader(body)
    algorithm = r.u16()
    length = r.u24()
    data = r.vec24()
    r.expect_end()
    if not data:
        raise DecodeError("empty compressed_certificate_message")
    return CompressedCertificate(algorithm, length, data)


def decompress_certificate(msg: CompressedCertificate, *, max_length: int) -> bytes:
    """Inflate to the Certificate message body, at most ``max_length`` bytes of it.

    Raises :class:`DecompressionError`; never returns bytes whose length differs from
    ``msg.uncompressed_length``.
    """
    name = msg.algorithm_name
    want = msg.uncompressed_length
    if msg.algorithm not in ALGORITHMS:
        raise DecompressionError("unknown_algorithm", f"algorithm {name} is not in RFC 8879")
    if want > max_length:
        raise DecompressionError("over_cap", f"uncompressed_length {want} is over the "
                                 f"{max_length}-byte cap")
    if msg.algorithm == ZLIB:
        out = _zlib(msg.data, want)
    else:
        lib = _library(msg.algorithm)
        if lib is None:
            raise DecompressionError("not_supported", f"{name}: the Python package "
                                     f"{_MODULES[msg.algorithm]} is not installed")
        out = _brotli(lib, msg.data, want) if msg.algorithm == BROTLI \
            else _zstd(lib, msg.data, want)
    if len(out) != want:
        more = "more than" if len(out) > want else f"{len(out)} bytes, not"
        raise DecompressionError("length_mismatch", f"{name}: inflated to {more} the "
                                 f"declared uncompressed_length {want}")
    return out


def _zlib(data: bytes, want: int) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, want + 1)  # one byte more than declared reveals a liar
    except zlib.error as exc:
        raise DecompressionError("corrupt", f"zlib: {exc}") from None
    if len(out) <= want and not d.eof:
        raise DecompressionError("corrupt", "zlib: the compressed stream is incomplete")
    if len(out) <= want and d.unused_data:
        raise DecompressionError("corrupt", f"zlib: {len(d.unused_data)} bytes after the "
                                 "end of the stream")
    return out


def _brotli(lib: ModuleType, data: bytes, want: int) -> bytes:
    d = lib.Decompressor()
    try:
        # brotli >= 1.2 stops growing its output at the limit (it may pass it by one block).
        out: bytes = d.process(data, output_buffer_limit=want + 1)
    except lib.error as exc:
        raise DecompressionError("corrupt", f"brotli: {exc}") from None
    except TypeError:  # brotli < 1.2 has no bounded output: refuse rather than risk a bomb
        raise DecompressionError("not_supported", "brotli: the installed package is older "
                                 "than 1.2 (no bounded decompression)") from None
    if len(out) <= want and not d.is_finished():
        raise DecompressionError("corrupt", "brotli: the compressed stream is incomplete")
    return out


def _zstd(lib: ModuleType, data: bytes, want: int) -> bytes:
    # A window larger than the certificate is never needed; refusing it bounds memory.
    window = max(_MIN_ZSTD_WINDOW, 1 << max(0, want - 1).bit_length())
    try:
        dctx = lib.ZstdDecompressor(max_window_size=window)
        with dctx.stream_reader(data, read_across_frames=False) as reader:
            out: bytes = reader.read(want + 1)
    except lib.ZstdError as exc:
        raise DecompressionError("corrupt", f"zstd: {exc}") from None
    return out

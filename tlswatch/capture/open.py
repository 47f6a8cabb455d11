"""Open a capture by its magic number (never by extension), gzip/xz/bzip2 transparently.

    with open_capture("trace.pcapng.gz", on_secrets=keys.append) as cap:
        for ts_ns, linktype, caplen, origlen, data in cap:
            ...
    cap.anomalies, cap.warnings   # what went wrong, if anything (partial results)
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from collections import Counter
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO, Final, Literal

from ._source import CHUNK_SIZE, FastPath, RawPacket, Readable, SecretsCallback, Source
from .errors import CaptureFormatError
from .pcap import PCAP_MAGICS, iter_pcap, parse_pcap_header
from .pcapng import iter_pcapng, section_byte_order

__all__ = ["CaptureReader", "open_capture"]

_PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"
_COMPRESSED: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
)
_UNSUPPORTED: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x04\x22\x4d\x18", "lz4"),
)

Format = Literal["pcap", "pcapng"]


class CaptureReader:
    """An open capture file. Iterate once for ``(ts_ns, linktype, caplen, origlen, data)``.

    ``data`` is an immutable ``bytes`` slice. Reading stops at the first corruption, with an
    entry in :attr:`anomalies` and :attr:`warnings` (and a ``CaptureWarning``).
    """

    __slots__ = ("_close", "_it", "_src", "compression", "format")

    def __init__(self, src: Source, first: bytes, fmt: Format, compression: str | None,
                 close: BinaryIO | None) -> None:
        self._src = src
        self._close = close
        self.format: Format = fmt
        self.compression = compression
        self._it = iter_pcap(src, first) if fmt == "pcap" else iter_pcapng(src, first)

    @property
    def name(self) -> str:
        return self._src.name

    @property
    def anomalies(self) -> Counter[str]:
        return self._src.anomalies

    @property
    def warnings(self) -> list[str]:
        return self._src.warnings

    @property
    def partial(self) -> bool:
        """True when reading stopped early at a truncation or corruption."""
        return self._src.stopped

    def __iter__(self) -> Iterator[RawPacket]:
        return self._it

    def set_fast_path(self, fast_path: FastPath) -> None:
        """Let the C fast path consume the records it can book (call before iterating)."""
        self._src.fast_path = fast_path

    def close(self) -> None:
        if self._close is not None:
            self._close.close()
            self._close = None

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _peek(f: BinaryIO, n: int) -> bytes:
    head = f.read(n)
    f.seek(0)
    return head


def open_capture(source: str | os.PathLike[str] | BinaryIO, *,
                 on_secrets: SecretsCallback | None = None) -> CaptureReader:
    """Open a pcap or pcapng file (optionally compressed), detected by magic number.

    ``on_secrets(secrets_type, data)`` is called for each pcapng Decryption Secrets Block
    (``SECRETS_TLS_KEYLOG`` = TLS key log lines). Raises :class:`CaptureFormatError` with a
    one-line message when the input is not a capture; ``OSError`` when it cannot be opened.
    A seekable file object may be passed instead of a path (it is not closed).
    """
    if isinstance(source, str | os.PathLike):
        name = os.fspath(source)
        raw: BinaryIO = open(name, "rb")  # noqa: SIM115 - closed by CaptureReader.close
        owned: BinaryIO | None = raw
    else:
        raw, owned = source, None
        name = str(getattr(source, "name", "<stream>"))
    try:
        return _open(raw, name, owned, on_secrets)
    except BaseException:
        if owned is not None:
            owned.close()
        raise


def _open(raw: BinaryIO, name: str, owned: BinaryIO | None,
          on_secrets: SecretsCallback | None) -> CaptureReader:
    head = _peek(raw, 8)
    for magic, kind in _UNSUPPORTED:
        if head.startswith(magic):
            raise CaptureFormatError(f"{name}: {kind}-compressed; decompress it first")
    compression = None
    f: Readable = raw
    for magic, kind in _COMPRESSED:
        if head.startswith(magic):
            compression = kind
            if kind == "gzip":
                f = gzip.GzipFile(fileobj=raw, mode="rb")
            elif kind == "xz":
                f = lzma.LZMAFile(raw, mode="rb")  # noqa: SIM115 - raw is closed instead
            else:
                f = bz2.BZ2File(raw, mode="rb")
            break
    src = Source(f, name, compressed=compression is not None, on_secrets=on_secrets)
    first = src.read(max(CHUNK_SIZE, 64))  # at least any global header
    if src.stopped and len(first) < 4:
        raise CaptureFormatError(f"{name}: damaged {compression} data")
    magic = first[:4]
    if magic in PCAP_MAGICS:
        fmt: Format = "pcap"
    elif magic == _PCAPNG_MAGIC:
        fmt = "pcapng"
    else:
        what = f"magic 0x{magic.hex()}" if len(magic) == 4 else "file too short"
        inner = f" inside {compression} data" if compression else ""
        raise CaptureFormatError(f"{name}: not a pcap or pcapng file ({what}{inner})")
    # Validate the header now, so a bad one is an error at open time, not at first next().
    if fmt == "pcap":
        parse_pcap_header(first, name)
    elif len(first) < 12 or section_byte_order(first, 0) is None:
        raise CaptureFormatError(f"{name}: not a pcapng file (bad section header)")
    return CaptureReader(src, first, fmt, compression, owned)

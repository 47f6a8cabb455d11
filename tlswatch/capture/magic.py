"""What a capture file starts with: pcap (every byte order, resolution and the modified
variant), pcapng, and the compressions ``open_capture`` reads. A light module: the command
line checks it before the capture stack is loaded."""

from __future__ import annotations

import os
from typing import Final

__all__ = ["CAPTURE_MAGICS", "looks_like_capture"]

CAPTURE_MAGICS: Final = (
    bytes.fromhex("d4c3b2a1"), bytes.fromhex("a1b2c3d4"), bytes.fromhex("4d3cb2a1"),
    bytes.fromhex("a1b23c4d"), bytes.fromhex("34cdb2a1"), bytes.fromhex("a1b2cd34"),
    b"\x0a\x0d\x0d\x0a", b"\x1f\x8b", b"\xfd7zXZ\x00", b"BZh",
)


def looks_like_capture(path: str | os.PathLike[str]) -> bool:
    """Does the file start like a capture (False when it cannot be read)?"""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head.startswith(CAPTURE_MAGICS)

"""The ``<title>`` of an HTML page from a peer: bounded, unescaped and sanitised.

Shared by the probe's ``GET /`` (:mod:`tlswatch.probe.http_fetch`) and the blockpages found
in captures (:mod:`tlswatch.classify.capture_record`), which must not load the probe stack.
"""

from __future__ import annotations

import html
import re
from typing import Final

__all__ = ["MAX_TITLE", "extract_title"]

MAX_TITLE: Final = 256
_TITLE_SCAN: Final = 64 * 1024
_TITLE_RE: Final = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_CTRL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def extract_title(body: bytes) -> str | None:
    """The page title: unescaped, control characters removed, whitespace folded, bounded."""
    m = _TITLE_RE.search(body[:_TITLE_SCAN])
    if m is None:
        return None
    text = html.unescape(m.group(1)[: MAX_TITLE * 4].decode("utf-8", "replace"))
    text = " ".join(_CTRL_RE.sub(" ", text).split())
    return text[:MAX_TITLE]

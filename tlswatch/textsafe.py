"""Make peer-supplied text safe for a terminal (no escapes, no bidi tricks, bounded)."""

from __future__ import annotations

import unicodedata

__all__ = ["terminal_safe"]


def terminal_safe(text: str | None, limit: int = 200) -> str:
    """Replace control and format characters (ESC, CR, bidi overrides) and cut to ``limit``."""
    if text is None:
        return "-"
    out = []
    for ch in text[: limit + 1]:
        cat = unicodedata.category(ch)
        out.append(f"\\x{ord(ch):02x}" if cat in ("Cc", "Cf") and ord(ch) < 0x100
                   else f"\\u{ord(ch):04x}" if cat in ("Cc", "Cf", "Zl", "Zp") else ch)
    s = "".join(out)
    return s if len(s) <= limit else s[: limit - 1] + "…"

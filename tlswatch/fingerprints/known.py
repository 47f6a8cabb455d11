"""Known interception-box ClientHello fingerprints (``data/known_fingerprints.json``).

An entry matches a hello when every field of its ``match`` object equals the hello's:
``ja3`` (MD5 hex), ``ja4``, ``record_version`` (the record-layer version of the record that
carried the hello, e.g. 769 = 0x0301) and ``cipher_suite_count`` (GREASE values excluded).
Entries without a citable hash are written as patterns over the last two fields.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["KnownFingerprint", "load_known", "match_known"]

_FIELDS = ("ja3", "ja4", "record_version", "cipher_suite_count")


@dataclass(frozen=True, slots=True)
class KnownFingerprint:
    label: str
    description: str
    source: str
    ja3: str | None = None
    ja4: str | None = None
    record_version: int | None = None
    cipher_suite_count: int | None = None

    def matches(self, *, ja3: str | None, ja4: str | None, record_version: int | None,
                cipher_suite_count: int | None) -> bool:
        got = {"ja3": ja3, "ja4": ja4, "record_version": record_version,
               "cipher_suite_count": cipher_suite_count}
        want = {f: getattr(self, f) for f in _FIELDS if getattr(self, f) is not None}
        return bool(want) and all(got[f] == v for f, v in want.items())


def _entry(raw: Any, where: str) -> KnownFingerprint:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: an entry must be an object")
    label, match = raw.get("label"), raw.get("match")
    if not isinstance(label, str) or not label or any(c.isspace() for c in label):
        raise ValueError(f"{where}: 'label' must be a non-empty word")
    if not isinstance(match, dict) or not match or set(match) - set(_FIELDS):
        raise ValueError(f"{where}: 'match' must hold some of {', '.join(_FIELDS)}")
    for f in ("ja3", "ja4"):
        if f in match and not isinstance(match[f], str):
            raise ValueError(f"{where}: match.{f} must be a string")
    for f in ("record_version", "cipher_suite_count"):
        if f in match and (not isinstance(match[f], int) or isinstance(match[f], bool)):
            raise ValueError(f"{where}: match.{f} must be an integer")
    return KnownFingerprint(label=label, description=str(raw.get("description", "")),
                            source=str(raw.get("source", "")), **match)


def load_known(path: Path | None = None) -> tuple[KnownFingerprint, ...]:
    """The bundled list, or the one in ``path`` (same format). Raises ValueError/OSError."""
    if path is None:
        text = (resources.files("tlswatch.fingerprints") / "data" /
                "known_fingerprints.json").read_text(encoding="utf-8")
        where = "known_fingerprints.json"
    else:
        text = path.read_text(encoding="utf-8")
        where = str(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not JSON ({e.msg}, line {e.lineno})") from None
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{where}: expected an object with an 'entries' list")
    return tuple(_entry(e, f"{where}: entry {i}") for i, e in enumerate(entries))


def match_known(known: Sequence[KnownFingerprint], *, ja3: str | None, ja4: str | None,
                record_version: int | None, cipher_suite_count: int | None) -> str | None:
    """The label of the first entry that matches, else None."""
    for k in known:
        if k.matches(ja3=ja3, ja4=ja4, record_version=record_version,
                     cipher_suite_count=cipher_suite_count):
            return k.label
    return None

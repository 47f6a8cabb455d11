"""Known blockpages and known server-side refusals, matched against what a probe got back.

A blockpage is censorship and is ``blocked`` even without a control; a server-side refusal
(a CDN captcha, an HTTP 451 from the site) is the site's own doing and never censorship.
Matching uses the page title, the status, and the first bytes of a non-TLS answer on the
TLS port (headers and body start), which is where injected blockpages show up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from tlswatch.model import HttpInfo

__all__ = ["BlockpageMatch", "Fingerprint", "load_fingerprints", "match_blockpage"]


@dataclass(frozen=True, slots=True)
class Fingerprint:
    id: str
    kind: str  # blockpage | server_side
    location: str  # body | title | status | header.<name>
    match: str  # contains | prefix | full
    pattern: str
    source: str


@dataclass(frozen=True, slots=True)
class BlockpageMatch:
    id: str
    kind: str


@lru_cache(maxsize=1)
def load_fingerprints() -> tuple[Fingerprint, ...]:
    text = resources.files("tlswatch.classify").joinpath("data", "blockpages.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return tuple(Fingerprint(**f) for f in data["fingerprints"])


def _headers(raw: bytes) -> dict[str, str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    out: dict[str, str] = {}
    for line in head.split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            out.setdefault(name.strip().lower(), value.strip())
    return out


def _status(raw: bytes) -> str | None:
    first = raw.split(b"\r\n", 1)[0].split()
    if len(first) >= 2 and first[0].startswith(b"HTTP/") and first[1].isdigit():
        return first[1].decode()
    return None


def _hit(fp: Fingerprint, value: str | None) -> bool:
    if value is None:
        return False
    if fp.match == "contains":
        return fp.pattern in value
    if fp.match == "prefix":
        return value.startswith(fp.pattern)
    return value == fp.pattern


def match_blockpage(http: HttpInfo | None, raw: bytes = b"") -> BlockpageMatch | None:
    """The first fingerprint matching the fetched page (``http``) or a raw non-TLS answer."""
    headers = _headers(raw) if raw else {}
    body = raw.decode("utf-8", "replace") if raw else None
    status = str(http.status) if http and http.status is not None else _status(raw)
    title = http.title if http else None
    for fp in load_fingerprints():
        if fp.location == "body":
            value = body
        elif fp.location == "title":
            value = title
        elif fp.location == "status":
            value = status
        else:
            value = headers.get(fp.location.removeprefix("header."))
        if _hit(fp, value):
            return BlockpageMatch(fp.id, fp.kind)
    return None

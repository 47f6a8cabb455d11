"""Blockpage and server-side fingerprints against raw answers and fetched pages."""

from __future__ import annotations

from tlswatch.classify.blockpages import load_fingerprints, match_blockpage
from tlswatch.model import HttpInfo


def test_redirect_blockpage_in_a_raw_answer_on_443() -> None:
    raw = (b"HTTP/1.1 302 Found\r\nLocation: https://vk.com/blank.php?rkn=abc\r\n"
           b"Content-Length: 0\r\n\r\n")
    m = match_blockpage(None, raw)
    assert m is not None and (m.id, m.kind) == ("ooni.by_3", "blockpage")


def test_body_pattern_and_no_false_match() -> None:
    raw = b"HTTP/1.1 200 OK\r\n\r\n<html><title>Notification: Policy: URL Filtering</title>"
    assert match_blockpage(None, raw).id == "ooni.au_0"  # type: ignore[union-attr]
    assert match_blockpage(None, b"HTTP/1.1 200 OK\r\n\r\n<title>Welcome</title>") is None
    assert match_blockpage(None, b"\x16\x03\x01garbage") is None


def test_server_side_refusals_are_not_blockpages() -> None:
    m = match_blockpage(HttpInfo(status=403, title="Attention Required! | Cloudflare"))
    assert m is not None and m.kind == "server_side"
    m451 = match_blockpage(HttpInfo(status=451, title="Unavailable"))
    assert m451 is not None and (m451.id, m451.kind) == ("http-451", "server_side")
    assert match_blockpage(HttpInfo(status=200, title="vk.com")) is None


def test_fingerprint_file_is_well_formed() -> None:
    fps = load_fingerprints()
    assert len({f.id for f in fps}) == len(fps)
    assert {f.kind for f in fps} == {"blockpage", "server_side"}
    assert {f.match for f in fps} <= {"contains", "prefix", "full"}

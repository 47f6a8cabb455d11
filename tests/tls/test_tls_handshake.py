from __future__ import annotations

import random

import pytest

from tlswatch.tls.handshake import HandshakeMessage, HandshakeReassembler, OversizedMessage

from .tls_builders import hs


def _feed_all(r: HandshakeReassembler, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for c in chunks:
        out.extend(r.feed(c))
    return out


def test_several_messages_in_one_payload() -> None:
    r = HandshakeReassembler()
    got = r.feed(hs(2, b"a" * 10) + hs(11, b"b" * 5) + hs(14, b""))
    assert got == [
        HandshakeMessage(2, b"a" * 10),
        HandshakeMessage(11, b"b" * 5),
        HandshakeMessage(14, b""),
    ]
    assert r.buffered == 0


def test_header_split_across_payloads() -> None:
    data = hs(1, b"hello")
    r = HandshakeReassembler()
    assert _feed_all(r, [data[:1], data[1:3], data[3:6]]) == []
    assert r.in_message
    assert r.feed(data[6:]) == [HandshakeMessage(1, b"hello")]


def test_large_message_over_many_payloads_is_whole() -> None:
    body = random.Random(1).randbytes(300_000)
    data = hs(11, body)
    chunks = [data[i : i + 16384] for i in range(0, len(data), 16384)]
    assert len(chunks) >= 19
    r = HandshakeReassembler()
    got = _feed_all(r, chunks)
    assert got == [HandshakeMessage(11, body)]


def test_oversized_declared_length_stops_without_buffering() -> None:
    r = HandshakeReassembler(max_message_size=1000)
    got = r.feed(hs(11, b"x" * 10)[:4][:1] + (1001).to_bytes(3, "big") + b"x" * 500)
    assert got == [OversizedMessage(11, 1001)]
    assert r.buffered == 0
    assert r.feed(b"more") == []


def test_exact_cap_is_allowed() -> None:
    r = HandshakeReassembler(max_message_size=1000)
    assert r.feed(hs(11, b"x" * 1000)) == [HandshakeMessage(11, b"x" * 1000)]


def test_raw_round_trip() -> None:
    assert HandshakeMessage(1, b"abc").raw == hs(1, b"abc")


def test_negative_cap_rejected() -> None:
    with pytest.raises(ValueError):
        HandshakeReassembler(max_message_size=-1)

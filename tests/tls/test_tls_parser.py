from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlswatch.tls.events import (
    AlertEvent,
    CertificateEvent,
    ChangeCipherSpecEvent,
    ClientHelloEvent,
    EncryptedRecordEvent,
    EndOfStreamEvent,
    Event,
    HandshakeMessageEvent,
    HelloRetryRequestEvent,
    InvalidEvent,
    ServerHelloEvent,
)
from tlswatch.tls.handshake import HandshakeMessage
from tlswatch.tls.hello import HRR_RANDOM
from tlswatch.tls.parser import Status, TLSParser, decode_handshake_message

from .tls_builders import (
    DATA,
    certificate_body,
    client_hello_body,
    ext,
    hs,
    record,
    records,
    server_hello_body,
    side_stream,
    sni_ext,
    sslv2_hello,
)

TLS13_EXT = ext(43, b"\x03\x04")


def status_of(p: TLSParser) -> Status:
    return p.status  # a call, so mypy does not keep an earlier narrowing


def feed_whole(data: bytes, role: str | None = None, **kw: int) -> tuple[TLSParser, list[Event]]:
    p = TLSParser(role, **kw)  # type: ignore[arg-type]
    return p, p.feed(data) + p.eof()


def feed_chunks(data: bytes, sizes: list[int], role: str | None = None) -> list[Event]:
    p = TLSParser(role)  # type: ignore[arg-type]
    out: list[Event] = []
    pos = 0
    for size in sizes:
        out += p.feed(data[pos : pos + size])
        pos += size
    out += p.feed(data[pos:])
    return out + p.eof()


def random_sizes(seed: int, total: int) -> list[int]:
    rng = random.Random(seed)
    sizes = []
    while total > 0:
        s = rng.choice([1, 2, 3, 5, 7, 64, 700, 5000])
        sizes.append(s)
        total -= s
    return sizes


STREAMS = {
    "tls12_c": (side_stream("tls12", "c"), "client"),
    "tls12_s": (side_stream("tls12", "s"), "server"),
    "tls13_c": (side_stream("tls13", "c"), "client"),
    "tls13_s": (side_stream("tls13", "s"), "server"),
    "sslv2": (sslv2_hello() + record(21, b"\x02\x28"), "client"),
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_byte_at_a_time_and_random_splits_equal_whole(name: str) -> None:
    data, role = STREAMS[name]
    _, whole = feed_whole(data, role)
    assert not any(isinstance(e, InvalidEvent) for e in whole)
    assert feed_chunks(data, [1] * len(data), role) == whole
    for seed in range(20):
        assert feed_chunks(data, random_sizes(seed, len(data)), role) == whole


def test_tls12_server_flight() -> None:
    p, events = feed_whole(side_stream("tls12", "s"), "server")
    kinds = [type(e) for e in events]
    assert kinds[:4] == [
        ServerHelloEvent,
        CertificateEvent,
        HandshakeMessageEvent,
        HandshakeMessageEvent,
    ]
    cert = events[1]
    assert isinstance(cert, CertificateEvent)
    assert cert.certificates == ((DATA / "server_cert.der").read_bytes(),)
    assert ChangeCipherSpecEvent in kinds
    # Everything after the CCS is opaque: the encrypted Finished is not parsed as handshake.
    after = kinds[kinds.index(ChangeCipherSpecEvent) + 1 :]
    assert set(after) <= {EncryptedRecordEvent, EndOfStreamEvent}
    assert p.status is Status.DONE
    assert p.encrypted


def test_tls13_server_encrypted_after_server_hello() -> None:
    p, events = feed_whole(side_stream("tls13", "s"), "server")
    assert isinstance(events[0], ServerHelloEvent)
    assert events[0].hello.version == 0x0304
    assert isinstance(events[1], ChangeCipherSpecEvent)
    assert all(isinstance(e, EncryptedRecordEvent | EndOfStreamEvent) for e in events[2:])
    assert p.status is Status.DONE


def test_tls13_encrypted_handshake_type_records_stay_opaque() -> None:
    sh = record(22, hs(2, server_hello_body(extensions=(TLS13_EXT,))))
    fake = record(22, hs(11, certificate_body([b"x"])))  # would decode if parsed in clear
    _, events = feed_whole(sh + fake, "server")
    assert events[1] == EncryptedRecordEvent(22, len(hs(11, certificate_body([b"x"]))))


def test_states_incomplete_invalid_done() -> None:
    ch = record(22, hs(1, client_hello_body()))
    p = TLSParser("client")
    assert p.status is Status.INCOMPLETE and p.buffered == 0
    assert p.feed(ch[:10]) == []
    assert p.status is Status.INCOMPLETE and p.buffered == 10
    assert isinstance(p.feed(ch[10:])[0], ClientHelloEvent)
    assert p.status is Status.INCOMPLETE and p.buffered == 0
    p.feed(record(20, b"\x01"))
    assert status_of(p) is Status.DONE

    bad = TLSParser()
    (ev,) = bad.feed(b"HTTP/1.1 403 Forbidden\r\n\r\n")
    assert isinstance(ev, InvalidEvent)
    assert (ev.reason, ev.offset) == ("not_tls", 0)
    assert bad.status is Status.INVALID and bad.invalid_reason == "not_tls"
    assert bad.feed(ch) == []  # sticky
    assert bad.buffered == 0


def test_bad_record_length_after_first_record() -> None:
    data = record(22, hs(1, client_hello_body())) + b"\x17\x03\x03\xff\xff"
    _, events = feed_whole(data)
    assert isinstance(events[0], ClientHelloEvent)
    inv = events[1]
    assert isinstance(inv, InvalidEvent)
    assert inv.reason == "bad_record_length"
    assert inv.offset == len(data) - 5


def test_malformed_client_hello_is_invalid_event() -> None:
    data = record(22, hs(1, client_hello_body()[:-1]))
    p, events = feed_whole(data)
    assert isinstance(events[0], InvalidEvent)
    assert events[0].reason == "malformed_client_hello"
    assert p.invalid_reason == "malformed_client_hello"


def test_truncated_at_eof() -> None:
    data = record(22, hs(1, client_hello_body()))
    p = TLSParser()
    p.feed(data[:-3])
    events = p.eof()
    assert [type(e) for e in events] == [InvalidEvent, EndOfStreamEvent]
    assert events[0].reason == "truncated"  # type: ignore[union-attr]
    assert events[1] == EndOfStreamEvent(True, len(data) - 3)
    assert p.eof() == []


def test_clean_eof() -> None:
    p = TLSParser()
    p.feed(record(21, b"\x02\x28"))
    assert p.eof() == [EndOfStreamEvent(False, 0)]


def test_alerts_named_and_fatal_is_done() -> None:
    p, events = feed_whole(record(21, b"\x01\x00") + record(21, b"\x02") + record(21, b"\x70"))
    assert events[:2] == [AlertEvent(1, 0, "close_notify"), AlertEvent(2, 112, "unrecognized_name")]
    assert isinstance(events[1], AlertEvent) and events[1].fatal
    assert p.status is Status.DONE


def test_handshake_failure_alert_after_client_hello() -> None:
    _, events = feed_whole(record(21, b"\x02\x28"), "server")
    assert events[0] == AlertEvent(2, 40, "handshake_failure")


def test_unknown_handshake_type_passes_through() -> None:
    _, events = feed_whole(record(22, hs(99, b"abc") + hs(14, b"")))
    assert events[:2] == [HandshakeMessageEvent(99, 3), HandshakeMessageEvent(14, 0)]


def test_hrr_then_second_hello_stays_cleartext() -> None:
    hrr = hs(2, server_hello_body(random=HRR_RANDOM, extensions=(TLS13_EXT, ext(51, b"\x00\x17"))))
    sh = hs(2, server_hello_body(extensions=(TLS13_EXT,)))
    data = record(22, hrr) + record(20, b"\x01") + record(22, sh) + record(23, b"enc")
    _, events = feed_whole(data, "server")
    assert [type(e) for e in events] == [
        HelloRetryRequestEvent,
        ChangeCipherSpecEvent,
        ServerHelloEvent,
        EncryptedRecordEvent,
        EndOfStreamEvent,
    ]
    assert events[0].hello.is_hrr  # type: ignore[union-attr]


def test_application_data_is_opaque_even_before_encryption() -> None:
    _, events = feed_whole(record(23, b"x" * 100) + record(24, b"hb"))
    assert events[:2] == [EncryptedRecordEvent(23, 100), EncryptedRecordEvent(24, 2)]


def test_sslv2_hello_through_parser_then_tls_records() -> None:
    _, events = feed_whole(sslv2_hello(version=0x0002) + record(21, b"\x01\x00"), "client")
    assert isinstance(events[0], ClientHelloEvent)
    assert events[0].hello.sslv2 and events[0].hello.legacy_version == 2
    assert events[1] == AlertEvent(1, 0, "close_notify")


def test_high_bit_garbage_is_not_tls() -> None:
    _, events = feed_whole(b"\xff\xff\xff\xff")
    assert isinstance(events[0], InvalidEvent) and events[0].reason == "not_tls"


def test_server_role_never_reads_sslv2() -> None:
    _, events = feed_whole(sslv2_hello(), "server")
    assert isinstance(events[0], InvalidEvent) and events[0].reason == "not_tls"


def test_300kb_certificate_over_many_records() -> None:
    certs = [random.Random(i).randbytes(30_000) for i in range(10)]
    msg = hs(11, certificate_body(certs))
    assert len(msg) > 300_000
    data = records(22, msg, 15000)
    assert -(-len(msg) // 15000) >= 20  # number of records
    _, events = feed_whole(data, "server")
    assert events[0] == CertificateEvent(tuple(certs))
    assert feed_chunks(data, random_sizes(7, len(data)), "server") == events


def test_oversized_message_is_invalid_without_buffering() -> None:
    big = hs(11, certificate_body([b"x" * 2_000_000]))
    p = TLSParser("server")
    events = p.feed(record(22, big[:16000]))
    assert [e.reason for e in events if isinstance(e, InvalidEvent)] == ["oversized_message"]
    assert p.status is Status.INVALID and p.buffered == 0
    assert p.feed(records(22, big[16000:100_000], 16000)) == []


def test_cap_is_configurable() -> None:
    msg = record(22, hs(11, certificate_body([b"x" * 1000])))
    assert feed_whole(msg, max_message_size=1006)[1][0] == CertificateEvent((b"x" * 1000,))
    events = feed_whole(msg, max_message_size=1005)[1]
    assert isinstance(events[0], InvalidEvent) and events[0].reason == "oversized_message"
    assert TLSParser(max_message_size=5).max_message_size == 5


def test_decode_handshake_message_tls13_certificate() -> None:
    msg = HandshakeMessage(11, certificate_body([b"leaf"], tls13=True))
    ev = decode_handshake_message(msg, tls13=True)
    assert ev == CertificateEvent((b"leaf",), b"", True)
    bad = decode_handshake_message(HandshakeMessage(2, b"\x03"), offset=7)
    assert bad == InvalidEvent("malformed_server_hello", 7, bad.detail)  # type: ignore[union-attr]


def test_memoryview_and_bytearray_input() -> None:
    data = record(22, hs(1, client_hello_body(extensions=(sni_ext(b"a.b"),))))
    _, whole = feed_whole(data)
    assert TLSParser().feed(bytearray(data)) == whole[:1]
    assert TLSParser().feed(memoryview(data)) == whole[:1]


# --- hostile input ---------------------------------------------------------------------------

REAL = [side_stream("tls12", "c"), side_stream("tls13", "c"), side_stream("tls12", "s")]


def _check_never_raises(data: bytes, splits: list[int]) -> None:
    p = TLSParser()
    events: list[Event] = []
    pos = 0
    for s in splits:
        events += p.feed(data[pos : pos + s])
        pos += s
    events += p.feed(data[pos:])
    events += p.eof()
    assert p.buffered <= len(data)
    assert sum(isinstance(e, InvalidEvent) for e in events) <= 1
    assert isinstance(events[-1], EndOfStreamEvent)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(REAL) - 1),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 10_000),
    insert_at=st.integers(0, 10_000),
    inserted=st.binary(max_size=8),
    splits=st.lists(st.integers(1, 300), max_size=5),
)
def test_mutated_real_hellos_never_raise(
    which: int,
    flips: list[tuple[int, int]],
    cut: int,
    insert_at: int,
    inserted: bytes,
    splits: list[int],
) -> None:
    data = bytearray(REAL[which])
    for at, value in flips:
        data[at % len(data)] = value
    i = insert_at % (len(data) + 1)
    data[i:i] = inserted
    _check_never_raises(bytes(data[: cut % (len(data) + 1)]), splits)


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.sampled_from([b"", b"\x16\x03\x01", b"\x80", b"\x16\x03\x03\x00\x10\x01\x00\x00"]),
    data=st.binary(max_size=600),
    splits=st.lists(st.integers(1, 50), max_size=5),
)
def test_fuzz_arbitrary_bytes(prefix: bytes, data: bytes, splits: list[int]) -> None:
    _check_never_raises(prefix + data, splits)


def test_throughput_smoke() -> None:
    """Encrypted records are framed without copying payloads: must be fast."""
    rec = record(23, b"\x00" * 16384)
    data = record(20, b"\x01") + rec * 640  # ~10 MB
    p = TLSParser()
    start = time.perf_counter()
    for i in range(0, len(data), 65536):
        p.feed(data[i : i + 65536])
    elapsed = time.perf_counter() - start
    assert p.status is Status.DONE
    assert elapsed < 2.0

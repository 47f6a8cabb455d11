"""TCP reassembly and the flow table: order, loss, overlap, wraparound, resets, bounds."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswatch.capture import (
    Anomaly,
    Data,
    Detected,
    Fin,
    FlowConfig,
    FlowEnd,
    FlowEvent,
    FlowStart,
    Gap,
    Rst,
    Side,
    TcpReassembler,
    decode,
)
from tlswatch.capture.layers import Decoded
from tlswatch.tls import Detection, looks_like_tls

from .capbuild import Conv, client_hello

Frames = Sequence[tuple[int, bytes]]


def run(frames: Frames, config: FlowConfig | None = None, *, detect: bool = False,
        engine: TcpReassembler | None = None) -> tuple[list[FlowEvent], Counter[str]]:
    c: Counter[str] = Counter()
    eng = engine or TcpReassembler(config, detector=looks_like_tls if detect else None,
                                   anomalies=c)
    out: list[FlowEvent] = []
    for ts, frame in frames:
        p = decode(1, frame, c)
        assert p is not None
        eng.feed(ts, p)
        out += eng.events
        eng.events.clear()
    eng.finish()
    out += eng.events
    return out, c


def stream(events: list[FlowEvent], side: Side, flow_id: int | None = None) -> bytes:
    """A side's bytes, checked contiguous (gaps as NUL runs)."""
    out = bytearray()
    for ev in events:
        if isinstance(ev, Data | Gap) and ev.side == side and flow_id in (None, ev.flow_id):
            assert ev.offset == len(out), (ev, len(out))
            out += ev.data if isinstance(ev, Data) else b"\x00" * ev.length
    return bytes(out)


def of(events: list[FlowEvent], cls: type) -> list[FlowEvent]:
    return [e for e in events if isinstance(e, cls)]


CLIENT_DATA = bytes(range(256)) * 20  # 5120 bytes
SERVER_DATA = bytes(reversed(range(256))) * 40


def simple(conv: Conv | None = None) -> tuple[Conv, list[tuple[int, bytes]]]:
    c = conv or Conv()
    frames = c.handshake() + c.send(0, CLIENT_DATA) + c.send(1, SERVER_DATA) + c.close()
    return c, frames


def test_in_order_flow() -> None:
    _, frames = simple()
    ev, anomalies = run(frames)
    start = ev[0]
    assert isinstance(start, FlowStart) and start.origin == "syn"
    assert (start.key.client_ip, start.key.client_port, start.key.server_ip,
            start.key.server_port) == ("10.0.0.1", 40000, "10.0.0.2", 443)
    assert start.key.flow().server_port == 443
    assert stream(ev, Side.CLIENT) == CLIENT_DATA and stream(ev, Side.SERVER) == SERVER_DATA
    fins = of(ev, Fin)
    assert [(f.side, f.offset) for f in fins] == [(Side.CLIENT, len(CLIENT_DATA)),
                                                  (Side.SERVER, len(SERVER_DATA))]
    end = ev[-1]
    assert isinstance(end, FlowEnd) and end.reason == "eof"
    assert end.client.stream_bytes == len(CLIENT_DATA) and end.client.syn == 1
    assert end.server.ttls == ((57, end.server.packets),) and end.server.first_ip_id == 2000
    assert not anomalies


def test_out_of_order_segments() -> None:
    c = Conv()
    hs = c.handshake()
    data = c.send(1, SERVER_DATA, mss=100)
    random.Random(1).shuffle(data)
    ev, anomalies = run(hs + data)
    assert stream(ev, Side.SERVER) == SERVER_DATA
    assert not of(ev, Gap) and not anomalies


def test_identical_retransmission() -> None:
    c = Conv()
    frames = c.handshake() + c.send(0, b"A" * 3000)
    frames.append(c.frame(c.pkt(0, "PA", b"A" * 1400, seq=1001)))
    frames.append(c.frame(c.pkt(0, "PA", b"A" * 100 + b"B" * 100, seq=1001 + 2900)))  # partly old
    frames += c.send(0, b"B" * 100)  # now wholly old
    ev, anomalies = run(frames)
    assert stream(ev, Side.CLIENT) == b"A" * 3000 + b"B" * 100
    assert ev[-1].client.retransmissions == 2  # type: ignore[union-attr]
    assert not anomalies


def test_conflicting_retransmission_first_copy_wins() -> None:
    c = Conv()
    frames = c.handshake() + c.send(0, b"A" * 1000)
    frames.append(c.frame(c.pkt(0, "PA", b"X" * 1000, seq=1001)))
    ev, anomalies = run(frames)
    assert stream(ev, Side.CLIENT) == b"A" * 1000
    assert anomalies == {Anomaly.TCP_OVERLAP_CONFLICT: 1}
    assert ev[-1].client.overlap_conflicts == 1  # type: ignore[union-attr]


def test_overlapping_out_of_order_segments_first_seen_wins() -> None:
    c = Conv()
    frames = c.handshake()
    base = 1001
    # bytes 100..300 first (as "b"), then 50..150 conflicting ("X"), 250..400 agreeing, then 0..100
    frames.append(c.frame(c.pkt(0, "PA", b"b" * 200, seq=base + 100)))
    frames.append(c.frame(c.pkt(0, "PA", b"a" * 50 + b"X" * 50, seq=base + 50)))
    frames.append(c.frame(c.pkt(0, "PA", b"b" * 50 + b"c" * 100, seq=base + 250)))
    frames.append(c.frame(c.pkt(0, "PA", b"a" * 100, seq=base)))
    ev, anomalies = run(frames)
    assert stream(ev, Side.CLIENT) == b"a" * 100 + b"b" * 200 + b"c" * 100
    assert anomalies == {Anomaly.TCP_OVERLAP_CONFLICT: 1}


def test_gap_declared_when_receiver_acks_past_it() -> None:
    c = Conv()
    frames = c.handshake()
    seg = c.send(1, SERVER_DATA[:3000], mss=1000)
    frames += [seg[0], seg[2]]  # the middle segment was never captured
    frames.append(c.frame(c.pkt(0, "A")))  # client acks everything (it got all three)
    frames += c.send(1, b"after")
    ev, anomalies = run(frames)
    gaps = of(ev, Gap)
    assert [(g.side, g.offset, g.length) for g in gaps] == [(Side.SERVER, 1000, 1000)]
    # The gap comes before the data after it, at the time of the ACK.
    i = ev.index(gaps[0])
    assert isinstance(ev[i + 1], Data) and ev[i + 1].offset == 2000  # type: ignore[union-attr]
    s = stream(ev, Side.SERVER)
    assert s == SERVER_DATA[:1000] + b"\x00" * 1000 + SERVER_DATA[2000:3000] + b"after"
    assert anomalies == {Anomaly.TCP_GAP: 1}
    end = ev[-1]
    assert isinstance(end, FlowEnd) and (end.server.gaps, end.server.gap_bytes) == (1, 1000)


def test_gap_flushed_at_end_and_fin_after_it() -> None:
    c = Conv()
    frames = c.handshake()
    seg = c.send(0, CLIENT_DATA[:2000], mss=1000)
    frames.append(seg[1])
    frames.append(c.frame(c.pkt(0, "FA")))
    ev, anomalies = run(frames)
    kinds = [type(e).__name__ for e in ev if not isinstance(e, FlowStart | FlowEnd)]
    assert kinds == ["Gap", "Data", "Fin"]
    assert of(ev, Fin)[0].offset == 2000  # type: ignore[union-attr]
    assert anomalies == {Anomaly.TCP_GAP: 1}


def test_sequence_wraparound() -> None:
    c = Conv(isn=(2**32 - 2500, 2**32 - 1))
    frames = c.handshake() + c.send(0, CLIENT_DATA, mss=700) + c.send(1, SERVER_DATA)
    frames[5], frames[3] = frames[3], frames[5]  # some disorder across the wrap
    ev, anomalies = run(frames)
    assert stream(ev, Side.CLIENT) == CLIENT_DATA and stream(ev, Side.SERVER) == SERVER_DATA
    assert not anomalies


def test_rst_records_ttl_and_ip_id() -> None:
    c = Conv()
    frames = c.handshake() + c.send(0, client_hello())
    # An injected RST "from the server": another TTL, an unrelated IP ID.
    frames.append(c.frame(c.pkt(1, "RA", ttl=120, ip_id=0, advance=False)))
    frames += c.send(1, b"\x16\x03\x03\x00\x02ok")  # the real server answers anyway
    ev, _ = run(frames)
    (rst,) = of(ev, Rst)
    assert isinstance(rst, Rst)
    assert (rst.side, rst.ttl, rst.ip_id, rst.prev_ttl, rst.prev_ip_id) == (
        Side.SERVER, 120, 0, 57, 2000)
    assert rst.seq_delta == 0 and rst.seq == 5001 and rst.flags & 0x04
    end = ev[-1]
    assert isinstance(end, FlowEnd)
    assert end.server.rst == 1 and end.server.packets_after_rst == 1
    assert end.server.ttls == ((57, 2),)  # RSTs are not in the histogram
    assert end.server.last_ip_id == 2001


def test_rst_flood_is_capped() -> None:
    c = Conv()
    frames = c.handshake() + [c.frame(c.pkt(1, "R", advance=False)) for _ in range(30)]
    ev, anomalies = run(frames, FlowConfig(max_rst_events=4))
    assert len(of(ev, Rst)) == 4 and anomalies == {Anomaly.TCP_RST_FLOOD: 1}
    assert ev[-1].server.rst == 30  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("first_side", "client_port", "server_port", "want_client"),
    [(1, 40000, 443, 40000), (0, 40000, 443, 40000), (0, 8443, 50000, 50000),
     (0, 4000, 4000, 4000)],
)
def test_midstream_orientation(first_side: int, client_port: int, server_port: int,
                               want_client: int) -> None:
    c = Conv(client=("10.0.0.1", client_port), server=("10.0.0.2", server_port))
    frames = c.send(first_side, b"first") + c.send(1 - first_side, b"second")
    ev, _ = run(frames)
    start = ev[0]
    assert isinstance(start, FlowStart) and start.origin == "midstream"
    assert start.key.client_port == want_client
    if start.key.client_port == client_port and start.key.client_ip == "10.0.0.1":
        mine = Side.CLIENT if first_side == 0 else Side.SERVER
    else:
        mine = Side.SERVER if first_side == 0 else Side.CLIENT
    assert stream(ev, mine) == b"first"


def test_synack_first_orients_by_it() -> None:
    c = Conv()
    c.pkt(0, "S")  # the SYN was not captured
    frames = [c.frame(c.pkt(1, "SA")), c.frame(c.pkt(0, "A")), *c.send(0, b"hi")]
    ev, _ = run(frames)
    start = ev[0]
    assert isinstance(start, FlowStart) and start.origin == "synack"
    assert start.key.client_port == 40000 and stream(ev, Side.CLIENT) == b"hi"


def test_port_reuse_starts_a_new_flow() -> None:
    c1, frames = simple()
    c2 = Conv(isn=(777777, 888888), t0=c1.t0 + 100 * c1.step)
    frames2 = c2.handshake() + c2.send(0, b"second connection")
    ev, _ = run(frames + frames2)
    ends = of(ev, FlowEnd)
    assert [e.reason for e in ends] == ["reused", "eof"]  # type: ignore[attr-defined]
    assert stream(ev, Side.CLIENT, 1) == b"second connection"


def test_tcp_fast_open_data_on_syn() -> None:
    c = Conv()
    frames = [c.frame(c.pkt(0, "S", b"early")), c.frame(c.pkt(1, "SA")), *c.send(0, b"late")]
    ev, _ = run(frames)
    assert stream(ev, Side.CLIENT) == b"earlylate"


def test_byte_cap_stops_delivery_but_counts() -> None:
    _, frames = simple()
    ev, _ = run(frames, FlowConfig(max_bytes_per_side=1000))
    assert stream(ev, Side.CLIENT) == CLIENT_DATA[:1000]
    end = ev[-1]
    assert isinstance(end, FlowEnd) and end.client.capped
    assert (end.client.delivered_bytes, end.client.stream_bytes) == (1000, len(CLIENT_DATA))
    assert not of(ev, Fin) or all(f.offset == len(CLIENT_DATA) or f.side == Side.SERVER
                                  for f in of(ev, Fin))  # type: ignore[attr-defined]


def test_out_of_window_segment_is_dropped() -> None:
    c = Conv()
    frames = c.handshake() + c.send(0, b"ok")
    frames.append(c.frame(c.pkt(0, "PA", b"junk", seq=1003 + (100 << 20))))
    ev, anomalies = run(frames)
    assert stream(ev, Side.CLIENT) == b"ok" and anomalies == {Anomaly.TCP_OUT_OF_WINDOW: 1}


def test_ooo_overflow_forces_a_gap() -> None:
    c = Conv()
    frames = c.handshake()
    segs = c.send(0, CLIENT_DATA, mss=500)
    frames += segs[1:]  # the first segment is lost, and nobody ACKs
    ev, anomalies = run(frames, FlowConfig(max_ooo_bytes_per_side=2000))
    assert anomalies[Anomaly.TCP_OOO_OVERFLOW] >= 1 and anomalies[Anomaly.TCP_GAP] == 1
    assert stream(ev, Side.CLIENT) == b"\x00" * 500 + CLIENT_DATA[500:]


def test_idle_timeout_ends_flows_in_capture_time() -> None:
    a = Conv()
    b = Conv(client=("10.0.0.9", 40001), t0=a.t0 + 200 * 1_000_000_000)
    ev, _ = run(a.handshake() + b.handshake(), FlowConfig(idle_timeout_ns=60 * 10**9))
    kinds = [(type(e).__name__, e.flow_id) for e in ev]  # type: ignore[union-attr]
    assert kinds[:3] == [("FlowStart", 0), ("FlowEnd", 0), ("FlowStart", 1)]
    assert ev[1].reason == "idle"  # type: ignore[union-attr]


def test_closed_flows_end_after_linger() -> None:
    _, frames = simple()
    later = Conv(client=("10.0.0.9", 40001), t0=Conv().t0 + 10 * 1_000_000_000)
    ev, _ = run(frames + later.handshake(), FlowConfig(linger_ns=10**9))
    assert [e.reason for e in of(ev, FlowEnd)] == ["closed", "eof"]  # type: ignore[attr-defined]


def test_max_flows_evicts_least_recently_used() -> None:
    convs = [Conv(client=("10.0.0.1", 41000 + i)) for i in range(3)]
    frames = convs[0].send(0, b"a") + convs[1].send(0, b"b") + convs[0].send(0, b"c")
    frames += convs[2].send(0, b"d")
    ev, anomalies = run(frames, FlowConfig(max_flows=2))
    ends = of(ev, FlowEnd)
    assert ends[0].flow_id == 1 and ends[0].reason == "evicted"  # type: ignore[attr-defined]
    assert anomalies == {Anomaly.FLOW_TABLE_FULL: 1}


def test_flow_table_stays_small_for_many_sequential_flows() -> None:
    eng = TcpReassembler(FlowConfig(linger_ns=10**9))
    c: Counter[str] = Counter()
    peak = 0
    for i in range(60):
        conv = Conv(client=("10.0.0.1", 20000 + i), t0=1_700_000_000_000_000_000 + i * 10**9)
        for ts, frame in conv.handshake() + conv.send(0, b"x" * 10) + conv.close():
            p = decode(1, frame, c)
            assert p is not None
            eng.feed(ts, p)
            peak = max(peak, eng.active_flows)
        eng.events.clear()
    assert peak <= 3


def test_skip_stops_delivery() -> None:
    c = Conv()
    eng = TcpReassembler()
    counter: Counter[str] = Counter()
    got = b""
    for ts, frame in c.handshake() + c.send(0, b"x" * 4000, mss=1000):
        p = decode(1, frame, counter)
        assert p is not None
        eng.feed(ts, p)
        for e in eng.events:
            if isinstance(e, Data):
                got += e.data
                eng.skip(e.flow_id, Side.CLIENT)
        eng.events.clear()
    assert got == b"x" * 1000


# -- TLS detection by content -----------------------------------------------------------


def test_tls_detected_on_any_port_and_before_data() -> None:
    c = Conv(server=("10.0.0.2", 8080))
    hello = client_hello()
    frames = c.handshake() + [c.frame(c.pkt(0, "PA", hello[i : i + 1])) for i in range(3)]
    frames += c.send(0, hello[3:]) + c.send(1, b"\x16\x03\x03\x00\x01\x02")
    ev, _ = run(frames, detect=True)
    det = of(ev, Detected)
    assert [(d.side, d.result) for d in det] == [  # type: ignore[attr-defined]
        (Side.CLIENT, Detection.YES), (Side.SERVER, Detection.YES)]
    first_client = next(e for e in ev if isinstance(e, Data | Detected) and e.side == 0)
    assert isinstance(first_client, Detected)
    assert stream(ev, Side.CLIENT) == hello


def test_non_tls_client_stops_the_flow_with_tls_only() -> None:
    c = Conv(server=("10.0.0.2", 443))
    req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    frames = c.handshake() + c.send(0, req) + c.send(1, b"HTTP/1.1 200 OK\r\n\r\nbody")
    frames += c.send(0, b"more")
    ev, _ = run(frames, detect=True)
    assert [d.result for d in of(ev, Detected)] == [Detection.NO]  # type: ignore[attr-defined]
    assert stream(ev, Side.CLIENT) == req and stream(ev, Side.SERVER) == b""
    end = ev[-1]
    assert isinstance(end, FlowEnd) and end.client.capped and end.server.capped
    assert end.server.payload_bytes > 0
    ev2, _ = run(frames, FlowConfig(tls_only=False), detect=True)
    assert stream(ev2, Side.SERVER) == b"HTTP/1.1 200 OK\r\n\r\nbody"


def test_non_tls_answer_to_a_client_hello_is_kept() -> None:
    c = Conv()
    page = b"HTTP/1.1 403 Forbidden\r\n\r\nblocked"
    frames = c.handshake() + c.send(0, client_hello()) + c.send(1, page)
    ev, _ = run(frames, detect=True)
    assert [(d.side, d.result) for d in of(ev, Detected)] == [  # type: ignore[attr-defined]
        (Side.CLIENT, Detection.YES), (Side.SERVER, Detection.NO)]
    assert stream(ev, Side.SERVER) == page


def test_server_first_protocol_is_not_followed() -> None:
    c = Conv(server=("10.0.0.2", 22))
    banner = b"SSH-2.0-OpenSSH_9.6\r\n"
    frames = c.handshake() + c.send(1, banner) + c.send(0, b"SSH-2.0-client\r\n")
    ev, _ = run(frames, detect=True)
    assert stream(ev, Side.CLIENT) == b"" and stream(ev, Side.SERVER) == banner


def test_starttls_greeting_keeps_the_flow_delivering() -> None:
    c = Conv(server=("10.0.0.2", 25))
    frames = c.handshake() + c.send(1, b"220 mail ESMTP\r\n") + c.send(0, b"EHLO x\r\n")
    ev, _ = run(frames, detect=True)  # (a STARTTLS may follow: tlswatch.capture.starttls)
    assert stream(ev, Side.CLIENT) == b"EHLO x\r\n"
    assert stream(ev, Side.SERVER) == b"220 mail ESMTP\r\n"
    ev, _ = run(frames, FlowConfig(follow_starttls=False), detect=True)
    assert stream(ev, Side.CLIENT) == b"" and stream(ev, Side.SERVER) == b"220 mail ESMTP\r\n"


def test_detection_undecided_at_end() -> None:
    c = Conv()
    frames = c.handshake() + c.send(0, b"\x16") + c.close()
    ev, _ = run(frames, detect=True)
    assert [d.result for d in of(ev, Detected)] == [Detection.NEED_MORE]  # type: ignore[attr-defined]
    assert stream(ev, Side.CLIENT) == b"\x16"


def test_ipv6_flow() -> None:
    c = Conv(client=("2001:db8::1", 40000), server=("2001:db8::2", 443), v6=True)
    frames = c.handshake() + c.send(0, b"hello v6") + c.send(1, b"hi")
    c6: Counter[str] = Counter()
    eng = TcpReassembler(anomalies=c6)
    ev, _ = run(frames, engine=eng)
    assert ev[0].key.client_ip == "2001:db8::1"  # type: ignore[union-attr]
    assert stream(ev, Side.CLIENT) == b"hello v6"
    end = ev[-1]
    assert isinstance(end, FlowEnd) and end.server.first_ip_id is None
    assert end.server.ttls == ((57, 2),)


# -- property: any segmentation, order, duplication and loss reassembles faithfully ------

_STREAM = bytes(random.Random(3).randrange(256) for _ in range(6000))


@settings(max_examples=300, deadline=None)
@given(
    cuts=st.lists(st.integers(1, len(_STREAM) - 1), max_size=40),
    isn=st.integers(0, 2**32 - 1),
    seed=st.integers(0, 2**16),
    drop=st.integers(0, 3),
    dups=st.integers(0, 10),
    ack_end=st.booleans(),
)
def test_reassembly_property(cuts: list[int], isn: int, seed: int, drop: int, dups: int,
                             ack_end: bool) -> None:
    bounds = sorted({0, len(_STREAM), *cuts})
    segs = [(a, _STREAM[a:b]) for a, b in itertools.pairwise(bounds)]
    rng = random.Random(seed)
    first = segs[0]
    rest = segs[1:]
    lost = set(rng.sample(range(len(rest)), min(drop, len(rest))))
    kept = [s for i, s in enumerate(rest) if i not in lost]
    # duplicates that overlap neighbours (same bytes: no conflicts)
    for _ in range(dups):
        a = rng.randrange(len(_STREAM))
        kept.append((a, _STREAM[a : a + rng.randint(1, 500)]))
    rng.shuffle(kept)
    c: Counter[str] = Counter()
    eng = TcpReassembler(anomalies=c)
    src, dst = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    ts = 0

    def pkt(flags: int, seq: int, payload: bytes = b"", ack: int = 0) -> Decoded:
        return Decoded(src, dst, 6, 64, 1, 40000, 443, seq & 0xFFFFFFFF, ack, flags, 100,
                       payload)

    events: list[FlowEvent] = []
    for p in [pkt(0x02, isn), pkt(0x18, isn + 1 + first[0], first[1])] + [
            pkt(0x18, isn + 1 + a, d) for a, d in kept]:
        ts += 1
        eng.feed(ts, p)
    if ack_end:  # the receiver acknowledged everything: holes become gaps now
        ack = Decoded(dst, src, 6, 64, 1, 443, 40000, 9, (isn + 1 + len(_STREAM)) & 0xFFFFFFFF,
                      0x10, 100, b"")
        eng.feed(ts + 1, ack)
    eng.finish()
    events = eng.events
    got = stream(events, Side.CLIENT)
    have = bytearray(len(_STREAM))
    covered = bytearray(len(_STREAM))
    for a, d in [first, *kept]:
        have[a : a + len(d)] = d
        covered[a : a + len(d)] = b"\x01" * len(d)
    last = max(i for i in range(len(_STREAM)) if covered[i]) + 1
    assert len(got) == last
    for i in range(last):
        assert got[i] == (have[i] if covered[i] else 0)
    assert c[Anomaly.TCP_OVERLAP_CONFLICT] == 0
    assert sum(1 for e in events if isinstance(e, Gap)) == c[Anomaly.TCP_GAP]

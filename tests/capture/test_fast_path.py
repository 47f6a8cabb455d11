"""The C fast path (tlswatch/capture/_bulkbook.c) books exactly what the Python path books.

Every comparison runs the same capture twice, once with ``TLSWATCH_PURE_PYTHON`` set, and
compares every event (FlowEnd carries each side's counters) and the reader's counters.
"""

from __future__ import annotations

import io
import random
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from conftest import require_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlswatch.capture import Data, FlowConfig, read_flows

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
_MAC = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"


@pytest.fixture(scope="module")
def bulkbook() -> Any:
    # In CI the extension must be built (.ci/run installs with a compiler).
    return require_module("tlswatch.capture._bulkbook")


def frame(src: int, dst: int, sport: int, dport: int, seq: int, flags: int, payload: bytes,
          *, ttl: int = 64, ip_id: int = 0, options: bytes = b"", frag: int = 0,
          total: int | None = None) -> bytes:
    ihl = 5 + len(options) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, 0, 5 << 4, flags, 65535,
                      0, 0)
    length = ihl * 4 + len(tcp) + len(payload) if total is None else total
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, length, ip_id, frag, ttl, 6, 0,
                     src.to_bytes(4, "big"), dst.to_bytes(4, "big")) + options
    return _MAC + b"\x08\x00" + ip + tcp + payload


def pcap(records: list[tuple[int, bytes]], *, order: str = "<", ns: bool = False,
         snap: dict[int, int] | None = None, linktype: int = 1) -> bytes:
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for i, (ts, fr) in enumerate(records):
        sec, frac = divmod(ts, 1_000_000_000)
        cap = len(fr) if snap is None or i not in snap else min(len(fr), snap[i])
        out.append(struct.pack(order + "IIII", sec, frac if ns else frac // 1000, cap, len(fr)))
        out.append(fr[:cap])
    return b"".join(out)


def run(data: bytes | Path, *, pure: bool, monkeypatch: pytest.MonkeyPatch,
        config: FlowConfig | None = None, skip_after: int = 0, detect: bool = True
        ) -> tuple[list[str], tuple[int, ...], dict[str, int]]:
    """Every event as text, the reader's counters and anomalies. Like tlswatch analyse, the
    consumer skips a flow once it has seen ``skip_after`` bytes of it."""
    if pure:
        monkeypatch.setenv("TLSWATCH_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("TLSWATCH_PURE_PYTHON", raising=False)
    src = data if isinstance(data, Path) else io.BytesIO(data)
    reader = read_flows(src, config, detect_tls=detect)
    assert (reader.fast_path is None) == pure
    seen: dict[int, int] = {}
    events = []
    for ev in reader:
        events.append(repr(ev))
        if isinstance(ev, Data):
            seen[ev.flow_id] = seen.get(ev.flow_id, 0) + len(ev.data)
            if seen[ev.flow_id] >= skip_after:
                reader.skip(ev.flow_id)
    counters = (reader.packets, reader.bytes, reader.tcp_packets, reader.udp_packets)
    monkeypatch.delenv("TLSWATCH_PURE_PYTHON", raising=False)
    return events, counters, dict(reader.anomalies)


def assert_same(data: bytes | Path, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> int:
    slow = run(data, pure=True, monkeypatch=monkeypatch, **kw)
    fast = run(data, pure=False, monkeypatch=monkeypatch, **kw)
    assert fast[1] == slow[1]
    assert fast[2] == slow[2]
    assert fast[0] == slow[0]
    return len(slow[0])


@pytest.mark.parametrize("name", sorted(p.name for p in CAPTURES.glob("*.pcap")))
def test_sample_captures_book_the_same(name: str, bulkbook: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for skip_after in (0, 100, 1 << 30):
        assert_same(CAPTURES / name, monkeypatch, skip_after=skip_after)


def _bulk_capture(seed: int, flows: int = 6, packets: int = 3000) -> tuple[bytes, int]:
    """Interleaved connections with a handshake, then bulk both ways: TTL changes (more than
    eight values), IP IDs, retransmissions, jumps, RSTs, FINs, idle pauses past sweeps."""
    rnd = random.Random(seed)
    ts = 1_564_660_800 * 1_000_000_000
    conns = []
    recs: list[tuple[int, bytes]] = []
    for i in range(flows):
        c, s = 0x0A000001 + i, 0xC0000201
        cs, ss = rnd.getrandbits(32), rnd.getrandbits(32)
        conns.append([c, s, 40000 + i, 443, cs + 1, ss + 1])
        recs += [(ts, frame(c, s, 40000 + i, 443, cs, 0x02, b"")),
                 (ts + 1000, frame(s, c, 443, 40000 + i, ss, 0x12, b"")),
                 (ts + 2000, frame(c, s, 40000 + i, 443, cs + 1, 0x10, b""))]
        ts += 10_000
    booked = 0
    for _ in range(packets):
        k = rnd.randrange(flows)
        c, s, cp, sp, cseq, sseq = conns[k]
        server = rnd.random() < 0.7
        n = rnd.choice([0, 0, 1, 100, 1448, 1448])
        roll = rnd.random()
        seq = sseq if server else cseq
        if roll < 0.03:
            seq -= rnd.choice([n or 1, 2000])  # a retransmission or an old segment
        elif roll < 0.05:
            seq += rnd.choice([3000, 1 << 27])  # a hole, or out of window
        flags = 0x18
        if roll > 0.998:
            flags = 0x04  # RST
        elif roll > 0.996:
            flags = 0x11  # FIN
        ts += rnd.choice([1000, 50_000, 900_000_000]) if rnd.random() < 0.01 else 100_000
        if rnd.random() < 0.002:
            ts += 125 * 1_000_000_000  # past the idle timeout
        ttl = rnd.choice([64, 64, 64, 63, 60, 50, 40, 30, 20, 10, 5]) if server else 128
        opts = b"\x01\x01\x01\x00" if rnd.random() < 0.01 else b""
        payload = bytes(rnd.getrandbits(8) for _ in range(min(n, 16))) * (n // 16 + 1)
        fr = frame(s, c, sp, cp, seq, flags, payload[:n], ttl=ttl,
                   ip_id=rnd.getrandbits(16), options=opts) if server else \
            frame(c, s, cp, sp, seq, flags, payload[:n], ttl=ttl,
                  ip_id=rnd.getrandbits(16), options=opts)
        recs.append((ts, fr))
        booked += 1
        if server:
            conns[k][5] = (sseq + n) & 0xFFFFFFFF if seq == sseq else sseq
        else:
            conns[k][4] = (cseq + n) & 0xFFFFFFFF if seq == cseq else cseq
    return pcap(recs), booked


@pytest.mark.parametrize("seed", range(6))
def test_bulk_flows_book_the_same(seed: int, bulkbook: Any,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = _bulk_capture(seed)
    for cfg in (None, FlowConfig(max_bytes_per_side=500), FlowConfig(max_flows=3)):
        for skip_after in (0, 2000):
            assert_same(data, monkeypatch, config=cfg, skip_after=skip_after)
            assert_same(data, monkeypatch, config=cfg, skip_after=skip_after, detect=False)


def _records(data: bytes) -> list[tuple[int, bytes]]:
    recs = []
    pos = 24
    while pos < len(data):
        sec, usec, cap, _orig = struct.unpack_from("<IIII", data, pos)
        recs.append((sec * 1_000_000_000 + usec * 1000, data[pos + 16: pos + 16 + cap]))
        pos += 16 + cap
    return recs


def _read_skipping(data: bytes) -> Any:
    """A reader (C path on) over ``data`` whose consumer skips each flow at its first bytes."""
    reader = read_flows(io.BytesIO(data))
    for ev in reader:
        if isinstance(ev, Data):
            reader.skip(ev.flow_id)
    assert reader.fast_path is not None
    return reader


def test_fast_path_takes_most_bulk_packets(bulkbook: Any, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    """The point of it: once flows are skipped, nearly every packet is booked in C."""
    data, _ = _bulk_capture(1, packets=5000)
    monkeypatch.delenv("TLSWATCH_PURE_PYTHON", raising=False)
    reader = _read_skipping(data)
    booked, nbytes, skipped = reader.fast_path.counters()
    assert skipped == 0
    assert booked > 0.8 * reader.packets
    assert 0 < nbytes < reader.bytes


@pytest.mark.parametrize(("order", "ns"), [(">", False), ("<", True), (">", True)])
def test_byte_orders_and_resolutions(order: str, ns: bool, bulkbook: Any,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = _bulk_capture(2, packets=800)
    # the same records in another container (7 ns more: a time µs cannot say)
    recs = [(ts + (7 if ns else 0), fr) for ts, fr in _records(data)]
    assert_same(pcap(recs, order=order, ns=ns), monkeypatch, skip_after=0)


def hostile_capture(seed: int = 3, flows: int = 2, packets: int = 600) -> bytes:
    """Bulk flows with snapped records, lying IP lengths, fragments, any TCP data offset and
    UDP datagrams cut inside their header."""
    data, _ = _bulk_capture(seed, flows=flows, packets=packets)
    recs = []
    rnd = random.Random(seed)
    snap: dict[int, int] = {}
    for ts, record in _records(data):
        fr = bytearray(record)
        i = len(recs)
        roll = rnd.random()
        if i > 10 and len(fr) >= 54:
            if roll < 0.05:
                snap[i] = rnd.randrange(0, 60)  # cut inside the headers
            elif roll < 0.10:
                fr[16:18] = rnd.getrandbits(16).to_bytes(2, "big")  # IP total length lies
            elif roll < 0.13:
                fr[20:22] = b"\x20\x00"  # a first fragment
            elif roll < 0.16:
                fr[46] = rnd.getrandbits(8)  # data offset anything
            elif roll < 0.18:
                fr[23] = 17  # UDP now, its length field whatever the bytes say
        recs.append((ts, bytes(fr)))
    return pcap(recs, snap=snap)


def test_hostile_headers_fall_back_to_python(bulkbook: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapped records, lying IP lengths, fragments and caplen > origlen in a bulk flow."""
    data = hostile_capture()
    assert_same(data, monkeypatch, skip_after=0)
    assert_same(data, monkeypatch, skip_after=300)


_step = st.tuples(st.integers(0, 3), st.booleans(), st.sampled_from([0, 1, 10, 1448]),
                  st.sampled_from([0x10, 0x18, 0x18, 0x18, 0x02, 0x12, 0x11, 0x04]),
                  st.sampled_from([0, 0, 0, -1, 5000, 1 << 30]), st.integers(0, 12),
                  st.sampled_from([100_000, 100_000, 2_000_000_000, 130_000_000_000]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_step, min_size=1, max_size=120), skip_after=st.sampled_from([0, 20]),
       max_bytes=st.sampled_from([30, 1 << 20]), max_flows=st.sampled_from([2, 100]))
def test_random_packet_sequences_book_the_same(steps: list[tuple[int, bool, int, int, int,
                                                                 int, int]], skip_after: int,
                                               max_bytes: int, max_flows: int) -> None:
    require_module("tlswatch.capture._bulkbook")
    seqs = [[1000, 5000] for _ in range(4)]
    ts = 1_000_000_000_000
    recs = []
    for flow, server, n, flags, jump, ttl, dt in steps:
        ts += dt
        c, s = 0x0A000001 + flow, 0xC0000201
        seq = seqs[flow][server] + (jump if jump >= 0 else -n)
        fr = frame(s, c, 443, 40000 + flow, seq, flags, b"\x17" * n, ttl=ttl,
                   ip_id=ts & 0xFFFF) if server else \
            frame(c, s, 40000 + flow, 443, seq, flags, b"\x16" * n, ttl=60 + ttl)
        if jump == 0:
            seqs[flow][server] = (seq + n) & 0xFFFFFFFF
        recs.append((ts, fr))
    data = pcap(recs)
    with pytest.MonkeyPatch.context() as mp:
        assert_same(data, mp, config=FlowConfig(max_bytes_per_side=max_bytes,
                                                max_flows=max_flows), skip_after=skip_after)


# -- the table itself ------------------------------------------------------------------------


def _reverse(key: bytes) -> bytes:
    """The other direction's flow key (version, src, dst, sport, dport; IPv4 padded)."""
    n = 16 if key[0] == 6 else 4
    src, dst, ports = key[1:1 + n], key[1 + n:1 + 2 * n], key[1 + 2 * n:5 + 2 * n]
    return key[:1] + dst + src + ports[2:] + ports[:2] + key[5 + 2 * n:]


def test_table_add_pop_against_a_model(bulkbook: Any) -> None:
    """Insertions and deletions in random order (linear probing with backward-shift
    deletion) keep every remaining key findable."""
    lru: OrderedDict[int, None] = OrderedDict()
    table = bulkbook.BulkTable(lru, 300, 12345)
    rnd = random.Random(7)
    model: dict[bytes, int] = {}
    for step in range(20_000):
        if model and (rnd.random() < 0.45 or len(model) >= 300):
            key = rnd.choice(list(model))
            fid = model.pop(key)
            other = _reverse(key)
            got = table.pop(key if rnd.random() < 0.5 else other)
            assert got == (None, None, None), (step, fid)
            assert table.pop(key) is None
        else:
            v6 = rnd.random() < 0.5
            key = (b"\x06" + rnd.getrandbits(288).to_bytes(36, "big") if v6 else
                   b"\x04" + rnd.getrandbits(96).to_bytes(12, "big") + bytes(24))
            other = _reverse(key)
            if key in model or other in model or key == other:
                continue
            assert table.add(key, other, step, 0, False, None, None)
            model[key] = step
        assert len(table) == len(model)
    for key in model:
        assert table.pop(key) is not None
    assert len(table) == 0


def test_table_is_bounded(bulkbook: Any) -> None:
    table = bulkbook.BulkTable(OrderedDict(), 2, 1)
    keys = [bytes([i]) * 37 for i in range(6)]
    assert table.add(keys[0], keys[1], 0, 0, False, None, None)
    assert table.add(keys[2], keys[3], 1, 0, False, None, None)
    assert not table.add(keys[4], keys[5], 2, 0, False, None, None)  # full: Python books it
    with pytest.raises(ValueError, match="already registered"):
        table.pop(keys[0])
        table.add(keys[2], keys[0], 3, 0, False, None, None)
    with pytest.raises(ValueError, match="37 bytes"):
        table.pop(b"short")
    with pytest.raises(ValueError, match="TTL"):
        table.add(keys[4], keys[5], 4, 0, False, (True, 1, True, True, {300: 1}), None)
    assert len(table) == 1  # a refused add leaves nothing behind


def test_walk_refuses_bad_arguments(bulkbook: Any) -> None:
    table = bulkbook.BulkTable(OrderedDict(), 4, 1)
    with pytest.raises(TypeError):
        table.walk_pcap(bytearray(100), 0, False, 1000, 0, 0)
    with pytest.raises(ValueError):
        table.walk_pcap(b"", -1, False, 1000, 0, 0)
    assert table.walk_pcap(b"\x00" * 10, 0, False, 1000, 0, 0) == 0  # nothing whole to book
    with pytest.raises(ValueError):
        table.walk_pcap(b"", 0, False, 1000, 0, 9)  # no such link kind


# -- pcapng ------------------------------------------------------------------------------------


def _pcapng(recs: list[tuple[int, bytes]], order: str, seed: int) -> bytes:
    """Two sections; interfaces in µs, ns, 2^-20 s (not a whole number of ns per unit: the
    Python path's) and with an offset; a raw-IP interface; SPBs and DSBs in between."""
    from tests.capture import capbuild as cb

    rnd = random.Random(seed)
    half = len(recs) // 2
    out = []
    for part in (recs[:half], recs[half:]):
        out.append(cb.shb(order))
        out.append(cb.idb(1, order))  # 0: µs
        out.append(cb.idb(1, order, tsresol=9))  # 1: ns
        out.append(cb.idb(1, order, tsresol=0x80 | 20))  # 2: 2^-20 s
        out.append(cb.idb(1, order, tsresol=9, tsoffset=-1000))  # 3: ns, 1000 s earlier
        out.append(cb.idb(101, order))  # 4: raw IP
        for ts, fr in part:
            roll = rnd.random()
            if roll < 0.5:
                out.append(cb.epb(0, ts // 1000, fr, order))
            elif roll < 0.8:
                out.append(cb.epb(1, ts, fr, order))
            elif roll < 0.87:
                out.append(cb.epb(2, (ts << 20) // 1_000_000_000, fr, order))
            elif roll < 0.94:
                out.append(cb.epb(3, ts + 1000 * 1_000_000_000, fr, order))
            elif roll < 0.97:
                out.append(cb.epb(4, ts // 1000, fr[14:], order))
            elif roll < 0.99:
                out.append(cb.spb(fr, order))
            else:
                out.append(cb.dsb(0x544C534B, b"# nothing\n", order))
                out.append(cb.epb(0, ts // 1000, fr, order))
    return b"".join(out)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("seed", range(3))
def test_pcapng_books_the_same(order: str, seed: int, bulkbook: Any,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = _bulk_capture(seed, packets=2000)
    ng = _pcapng(_records(data), order, seed)
    for skip_after in (0, 2000):
        assert_same(ng, monkeypatch, skip_after=skip_after)
    monkeypatch.delenv("TLSWATCH_PURE_PYTHON", raising=False)
    reader = _read_skipping(ng)
    assert reader.fast_path.counters()[0] > 0.3 * reader.packets  # it does take EPBs


@pytest.mark.filterwarnings("ignore:.*trailer length differs")
def test_pcapng_hostile_blocks_fall_back_to_python(bulkbook: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """EPBs whose lengths lie (caplen past the block, trailer differs, caplen > origlen), an
    unknown interface, a timestamp past 64 bits of ns: the Python path decides."""
    from tests.capture import capbuild as cb

    data, _ = _bulk_capture(5, flows=3, packets=800)
    recs = _records(data)
    rnd = random.Random(5)
    out = [cb.shb(), cb.idb(1)]
    for i, (ts, fr) in enumerate(recs):
        blk = bytearray(cb.epb(0, ts // 1000, fr))
        roll = rnd.random()
        if i > 20:
            if roll < 0.02:
                blk[20:24] = (len(fr) + 9).to_bytes(4, "little")  # caplen past the block
            elif roll < 0.04:
                blk[24:28] = (len(fr) - 1).to_bytes(4, "little")  # caplen > origlen
            elif roll < 0.05:
                blk[8:12] = (7).to_bytes(4, "little")  # no such interface
            elif roll < 0.06:
                blk[12:16] = b"\xff\xff\xff\xff"  # ~1.8e19 us
        out.append(bytes(blk))
    out.append(cb.epb(0, ts // 1000, recs[-1][1])[:-4] + b"\x00\x00\x00\x00")  # bad trailer
    assert_same(b"".join(out), monkeypatch, skip_after=0)



# -- other link types ---------------------------------------------------------------------

_RELINK = {
    # name: (link type, how an Ethernet frame of the workload becomes one of it)
    "vlan": (1, lambda fr: fr[:12] + b"\x81\x00\x00\x05" + fr[12:]),
    "qinq": (1, lambda fr: fr[:12] + b"\x88\xa8\x00\x07\x81\x00\x00\x05" + fr[12:]),
    "six-tags": (1, lambda fr: fr[:12] + b"\x81\x00\x00\x05" * 6 + fr[12:]),  # Python's
    "raw": (101, lambda fr: fr[14:]),
    "ipv4": (228, lambda fr: fr[14:]),
    "sll": (113, lambda fr: b"\x00\x00\x00\x01\x00\x06" + fr[6:12] + b"\x00\x00" + fr[12:]),
    "sll2": (276, lambda fr: fr[12:14] + b"\x00\x00\x00\x00\x00\x02\x00\x01\x00\x06"
             + fr[6:12] + b"\x00\x00" + fr[14:]),
}


def _same_in_both_containers(recs: list[tuple[int, bytes]], linktype: int,
                             monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The same events with and without the C path, from a pcap and a pcapng of ``recs``;
    how many packets the C path took from each."""
    from tests.capture import capbuild as cb

    as_pcapng = cb.shb() + cb.idb(linktype) + b"".join(cb.epb(0, ts // 1000, fr)
                                                      for ts, fr in recs)
    booked = []
    for capture in (pcap(recs, linktype=linktype), as_pcapng):
        for skip_after in (0, 2000):
            assert_same(capture, monkeypatch, skip_after=skip_after)
        monkeypatch.delenv("TLSWATCH_PURE_PYTHON", raising=False)
        booked.append(_read_skipping(capture).fast_path.counters()[0])
    return booked


@pytest.mark.parametrize("kind", sorted(_RELINK))
def test_other_link_types_book_the_same(kind: str, bulkbook: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    linktype, relink = _RELINK[kind]
    data, _ = _bulk_capture(6, packets=1500)
    recs = [(ts, relink(fr)) for ts, fr in _records(data)]
    for booked in _same_in_both_containers(recs, linktype, monkeypatch):
        if kind == "six-tags":
            assert booked == 0  # more VLAN tags than the C path reads: all Python's
        else:
            assert booked > 0.5 * len(recs)


# -- IPv6 -------------------------------------------------------------------------------------


def to_v6(fr: bytes) -> bytes:
    """An Ethernet/IPv4 frame of the workload as IPv6 (addresses in 2001:db8::/96 around the
    IPv4 ones); IPv4 options become a hop-by-hop header (IPv6 packets with extension headers
    take the Python path)."""
    ip = fr[14:]
    ihl = (ip[0] & 15) * 4
    total = int.from_bytes(ip[2:4], "big")
    ext, nh = b"", ip[9]
    if ihl > 20:
        ext, nh = bytes([ip[9], 0]) + bytes(6), 0
    plen = len(ext) + (total - ihl if total >= ihl else len(ip) - ihl)
    prefix = b"\x20\x01\x0d\xb8" + bytes(8)
    hdr = struct.pack("!IHBB", 0x60000000, plen & 0xFFFF, nh, ip[8]) + prefix + ip[12:16] \
        + prefix + ip[16:20]
    return fr[:12] + b"\x86\xdd" + hdr + ext + ip[ihl:]


@pytest.mark.parametrize("kind", ["eth", "raw", "sll2", "mixed"])
def test_ipv6_books_the_same(kind: str, bulkbook: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = _bulk_capture(7, flows=8, packets=2500)
    recs = _records(data)
    if kind == "mixed":  # even client addresses IPv6, odd ones IPv4
        recs = [(ts, to_v6(fr) if (fr[29] if fr[26] == 10 else fr[33]) % 2 == 0 else fr)
                for ts, fr in recs]
    else:
        recs = [(ts, to_v6(fr)) for ts, fr in recs]
    linktype = {"eth": 1, "mixed": 1, "raw": 229, "sll2": 276}[kind]
    if kind == "raw":
        recs = [(ts, fr[14:]) for ts, fr in recs]
    elif kind == "sll2":
        recs = [(ts, _RELINK["sll2"][1](fr)) for ts, fr in recs]
    for booked in _same_in_both_containers(recs, linktype, monkeypatch):
        assert booked > 0.5 * len(recs)


def test_ipv6_hostile_headers_fall_back_to_python(bulkbook: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Lying payload lengths, snapped records, extension headers, any data offset."""
    data, _ = _bulk_capture(8, flows=3, packets=900)
    rnd = random.Random(8)
    recs, snap = [], {}
    for i, (ts, fr4) in enumerate(_records(data)):
        fr = bytearray(to_v6(fr4))
        roll = rnd.random()
        if i > 10:
            if roll < 0.05:
                snap[i] = rnd.randrange(0, 80)
            elif roll < 0.10:
                fr[18:20] = rnd.getrandbits(16).to_bytes(2, "big")  # payload length lies
            elif roll < 0.13:
                fr[20] = 60  # a destination-options header that is not there
            elif roll < 0.16 and len(fr) > 67:
                fr[66] = rnd.getrandbits(8)  # TCP data offset anything
        recs.append((ts, bytes(fr)))
    assert_same(pcap(recs, snap=snap), monkeypatch, skip_after=0)
    assert_same(pcap(recs, snap=snap), monkeypatch, skip_after=300)

"""tlswatch.testing.pcap_writer: file formats parsed by hand and by scapy, TCP bookkeeping."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.utils import rdpcap

from tlswatch.testing.pcap_writer import (
    DEFAULT_MSS,
    SECRETS_TYPE_TLS_KEYLOG,
    Host,
    Packet,
    TcpFlow,
    pcap_bytes,
    pcapng_bytes,
    replay,
    udp_datagram,
)
from tlswatch.testing.transcripts import Flight

CLIENT = Host("192.0.2.10", "00:00:5e:00:53:0a", 64)
SERVER = Host("198.51.100.10", "00:00:5e:00:53:01", 52)
T0 = 1_564_660_800_000_000_000  # 2019-08-01T12:00:00Z in ns


def _flow(**kw: int) -> TcpFlow:
    return TcpFlow(CLIENT, SERVER, client_port=40000, start_ns=T0, rtt_ns=40_000_000, **kw)


def _tcp(packets: list[Packet]) -> list[tuple[IP, TCP]]:
    out = []
    for p in packets:
        ip = IP(p.frame[14:])
        out.append((ip, ip[TCP]))
    return out


def _pcapng_blocks(data: bytes) -> list[tuple[int, bytes]]:
    blocks, i = [], 0
    while i < len(data):
        btype, total = struct.unpack_from("<II", data, i)
        assert total % 4 == 0 and struct.unpack_from("<I", data, i + total - 4)[0] == total
        blocks.append((btype, data[i + 8 : i + total - 4]))
        i += total
    return blocks


def test_handshake_data_and_close_bookkeeping() -> None:
    flow = _flow(client_isn=1000, server_isn=5000, server_ip_id=0xFFFF)
    flow.connect()
    big = bytes(range(256)) * 15  # 3840 bytes: three segments at MSS 1448
    replay(flow, [Flight("client", b"hello", "x"), Flight("server", big, "y")])
    flow.close("client")
    pk = _tcp(flow.packets)
    flags = [str(t.flags) for _, t in pk]
    assert flags[:3] == ["S", "SA", "A"]
    server_data = [(ip, t) for ip, t in pk if ip.src == SERVER.ip and len(t.payload)]
    assert [len(t.payload) for _, t in server_data] == [DEFAULT_MSS, DEFAULT_MSS, 944]
    assert b"".join(bytes(t.payload) for _, t in server_data) == big
    assert [t.seq for _, t in server_data] == [5001, 5001 + 1448, 5001 + 2896]
    assert all(t.ack == 1001 + 5 for _, t in server_data)
    # The client ACKs every second segment and the end of the flight.
    client_acks = [t.ack for ip, t in pk if ip.src == CLIENT.ip and str(t.flags) == "A"]
    assert 5001 + 2896 in client_acks and 5001 + 3840 in client_acks
    # IP IDs count per side and wrap; TTLs are the hosts'.
    assert [ip.id for ip, _ in pk if ip.src == SERVER.ip][:3] == [0xFFFF, 0, 1]
    assert {ip.ttl for ip, _ in pk if ip.src == SERVER.ip} == {52}
    # Timestamps strictly increase in whole microseconds; the SYN-ACK is one RTT after the SYN.
    times = [p.t_ns for p in flow.packets]
    assert all(b > a for a, b in itertools.pairwise(times))
    assert all(t % 1000 == 0 for t in times)
    assert times[1] - times[0] == 40_000_000
    # The close: FIN, FIN, ACK, with consistent sequence numbers.
    (_, fin_c), (_, fin_s), (_, last) = pk[-3:]
    assert (str(fin_c.flags), str(fin_s.flags), str(last.flags)) == ("FA", "FA", "A")
    assert fin_s.ack == fin_c.seq + 1 and last.ack == fin_s.seq + 1


def test_injected_rst_has_foreign_ttl_and_ip_id() -> None:
    flow = _flow(server_ip_id=100)
    flow.connect()
    flow.send("client", b"x" * 10)
    flow.rst("server", delay=2_000_000, ttl=61, ip_id=0, df=False)
    flow.send("server", b"late", delay=40_000_000)
    server = [(ip, t) for ip, t in _tcp(flow.packets) if ip.src == SERVER.ip]
    (rst_ip, rst), (late_ip, _) = server[-2:]
    assert str(rst.flags) == "RA" and rst.window == 0 and rst.options == []
    assert (rst_ip.ttl, rst_ip.id, str(rst_ip.flags)) == (61, 0, "")
    # The server's own counter did not move: its next packet continues its sequence.
    assert (late_ip.id, late_ip.ttl, str(late_ip.flags)) == (101, 52, "DF")


def test_retransmit_repeats_seq_and_payload() -> None:
    flow = _flow()
    flow.connect()
    flow.send("client", b"hello")
    flow.retransmit("client", delay=240_000_000)
    (_, a), (_, b) = _tcp(flow.packets)[-2:]
    assert (a.seq, bytes(a.payload)) == (b.seq, bytes(b.payload))
    assert flow.packets[-1].t_ns - flow.packets[-2].t_ns == 240_000_000


def test_pcap_file_format(tmp_path: Path) -> None:
    flow = _flow()
    flow.connect()
    data = pcap_bytes(flow.packets)
    magic, major, minor, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, 1) and snaplen >= 65535
    sec, usec, incl, orig = struct.unpack_from("<IIII", data, 24)
    assert sec * 10**9 + usec * 1000 == T0 and incl == orig == len(flow.packets[0].frame)
    path = tmp_path / "x.pcap"
    path.write_bytes(data)
    read = rdpcap(str(path))
    assert [bytes(p) for p in read] == [p.frame for p in flow.packets]
    with pytest.raises(ValueError, match="microsecond"):
        pcap_bytes([Packet(T0 + 1, b"\x00" * 60)])


def test_pcapng_file_format_with_dsb(tmp_path: Path) -> None:
    flow = _flow()
    flow.connect()
    keylog = b"CLIENT_RANDOM " + b"ab" * 32 + b" " + b"cd" * 48 + b"\n"
    packets = [*flow.packets[:2], Packet(flow.packets[2].t_ns, flow.packets[2].frame, "note")]
    data = pcapng_bytes(packets, keylog=keylog)
    blocks = _pcapng_blocks(data)
    assert [b for b, _ in blocks] == [0x0A0D0D0A, 1, 0x0A, 6, 6, 6]
    shb = blocks[0][1]
    assert struct.unpack_from("<IHHq", shb) == (0x1A2B3C4D, 1, 0, -1)
    idb = blocks[1][1]
    assert struct.unpack_from("<HH", idb) == (1, 0)
    assert b"\x09\x00\x01\x00\x09" in idb  # if_tsresol = 9: nanoseconds
    stype, slen = struct.unpack_from("<II", blocks[2][1])
    assert (stype, slen) == (SECRETS_TYPE_TLS_KEYLOG, len(keylog))
    assert blocks[2][1][8 : 8 + slen] == keylog
    _, hi, lo, cap, orig = struct.unpack_from("<IIIII", blocks[3][1])
    assert (hi << 32 | lo) == T0 and cap == orig == len(packets[0].frame)
    assert b"note" in blocks[5][1]
    path = tmp_path / "x.pcapng"
    path.write_bytes(data)
    read = rdpcap(str(path))
    assert [bytes(p) for p in read] == [p.frame for p in packets]
    assert [int(p.time * 10**6) for p in read] == [p.t_ns // 1000 for p in packets]
    assert b"\x0a\x00\x00\x00" not in pcapng_bytes(packets)[:64]  # no DSB without a key log


def test_udp_datagram() -> None:
    p = udp_datagram(CLIENT, SERVER, sport=5353, dport=53, payload=b"q", t_ns=T0, ip_id=7)
    ip = IP(p.frame[14:])
    assert (ip.src, ip.dst, ip.id, ip.ttl, ip[UDP].dport, bytes(ip[UDP].payload)) == (
        CLIENT.ip, SERVER.ip, 7, 64, 53, b"q",
    )
    with pytest.raises(ValueError):
        udp_datagram(CLIENT, SERVER, sport=1, dport=2, payload=b"", t_ns=T0 + 1, ip_id=0)


def test_same_inputs_same_bytes() -> None:
    def build() -> bytes:
        flow = _flow()
        flow.connect()
        replay(flow, [Flight("client", b"a" * 3000, "x"), Flight("server", b"b" * 10, "y")])
        flow.close("server")
        return pcapng_bytes(flow.packets) + pcap_bytes(flow.packets)

    assert build() == build()

"""Fixture builders for the capture tests (not a test module).

Packets are crafted with scapy (checksums and headers as real stacks write them); the file
containers are packed here byte by byte, so every byte order, resolution and block type can
be produced exactly, including broken ones.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw


def eth(**fields: object) -> Packet:
    """Ethernet with fixed MACs: scapy would otherwise resolve (ARP/ND) the destination."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **fields)


# -- containers -------------------------------------------------------------------------

PCAP_MAGIC = {"us": 0xA1B2C3D4, "ns": 0xA1B23C4D}


def pcap_bytes(packets: Iterable[tuple[int, bytes]], *, linktype: int = 1, order: str = "<",
               resolution: str = "us", snaplen: int = 65535) -> bytes:
    """A classic pcap file; ``packets`` are (ts_ns, frame)."""
    out = [struct.pack(order + "IHHiIII", PCAP_MAGIC[resolution], 2, 4, 0, 0, snaplen,
                       linktype)]
    div = 1000 if resolution == "us" else 1
    for ts, frame in packets:
        sec, frac = divmod(ts, 1_000_000_000)
        out.append(struct.pack(order + "IIII", sec, frac // div, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)


def _pad4(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def block(btype: int, body: bytes, order: str = "<") -> bytes:
    body = _pad4(body)
    n = 12 + len(body)
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def option(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + _pad4(value)


def shb(order: str = "<") -> bytes:
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    return block(0x0A0D0D0A, body, order)


def idb(linktype: int = 1, order: str = "<", *, tsresol: int | None = None,
        tsoffset: int | None = None, snaplen: int = 0) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), order)
    if tsoffset is not None:
        opts += option(14, struct.pack(order + "q", tsoffset), order)
    if opts:
        opts += option(0, b"", order)
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts, order)


def epb(iface: int, units: int, frame: bytes, order: str = "<",
        origlen: int | None = None) -> bytes:
    body = struct.pack(order + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(frame),
                       len(frame) if origlen is None else origlen) + _pad4(frame)
    return block(6, body, order)


def spb(frame: bytes, order: str = "<", origlen: int | None = None) -> bytes:
    return block(3, struct.pack(order + "I", len(frame) if origlen is None else origlen)
                 + frame, order)


def dsb(secrets_type: int, data: bytes, order: str = "<") -> bytes:
    return block(0x0A, struct.pack(order + "II", secrets_type, len(data)) + data, order)


def pcapng_bytes(packets: Iterable[tuple[int, bytes]], *, linktype: int = 1,
                 order: str = "<") -> bytes:
    """A one-section, one-interface pcapng file (µs resolution)."""
    return shb(order) + idb(linktype, order) + b"".join(
        epb(0, ts // 1000, frame, order) for ts, frame in packets)


# -- TLS messages ---------------------------------------------------------------------------


def vec(data: bytes, n: int) -> bytes:
    return len(data).to_bytes(n, "big") + data


def record(ctype: int, payload: bytes) -> bytes:
    return bytes([ctype]) + b"\x03\x03" + vec(payload, 2)


def records(ctype: int, payload: bytes, size: int = 16384) -> bytes:
    return b"".join(record(ctype, payload[i : i + size]) for i in range(0, len(payload), size))


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + vec(body, 3)


def client_hello(sni: bytes = b"example.test") -> bytes:
    sni_ext = (0).to_bytes(2, "big") + vec(vec(b"\x00" + vec(sni, 2), 2), 2)
    body = (b"\x03\x03" + b"\x01" * 32 + vec(b"", 1) + vec(b"\x13\x01\xc0\x2f", 2)
            + vec(b"\x00", 1) + vec(sni_ext, 2))
    return record(22, handshake(1, body))


def server_flight(certs: Sequence[bytes]) -> bytes:
    """ServerHello (TLS 1.2) + Certificate (over as many records as needed) + ServerHelloDone."""
    sh = b"\x03\x03" + b"\x02" * 32 + vec(b"", 1) + b"\xc0\x2f" + b"\x00" + vec(b"", 2)
    cert = vec(b"".join(vec(c, 3) for c in certs), 3)
    msgs = handshake(2, sh) + handshake(11, cert) + handshake(14, b"")
    return records(22, msgs)


# -- TCP conversations ----------------------------------------------------------------------


@dataclass
class Conv:
    """A TCP connection crafted with scapy; tracks each side's next sequence number."""

    client: tuple[str, int] = ("10.0.0.1", 40000)
    server: tuple[str, int] = ("10.0.0.2", 443)
    isn: tuple[int, int] = (1000, 5000)
    ttl: tuple[int, int] = (64, 57)
    v6: bool = False
    t0: int = 1_700_000_000_000_000_000
    step: int = 1_000_000
    seqs: list[int] = field(default_factory=list)
    ip_ids: list[int] = field(default_factory=lambda: [100, 2000])
    n: int = 0

    def __post_init__(self) -> None:
        self.seqs = [self.isn[0], self.isn[1]]

    def pkt(self, side: int, flags: str, payload: bytes = b"", *, seq: int | None = None,
            ack: int | None = None, ttl: int | None = None, ip_id: int | None = None,
            advance: bool = True) -> Packet:
        src, dst = (self.client, self.server) if side == 0 else (self.server, self.client)
        s = self.seqs[side] if seq is None else seq
        a = self.seqs[1 - side] if ack is None else ack
        ip: Packet
        if self.v6:
            ip = IPv6(src=src[0], dst=dst[0], hlim=self.ttl[side] if ttl is None else ttl)
        else:
            if ip_id is None:
                ip_id = self.ip_ids[side]
                self.ip_ids[side] += 1
            ip = IP(src=src[0], dst=dst[0], ttl=self.ttl[side] if ttl is None else ttl, id=ip_id)
        tcp = TCP(sport=src[1], dport=dst[1], flags=flags, seq=s & 0xFFFFFFFF,
                  ack=(a & 0xFFFFFFFF) if "A" in flags else 0, window=65535)
        p = ip / tcp
        if payload:
            p = p / Raw(payload)
        if advance and seq is None:
            self.seqs[side] = (s + len(payload) + ("S" in flags) + ("F" in flags)) & 0xFFFFFFFF
        return p

    def frame(self, p: Packet) -> tuple[int, bytes]:
        ts = self.t0 + self.n * self.step
        self.n += 1
        return ts, bytes(eth() / p)

    def handshake(self) -> list[tuple[int, bytes]]:
        return [self.frame(self.pkt(0, "S")), self.frame(self.pkt(1, "SA")),
                self.frame(self.pkt(0, "A"))]

    def send(self, side: int, data: bytes, mss: int = 1400) -> list[tuple[int, bytes]]:
        return [self.frame(self.pkt(side, "PA", data[i : i + mss]))
                for i in range(0, len(data), mss)]

    def close(self) -> list[tuple[int, bytes]]:
        return [self.frame(self.pkt(0, "FA")), self.frame(self.pkt(1, "FA")),
                self.frame(self.pkt(0, "A"))]

"""Deterministic packet synthesis and pcap/pcapng writing for sample captures and tests.

Turns byte streams (e.g. :mod:`tlswatch.testing.transcripts`) into Ethernet/IPv4/TCP or UDP
frames (built with scapy) with integer-nanosecond timestamps, fixed ISNs, IP IDs, TTLs and
TCP timestamp options, then writes them as classic pcap (microseconds) or pcapng
(nanoseconds; SHB + IDB + EPB, optionally a Decryption Secrets Block with a TLS key log).
Nothing here touches a socket: it only builds bytes.

The frames are synthetic: the model is a capture taken at the client, where the server's
packets arrive one round trip after what triggered them. Every TTL and IP ID is chosen by
the caller, so a packet "injected" by a middlebox can carry a TTL and IP ID unlike the
server's own (``TcpFlow.rst(..., ttl=..., ip_id=...)``), which is how injection shows.

Typical use::

    flow = TcpFlow(CLIENT, SERVER, client_port=40001, start_ns=t0, rtt_ns=40_000_000)
    flow.connect()
    replay(flow, transcript.flights)
    flow.close()
    data = pcapng_bytes(flow.packets, keylog=transcript.keylog.encode())
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

__all__ = [
    "DEFAULT_MSS",
    "LINKTYPE_ETHERNET",
    "SECRETS_TYPE_TLS_KEYLOG",
    "FlightLike",
    "Host",
    "Packet",
    "Side",
    "TcpFlow",
    "pcap_bytes",
    "pcapng_bytes",
    "replay",
    "udp_datagram",
]

Side = Literal["client", "server"]

LINKTYPE_ETHERNET = 1
#: Payload bytes per full segment: MSS 1460 minus 12 bytes of TCP timestamp option.
DEFAULT_MSS = 1448
#: pcapng Decryption Secrets Block secrets type for an NSS key log ("TLSK").
SECRETS_TYPE_TLS_KEYLOG = 0x544C534B

_US = 1_000
_MS = 1_000_000
_SNAPLEN = 262_144
# Spacing of back-to-back frames from one sender (~1 Gbit/s line rate for 1.5 kB frames).
_FRAME_GAP_NS = 12 * _US
_ACK_DELAY_NS = 40 * _US  # how long the capturing client takes to ACK what arrives


@dataclass(frozen=True, slots=True)
class Packet:
    """One captured frame: timestamp (ns since the Unix epoch), link-layer bytes, a note.

    ``comment`` is written as an EPB opt_comment in pcapng (dropped in classic pcap).
    """

    t_ns: int
    frame: bytes
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Host:
    """An endpoint as seen at the capture point: address, MAC and TTL of its packets."""

    ip: str
    mac: str
    ttl: int = 64


class FlightLike(Protocol):
    """Anything with a sender and data (e.g. :class:`tlswatch.testing.transcripts.Flight`)."""

    @property
    def sender(self) -> Side: ...

    @property
    def data(self) -> bytes: ...


@dataclass
class _Side:
    host: Host
    port: int
    isn: int
    ip_id: int
    ts_base: int
    window: int
    nxt: int = 0  # next sequence number to send
    ts_seen: int = 0  # last TSval received from the peer (echoed as TSecr)
    unacked: list[tuple[int, bytes, str]] = field(default_factory=list)


class TcpFlow:
    """Builds one TCP connection's packets, seen from the client, in time order.

    The clock (:attr:`now`, ns) only moves forward; every frame is at least 1 µs after the
    previous one, so classic pcap's microsecond timestamps stay strictly increasing.
    Sequence/ack numbers, IP IDs (+1 per packet per side) and TCP timestamps are tracked.
    """

    def __init__(
        self,
        client: Host,
        server: Host,
        *,
        client_port: int,
        server_port: int = 443,
        start_ns: int,
        rtt_ns: int = 40 * _MS,
        client_isn: int = 0x1F2E3D4C,
        server_isn: int = 0x5A6B7C8D,
        client_ip_id: int = 0x4D21,
        server_ip_id: int = 0x0B7E,
        client_ts: int = 0x0A1B2C3D,
        server_ts: int = 0x1C2D3E4F,
        mss: int = DEFAULT_MSS,
    ) -> None:
        if start_ns % _US:
            raise ValueError("start_ns must be a whole number of microseconds")
        self.rtt_ns = rtt_ns
        self.mss = mss
        self.packets: list[Packet] = []
        self.now = start_ns
        self._start = start_ns
        self._last_t = start_ns - _US
        self._last_client_data_t = start_ns
        self._sides: dict[Side, _Side] = {
            "client": _Side(client, client_port, client_isn, client_ip_id, client_ts, 502),
            "server": _Side(server, server_port, server_isn, server_ip_id, server_ts, 509),
        }
        for s in self._sides.values():
            s.nxt = s.isn

    # -- clock ---------------------------------------------------------------------------

    def _stamp(self, delay: int) -> int:
        t = max(self.now + delay, self._last_t + _US)
        t -= t % _US  # whole microseconds: identical in pcap and pcapng
        if t <= self._last_t:
            t = self._last_t + _US
        self._last_t = self.now = t
        return t

    def wait(self, ns: int) -> None:
        """Let ``ns`` pass without traffic."""
        self.now += ns

    # -- frames --------------------------------------------------------------------------

    @staticmethod
    def _peer(side: Side) -> Side:
        return "server" if side == "client" else "client"

    def _emit(
        self,
        side: Side,
        flags: str,
        *,
        seq: int,
        payload: bytes = b"",
        delay: int = 0,
        ttl: int | None = None,
        ip_id: int | None = None,
        df: bool = True,
        with_ts: bool = True,
        comment: str = "",
        syn_options: bool = False,
    ) -> Packet:
        me, peer = self._sides[side], self._sides[self._peer(side)]
        t = self._stamp(delay)
        tsval = (me.ts_base + (t - self._start) // _MS) & 0xFFFFFFFF
        options: list[tuple[str, Any]]
        if syn_options:
            options = [
                ("MSS", self.mss + 12),
                ("SAckOK", b""),
                ("Timestamp", (tsval, me.ts_seen if side == "server" else 0)),
                ("NOP", None),
                ("WScale", 7),
            ]
        elif with_ts:
            options = [("NOP", None), ("NOP", None), ("Timestamp", (tsval, me.ts_seen))]
        else:
            options = []
        ack = peer.nxt if "A" in flags else 0
        window = 64240 if flags == "S" else 65160 if flags == "SA" else me.window
        if "R" in flags and not with_ts:
            window = 0
        frame = (
            Ether(src=me.host.mac, dst=peer.host.mac, type=0x0800)
            / IP(
                src=me.host.ip,
                dst=peer.host.ip,
                ttl=me.host.ttl if ttl is None else ttl,
                id=(me.ip_id if ip_id is None else ip_id) & 0xFFFF,
                flags="DF" if df else 0,
            )
            / TCP(
                sport=me.port,
                dport=peer.port,
                seq=seq & 0xFFFFFFFF,
                ack=ack & 0xFFFFFFFF,
                flags=flags,
                window=window,
                options=options,
            )
        )
        if payload:
            frame = frame / Raw(payload)
        if ip_id is None:
            me.ip_id += 1
        if with_ts or syn_options:
            peer.ts_seen = tsval
        pkt = Packet(t, bytes(frame), comment)
        self.packets.append(pkt)
        return pkt

    # -- TCP operations ------------------------------------------------------------------

    def connect(self) -> None:
        """SYN (now), SYN-ACK (one RTT later), ACK."""
        c, s = self._sides["client"], self._sides["server"]
        self._emit("client", "S", seq=c.nxt, syn_options=True)
        c.nxt += 1
        self._emit("server", "SA", seq=s.nxt, delay=self.rtt_ns, syn_options=True)
        s.nxt += 1
        self._emit("client", "A", seq=c.nxt, delay=_ACK_DELAY_NS)
        self._last_client_data_t = self.now

    def send(
        self,
        side: Side,
        data: bytes,
        *,
        delay: int = 0,
        ttl: int | None = None,
        ip_id: int | None = None,
        df: bool = True,
        comment: str = "",
    ) -> None:
        """``data`` from ``side`` in MSS-sized segments (PSH on the last), ``delay`` from now.

        The capturing client ACKs server data every second segment and at the end.
        """
        me = self._sides[side]
        chunks = [data[i : i + self.mss] for i in range(0, len(data), self.mss)]
        me.unacked = []
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            flags = "PA" if last else "A"
            self._emit(
                side,
                flags,
                seq=me.nxt,
                payload=chunk,
                delay=delay if i == 0 else _FRAME_GAP_NS,
                ttl=ttl,
                ip_id=ip_id,
                df=df,
                comment=comment if i == 0 else "",
            )
            me.unacked.append((me.nxt, chunk, flags))
            me.nxt += len(chunk)
            if side == "server" and (i % 2 == 1 or last):
                self._emit("client", "A", seq=self._sides["client"].nxt, delay=_ACK_DELAY_NS)
        if side == "client":
            self._last_client_data_t = self.now

    def ack(
        self,
        side: Side,
        *,
        delay: int = 0,
        ttl: int | None = None,
        ip_id: int | None = None,
        df: bool = True,
    ) -> None:
        """A pure ACK from ``side`` (``ttl``/``ip_id``/``df`` as in :meth:`rst`)."""
        self._emit(side, "A", seq=self._sides[side].nxt, delay=delay, ttl=ttl, ip_id=ip_id, df=df)

    def retransmit(self, side: Side, *, delay: int) -> None:
        """Send ``side``'s last unacknowledged segments again (same seq and payload)."""
        me = self._sides[side]
        for i, (seq, chunk, flags) in enumerate(me.unacked):
            self._emit(side, flags, seq=seq, payload=chunk, delay=delay if i == 0 else 0)

    def fin(
        self,
        side: Side,
        *,
        delay: int = 0,
        ttl: int | None = None,
        ip_id: int | None = None,
        df: bool = True,
        comment: str = "",
    ) -> None:
        """FIN+ACK from ``side`` (``ttl``/``ip_id``/``df`` as in :meth:`rst`)."""
        me = self._sides[side]
        self._emit(
            side, "FA", seq=me.nxt, delay=delay, ttl=ttl, ip_id=ip_id, df=df, comment=comment
        )
        me.nxt += 1

    def rst(
        self,
        side: Side,
        *,
        delay: int = 0,
        ttl: int | None = None,
        ip_id: int | None = None,
        df: bool = True,
        comment: str = "",
    ) -> None:
        """RST+ACK from ``side`` (no options, window 0, as stacks and injectors send them).

        Pass ``ttl``/``ip_id``/``df`` to model a packet forged by a middlebox in the
        server's name: it does not advance the server's own IP ID counter.
        """
        me = self._sides[side]
        self._emit(
            side,
            "RA",
            seq=me.nxt,
            delay=delay,
            ttl=ttl,
            ip_id=ip_id,
            df=df,
            with_ts=False,
            comment=comment,
        )

    def close(self, initiator: Side = "client", *, think_ns: int = 200 * _US) -> None:
        """Orderly close: FIN from ``initiator``, the peer's FIN (+ACK), the last ACK."""
        peer = self._peer(initiator)
        self.fin(initiator, delay=think_ns)
        if initiator == "client":
            self.fin("server", delay=self.rtt_ns)
            self.ack("client", delay=_ACK_DELAY_NS)
        else:
            self.fin("client", delay=_ACK_DELAY_NS)
            self.ack(peer, delay=self.rtt_ns)

    def server_reply_delay(self, think_ns: int = 300 * _US) -> int:
        """Delay from now until a server answer to the client's latest data arrives."""
        return max(self._last_client_data_t + self.rtt_ns + think_ns - self.now, _US)


def replay(
    flow: TcpFlow,
    flights: Iterable[FlightLike],
    *,
    client_think_ns: int = 300 * _US,
    server_think_ns: int = 300 * _US,
) -> None:
    """Send ``flights`` in order: a client flight ``client_think_ns`` after the last packet,
    a server flight one RTT (+ ``server_think_ns``) after the client data it answers."""
    for flight in flights:
        if flight.sender == "client":
            flow.send("client", flight.data, delay=client_think_ns)
        else:
            flow.send("server", flight.data, delay=flow.server_reply_delay(server_think_ns))


def udp_datagram(
    src: Host,
    dst: Host,
    *,
    sport: int,
    dport: int,
    payload: bytes,
    t_ns: int,
    ip_id: int,
    ttl: int | None = None,
    comment: str = "",
) -> Packet:
    """One Ethernet/IPv4/UDP frame (e.g. a DNS query or answer)."""
    if t_ns % _US:
        raise ValueError("t_ns must be a whole number of microseconds")
    frame = (
        Ether(src=src.mac, dst=dst.mac, type=0x0800)
        / IP(src=src.ip, dst=dst.ip, ttl=src.ttl if ttl is None else ttl, id=ip_id & 0xFFFF)
        / UDP(sport=sport, dport=dport)
        / Raw(payload)
    )
    return Packet(t_ns, bytes(frame), comment)


# -- file formats ------------------------------------------------------------------------------


def _sorted(packets: Sequence[Packet]) -> list[Packet]:
    # Stable: frames with equal timestamps keep the order they were built in.
    return sorted(packets, key=lambda p: p.t_ns)


def pcap_bytes(
    packets: Sequence[Packet], *, linktype: int = LINKTYPE_ETHERNET, snaplen: int = _SNAPLEN
) -> bytes:
    """A classic little-endian pcap file (magic a1b2c3d4, v2.4, microsecond timestamps).

    Timestamps must be whole microseconds, so nothing is silently rounded.
    """
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for p in _sorted(packets):
        if p.t_ns % _US:
            raise ValueError(f"timestamp {p.t_ns} ns is not a whole microsecond")
        sec, usec = divmod(p.t_ns // _US, 1_000_000)
        out.append(struct.pack("<IIII", sec, usec, len(p.frame), len(p.frame)))
        out.append(p.frame)
    return b"".join(out)


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _options(opts: Sequence[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    body = b"".join(struct.pack("<HH", code, len(v)) + _pad4(v) for code, v in opts)
    return body + struct.pack("<HH", 0, 0)  # opt_endofopt


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def pcapng_bytes(
    packets: Sequence[Packet],
    *,
    linktype: int = LINKTYPE_ETHERNET,
    snaplen: int = _SNAPLEN,
    keylog: bytes | None = None,
    application: str = "tlswatch synthetic capture",
    interface: str = "synth0",
) -> bytes:
    """A little-endian pcapng file: SHB, one IDB (if_tsresol = 9, nanoseconds), an optional
    Decryption Secrets Block holding ``keylog`` (an NSS key log), then one EPB per packet."""
    shb_body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _options(
        [(4, application.encode())]  # shb_userappl
    )
    idb_body = struct.pack("<HHI", linktype, 0, snaplen) + _options(
        [(2, interface.encode()), (9, b"\x09")]  # if_name, if_tsresol: 10^-9 s
    )
    out = [_block(0x0A0D0D0A, shb_body), _block(0x00000001, idb_body)]
    if keylog is not None:
        dsb_body = struct.pack("<II", SECRETS_TYPE_TLS_KEYLOG, len(keylog)) + _pad4(keylog)
        out.append(_block(0x0000000A, dsb_body))
    for p in _sorted(packets):
        epb = struct.pack(
            "<IIIII", 0, p.t_ns >> 32, p.t_ns & 0xFFFFFFFF, len(p.frame), len(p.frame)
        )
        epb += _pad4(p.frame) + _options([(1, p.comment.encode())] if p.comment else [])
        out.append(_block(0x00000006, epb))
    return b"".join(out)

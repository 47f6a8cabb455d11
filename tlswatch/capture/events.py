"""What the capture layer produces: per-flow events in capture order.

A flow's events start with :class:`FlowStart` and end with :class:`FlowEnd`; in between,
per side, :class:`Data` chunks at increasing stream offsets, a :class:`Gap` wherever bytes were
never captured (the stream jumps over them; nothing is guessed), at most one :class:`Fin`, and
:class:`Rst` for each reset seen (up to a cap). :class:`Detected` says, once per side, whether
its first bytes look like TLS. :class:`Secrets` carries a pcapng Decryption Secrets Block.

Events are immutable named tuples (cheap to build per packet); match them by class.
Times are integer nanoseconds since the Unix epoch, offsets count stream bytes from the
first byte after the SYN (or from the first byte seen, for flows picked up mid-stream).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from ..model import Flow
from ..tls import Detection

__all__ = [
    "Data",
    "Detected",
    "Fin",
    "FlowEnd",
    "FlowEvent",
    "FlowKey",
    "FlowStart",
    "Gap",
    "Rst",
    "Secrets",
    "Side",
    "SideSummary",
]


class Side(enum.IntEnum):
    """Who sent the bytes (feed CLIENT data to ``TLSConnection.feed_client``)."""

    CLIENT = 0
    SERVER = 1


@dataclass(frozen=True, slots=True)
class FlowKey:
    """A TCP connection's endpoints, oriented: the client is the SYN sender; without a SYN
    the SYN-ACK's receiver; without either the endpoint with the higher port, or on equal
    ports the first packet's sender (``FlowStart.origin`` says which rule applied)."""

    client_ip: str
    client_port: int
    server_ip: str
    server_port: int

    def flow(self) -> Flow:
        """The record's ``flow`` part."""
        return Flow(self.client_ip, self.client_port, self.server_ip, self.server_port, "tcp")


@dataclass(frozen=True, slots=True)
class SideSummary:
    """Bookkeeping for one side of a flow, in :class:`FlowEnd`."""

    packets: int
    payload_bytes: int  # captured TCP payload, retransmissions included
    stream_bytes: int  # stream length reached: delivered + gaps + bytes past the cap
    delivered_bytes: int  # bytes handed out in Data events
    gaps: int
    gap_bytes: int
    retransmissions: int  # segments whose bytes were all seen before
    overlap_conflicts: int  # overlapping bytes that differed from the first copy
    syn: int
    fin: int
    rst: int
    ttls: tuple[tuple[int, int], ...]  # (TTL or hop limit, packets) of non-RST packets
    first_ip_id: int | None  # IPv4 only, non-RST packets
    last_ip_id: int | None
    packets_after_rst: int  # packets from this side after the flow's first RST
    capped: bool  # stopped delivering at the byte cap (or on request, or not TLS)
    first_ts_ns: int | None
    last_ts_ns: int | None
    syn_ts_ns: int | None = None  # the side's first SYN (the server's: its SYN-ACK)


class FlowStart(NamedTuple):
    flow_id: int
    key: FlowKey
    ts_ns: int
    origin: str  # "syn" | "synack" | "midstream": how the client was chosen


class Data(NamedTuple):
    flow_id: int
    key: FlowKey
    side: Side
    ts_ns: int  # time of the packet that completed this chunk
    offset: int
    data: bytes


class Gap(NamedTuple):
    flow_id: int
    key: FlowKey
    side: Side
    ts_ns: int
    offset: int
    length: int  # bytes never seen; the next Data of this side starts at offset + length


class Fin(NamedTuple):
    flow_id: int
    key: FlowKey
    side: Side
    ts_ns: int
    offset: int  # stream offset of the FIN (= end of this side's data)


class Rst(NamedTuple):
    """A reset, with what a judge needs to tell an injected one: its TTL/IP ID against the same
    side's previous packet, and where its sequence number falls."""

    flow_id: int
    key: FlowKey
    side: Side
    ts_ns: int
    ttl: int
    ip_id: int | None
    seq: int
    ack: int
    flags: int
    seq_delta: int | None  # seq minus the next expected seq of this side (None: unknown)
    prev_ttl: int | None  # the same side's last non-RST packet
    prev_ip_id: int | None
    offset: int  # stream bytes of this side seen so far


class Detected(NamedTuple):
    """Once per side, before that side's first Data: is it TLS by content? ``NEED_MORE`` here
    means the side ended (or hit a gap) before 5 bytes arrived."""

    flow_id: int
    key: FlowKey
    side: Side
    ts_ns: int
    result: Detection


class FlowEnd(NamedTuple):
    flow_id: int
    key: FlowKey
    ts_ns: int  # the flow's last packet
    reason: str  # "closed" (FIN/RST + linger) | "idle" | "evicted" | "reused" | "eof"
    client: SideSummary
    server: SideSummary


class Secrets(NamedTuple):
    """A pcapng Decryption Secrets Block (``secrets_type`` 0x544c534b: a TLS key log)."""

    secrets_type: int
    data: bytes


FlowEvent = FlowStart | Data | Gap | Fin | Rst | Detected | FlowEnd | Secrets

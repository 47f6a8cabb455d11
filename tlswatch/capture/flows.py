"""The driver: a capture file in, flow events out, with TLS found by content.

    reader = read_flows("trace.pcapng.gz")
    for ev in reader:
        match ev:
            case Detected(result=Detection.YES): ...   # this side speaks TLS
            case Data(side=Side.CLIENT, data=b): conn.feed_client(b)
            case Rst(ttl=ttl, prev_ttl=prev): ...
    reader.anomalies, reader.warnings, reader.packets

Each side's first bytes go through :func:`tlswatch.tls.looks_like_tls`, whatever the ports.
With ``FlowConfig.tls_only`` (the default) a flow whose client speaks something else (or whose
server speaks first) stops delivering data; its bookkeeping events still come. A server that
greets like SMTP, FTP, IMAP or POP3 is the exception (``FlowConfig.follow_starttls``): its
flow goes on delivering, so a consumer can follow a STARTTLS upgrade
(:mod:`tlswatch.capture.starttls`) and ``skip()`` the flow when it is done with it; so does
DNS over TCP (server port 53, ``FlowConfig.follow_dns``). IP fragments are reassembled
(:mod:`tlswatch.capture.ipfrag`) before TCP and UDP see them.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import BinaryIO

from ..tls import looks_like_tls
from .events import FlowEvent, Secrets, Side
from .ipfrag import FragmentReassembler
from .layers import IPPROTO_TCP, IPPROTO_UDP, PacketTuple, decode_tuple
from .open import CaptureReader, open_capture
from .tcp import FlowConfig, TcpReassembler

__all__ = ["DatagramCallback", "FlowReader", "Share", "read_flows", "share_of"]

#: (index, count): this reader keeps the flows whose :func:`share_of` is ``index``.
Share = tuple[int, int]
_DNS_PORT = 53


def share_of(p: PacketTuple, count: int) -> int:
    """Which of ``count`` shares a packet's flow belongs to: the same for both directions
    (CRC-32 of the lower address+port, then the other; the C fast path computes the same)."""
    a = p[0] + p[5].to_bytes(2, "big")
    b = p[1] + p[6].to_bytes(2, "big")
    return zlib.crc32(a + b if a <= b else b + a) % count


#: Called with (ts_ns, packet tuple in :class:`~tlswatch.capture.layers.Decoded` field order)
#: for each UDP packet, in capture order (e.g. to read DNS answers).
DatagramCallback = Callable[[int, PacketTuple], None]


class FlowReader:
    """Iterate once for :data:`FlowEvent` s; counters are valid during and after iteration."""

    def __init__(self, source: str | os.PathLike[str] | BinaryIO,
                 config: FlowConfig | None = None, *, detect_tls: bool = True,
                 on_datagram: DatagramCallback | None = None, share: Share | None = None
                 ) -> None:
        self.engine = TcpReassembler(config, detector=looks_like_tls if detect_tls else None)
        self._capture: CaptureReader = open_capture(source, on_secrets=self._secrets)
        if share is not None and not 0 <= share[0] < share[1]:
            raise ValueError(f"share {share[0]} of {share[1]}: need 0 <= index < count")
        #: Only the flows of this share are kept (several processes, one file); None: all.
        self.share = share if share is not None and share[1] > 1 else None
        # One counter for file, decoding, fragment and TCP anomalies; with shares, the file's
        # and decoding anomalies are share 0's, each share counts its own flows'.
        if self.share is None or self.share[0] == 0:
            self.engine.anomalies = self._capture.anomalies
        #: IP fragments are put back together before TCP/UDP see them.
        self.fragments = FragmentReassembler(self._capture.anomalies)
        self.packets = 0
        self.bytes = 0  # captured bytes of all packets
        self.tcp_packets = 0
        self.udp_packets = 0
        self._started = False
        self._on_datagram = on_datagram
        #: The C fast path's table when the extension is built (its packets are counted here).
        self.fast_path = self.engine.enable_fast_path()
        if self.fast_path is not None:
            self._capture.set_fast_path(self.fast_path)
            if self.share is not None:
                self.fast_path.set_share(*self.share)

    @property
    def anomalies(self) -> Counter[str]:
        """Anomalies so far (with shares: share 0 has the file's and decoding ones, every
        share its own flows'; summed over the shares they are one reader's)."""
        if self.share is None or self.share[0] == 0:
            return self._capture.anomalies
        return Counter(self.engine.anomalies)

    def owns(self, p: PacketTuple) -> bool:
        """Is this packet's flow this reader's share? (Every share sees the DNS answers from
        UDP port 53: the names they give are needed by all; only the owner reports them.)"""
        return self.share is None or share_of(p, self.share[1]) == self.share[0]

    @property
    def warnings(self) -> list[str]:
        return self._capture.warnings

    @property
    def partial(self) -> bool:
        return self._capture.partial

    @property
    def last_ts_ns(self) -> int:
        """Time of the last TCP packet read so far: the capture's own clock."""
        return self.engine._now

    @property
    def capture(self) -> CaptureReader:
        return self._capture

    def skip(self, flow_id: int, side: Side | None = None) -> None:
        """Stop delivering a flow's data (e.g. its handshake is parsed): saves work and memory."""
        self.engine.skip(flow_id, side)

    def _secrets(self, secrets_type: int, data: bytes) -> None:
        self.engine.events.append(Secrets(secrets_type, data))

    def __iter__(self) -> Iterator[FlowEvent]:
        if self._started:
            raise RuntimeError("a FlowReader can be iterated only once")
        self._started = True
        return self._run()

    def _run(self) -> Iterator[FlowEvent]:
        engine = self.engine
        events = engine.events
        feed = engine.feed
        bulk = engine.feed_bulk_frame
        anomalies = self._capture.anomalies
        on_datagram = self._on_datagram
        frags = self.fragments
        packets = nbytes = tcp = udp = 0
        ts: int | None = None
        fast = self.fast_path
        share = self.share
        in_table = engine.has_flow()
        clock: int | None = None  # (with shares) the last TCP packet, whoever owns it

        def sync() -> None:
            if fast is None:
                self.packets, self.bytes, self.tcp_packets = packets, nbytes, tcp
            else:  # packets the fast path booked are TCP packets too
                fp, fb, skipped = fast.counters()
                self.packets, self.bytes = packets + fp, nbytes + fb
                self.tcp_packets = tcp + fp - skipped
            self.udp_packets = udp

        try:
            for ts, linktype, caplen, _origlen, data in self._capture:
                packets += 1
                nbytes += caplen
                if linktype == 1 and bulk(ts, data):
                    # (a packet of a flow that no longer delivers data: booked, not decoded)
                    tcp += 1
                    if share is not None:
                        clock = ts
                        if fast is not None:
                            fast.tick()
                    if events:  # (a sweep may have ended flows)
                        sync()
                        yield from events
                        events.clear()
                    continue
                p = decode_tuple(linktype, data, anomalies, frags)
                if p is None and frags.pending is not None:
                    p = frags.take(ts)  # the whole datagram, once its last fragment is in
                owned = True
                if p is not None and share is not None and (
                        # (a TCP flow in the table is this share's: no hash to compute)
                        p[2] != IPPROTO_TCP or not in_table((p[0], p[1], p[5], p[6]))) and (
                        share_of(p, share[1]) != share[0]):
                    owned = False
                    # Another process's flow: only the clock moves (sweeps stay in step).
                    if p[2] == IPPROTO_TCP:
                        engine.tick(ts)
                        clock = ts
                        if fast is not None:
                            fast.tick()
                        p = None
                    elif p[2] != IPPROTO_UDP or p[5] != _DNS_PORT:  # (answers give names)
                        p = None
                if p is not None:
                    if p[2] == IPPROTO_TCP:
                        tcp += 1
                        feed(ts, p)
                        if share is not None:
                            clock = ts
                            if fast is not None:
                                fast.tick()
                    else:
                        udp += owned
                        if on_datagram is not None:
                            on_datagram(ts, p)
                if events:
                    sync()
                    yield from events
                    events.clear()
            frags.finish(ts)
            if share is not None and fast is not None:
                # (the walker books and skips TCP packets too: was the last one its?)
                walked = fast.clock()
                clock = walked if walked is not None else clock
            engine.finish(clock)
            yield from events
            events.clear()
        finally:
            sync()
            self._capture.close()

    def close(self) -> None:
        self._capture.close()

    def __enter__(self) -> FlowReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_flows(source: str | os.PathLike[str] | BinaryIO, config: FlowConfig | None = None, *,
               detect_tls: bool = True, on_datagram: DatagramCallback | None = None,
               share: Share | None = None) -> FlowReader:
    """Open ``source`` (pcap/pcapng, maybe compressed) and return an iterable of flow events.

    UDP packets are not events; pass ``on_datagram`` to see them. Raises
    :class:`~tlswatch.capture.errors.CaptureFormatError` at once for a non-capture.
    ``share=(i, n)`` keeps only the flows of share ``i`` of ``n`` (n processes reading one
    file; together their events are one reader's): see :meth:`FlowReader.owns`.
    """
    return FlowReader(source, config, detect_tls=detect_tls, on_datagram=on_datagram,
                      share=share)

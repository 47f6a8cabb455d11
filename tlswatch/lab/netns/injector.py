"""On-path injection at the middlebox: a scapy sniffer on the client-facing interface.

For a ClientHello whose SNI is on the reset list it sends a RST to the client (as if from the
server) and one to the server (as if from the client); for the alert list, a fatal TLS alert
then a RST to the client, and a RST to the server. The hello itself is dropped by an iptables
string-match rule (:mod:`~tlswatch.lab.netns.middlebox`), so the outcome never depends on a
race with the real server.

Injected packets carry the middlebox's own IP TTL (64) and its own IP ID sequence, which is
how a client tells them from the server's packets: they arrive ``server_hop - middlebox_hop``
hops "younger". A hello split over several segments (common with post-quantum key shares)
is reassembled per flow from its first segment, in order only, within bounded memory
(:data:`MAX_FLOWS` flows of at most ``MAX_HELLO_BYTES``); the iptables rule drops the
segment that carries the SNI entry, so one whose SNI entry straddles two segments passes.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
from collections.abc import Iterable
from typing import Any

from tlswatch.lab.wire import MAX_HELLO_BYTES, alert_record, parse_hello

__all__ = ["INJECT_TTL", "MAX_FLOWS", "Injector"]

INJECT_TTL = 64
MAX_FLOWS = 1024
_TLS_PORT = 443
_HANDSHAKE = 0x16

_FlowId = tuple[str, int, str, int]


class Injector:
    def __init__(
        self,
        iface: str,
        reset: Iterable[str],
        alert: Iterable[str],
        alert_description: int = 40,
        seed: int = 0,
        ttl: int = INJECT_TTL,
    ) -> None:
        self.iface = iface
        self.reset = frozenset(reset)
        self.alert = frozenset(alert)
        self.alert_description = alert_description
        self.ttl = ttl
        self._next_id = random.Random(f"injector-ip-id:{seed}").randrange(1, 0x10000)
        self.counts: collections.Counter[str] = collections.Counter()
        self._sniffer: Any = None
        self._sock: Any = None
        # flow -> (seq of the hello's first byte, bytes so far), oldest first
        self._partial: collections.OrderedDict[_FlowId, tuple[int, bytes]] = (
            collections.OrderedDict())

    def start(self, timeout: float = 10.0) -> None:
        """Start sniffing; returns once the capture socket is open. Raises RuntimeError."""
        # Importing the layers registers Ether/IP/TCP for dissection (inet pulls in l2).
        import scapy.layers.inet  # noqa: F401
        from scapy.sendrecv import AsyncSniffer
        from scapy.supersocket import L3RawSocket

        logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

        # One raw socket: AF_PACKET on the interface to read (outgoing packets skipped),
        # IP_HDRINCL to send, so the kernel routes injected packets like any other.
        self._sock = L3RawSocket(iface=self.iface)
        ready = threading.Event()
        self._sniffer = AsyncSniffer(opened_socket=self._sock, prn=self._on_packet, store=False,
                                     started_callback=ready.set)
        self._sniffer.start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"injector: sniffer on {self.iface} did not start")

    def stop(self) -> None:
        sniffer, self._sniffer = self._sniffer, None
        if sniffer is not None and sniffer.running:
            try:
                sniffer.stop(join=True)
            except Exception:  # scapy raises if the thread already died; nothing to stop
                self.counts["stop_error"] += 1
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _ip_id(self) -> int:
        value = self._next_id
        self._next_id = value % 0xFFFF + 1  # 1..65535: a zero ID would be filled in by Linux
        return value

    def _on_packet(self, pkt: Any) -> None:
        try:
            self._inspect(pkt)
        except Exception:  # hostile bytes or a send error must not stop the sniffer
            self.counts["error"] += 1

    def _inspect(self, pkt: Any) -> None:
        from scapy.layers.inet import IP, TCP

        if IP not in pkt or TCP not in pkt:
            return
        ip, tcp = pkt[IP], pkt[TCP]
        if tcp.dport != _TLS_PORT or tcp.flags.R or ip.frag != 0:
            return
        size = max(0, int(ip.len) - int(ip.ihl) * 4 - int(tcp.dataofs) * 4)
        payload = bytes(tcp.payload)[:size]  # drop Ethernet padding
        if not payload:
            return
        hello = self._reassemble((ip.src, tcp.sport, ip.dst, tcp.dport), tcp.seq, payload)
        if hello is None:
            return
        start, data = hello
        peeked = parse_hello(data)
        sni = peeked.sni if peeked is not None else None
        if sni is None or (sni not in self.reset and sni not in self.alert):
            return
        self.counts[sni] += 1
        end = (start + len(data)) & 0xFFFFFFFF
        client_seq = tcp.ack  # what the client expects next from the server
        packets = []
        if sni in self.alert:
            record = alert_record(self.alert_description)
            packets.append(
                IP(src=ip.dst, dst=ip.src, ttl=self.ttl, id=self._ip_id())
                / TCP(sport=tcp.dport, dport=tcp.sport, flags="PA", seq=client_seq, ack=end,
                      window=tcp.window)
                / record
            )
            client_seq = (client_seq + len(record)) & 0xFFFFFFFF
        packets.append(
            IP(src=ip.dst, dst=ip.src, ttl=self.ttl, id=self._ip_id())
            / TCP(sport=tcp.dport, dport=tcp.sport, flags="RA", seq=client_seq, ack=end, window=0)
        )
        # The server expects the dropped segment next: the one carrying the SNI entry, which
        # is the hello's first or (usually) this last one; a RST at the other sequence only
        # draws a challenge ACK.
        for seq in dict.fromkeys((tcp.seq, start)):
            packets.append(
                IP(src=ip.src, dst=ip.dst, ttl=self.ttl, id=self._ip_id())
                / TCP(sport=tcp.sport, dport=tcp.dport, flags="R", seq=seq, window=0)
            )
        for p in packets:
            self._sock.send(p)
        self.counts["injected"] += len(packets)

    def _reassemble(self, flow: _FlowId, seq: int, payload: bytes) -> tuple[int, bytes] | None:
        """(first seq, bytes) once the flow's hello is complete (or hopeless), else None."""
        entry = self._partial.pop(flow, None)
        if entry is None:
            if payload[0] != _HANDSHAKE:
                return None
            entry = (seq, b"")
        start, data = entry
        if (start + len(data)) & 0xFFFFFFFF == seq:
            data += payload
        elif not data:
            return None
        # Retransmissions and out-of-order segments are skipped (kept: what is in order).
        if parse_hello(data) is None and len(data) < MAX_HELLO_BYTES:
            self._partial[flow] = (start, data)
            while len(self._partial) > MAX_FLOWS:
                self._partial.popitem(last=False)
            return None
        return start, data

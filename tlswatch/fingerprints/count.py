"""Count ClientHello fingerprints per client network in captures taken at a server.

Only the client side of each flow is read, and only up to its first ClientHello: the server
side is skipped at once, the whole flow right after the hello (or when the client does not
speak TLS). Aggregation is bounded: at most ``max_keys`` (network, JA4, JA3) rows and as many
distinct fingerprints are kept; hellos that would need a new key past the cap are counted in
``overflow`` (and in the total, so shares stay honest) but not tabulated.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..capture import Data, Detected, FlowEnd, FlowStart, Side, read_flows
from ..tls import Detection, TLSConnection
from ..tls.events import InvalidEvent
from ..tls.hello import is_grease
from .known import KnownFingerprint, match_known

__all__ = ["FingerprintCounter", "Hello", "Row", "count_captures", "network_of"]

#: Client bytes read per flow looking for a hello before giving up on it.
MAX_HELLO_BYTES = 65536
#: A fingerprint's networks are remembered up to this many (the JSON says "at least" there).
MAX_NETWORKS_TRACKED = 16


def network_of(ip: str, pseudonym: Callable[[str], str] | None = None) -> str:
    """The client's /24 (IPv4) or /48 (IPv6), after ``pseudonym`` (prefix-preserving) if given."""
    if pseudonym is not None:
        ip = pseudonym(ip)
    addr = ipaddress.ip_address(ip)
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


@dataclass(frozen=True, slots=True)
class Hello:
    """One ClientHello as the counter sees it."""

    network: str
    ja4: str
    ja3: str
    sni: str | None
    record_version: int | None  # None: SSLv2-compatible hello (no TLS record header)
    cipher_suite_count: int  # GREASE excluded


@dataclass(slots=True)
class _Cell:
    count: int = 0
    sni: str | None = None


@dataclass(slots=True)
class _Fp:
    count: int = 0
    networks: set[str] = field(default_factory=set)
    known: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    network: str
    ja4: str
    ja3: str
    count: int  # hellos from this network with this fingerprint
    share: float  # the fingerprint's share of all hellos (every network)
    fingerprint_count: int
    fingerprint_networks: int  # capped at MAX_NETWORKS_TRACKED
    flag: str  # "known:<label>" | "rare" | ""
    sni: str | None  # the first SNI seen in this row

    def as_json(self) -> dict[str, object]:
        return {"network": self.network, "ja4": self.ja4, "ja3": self.ja3, "count": self.count,
                "share": round(self.share, 6), "fingerprint_count": self.fingerprint_count,
                "fingerprint_networks": self.fingerprint_networks, "flag": self.flag,
                "sni": self.sni}


class FingerprintCounter:
    """Bounded (network × fingerprint) counts; :meth:`rows` flags known and rare ones."""

    def __init__(self, known: Sequence[KnownFingerprint] = (), *, max_keys: int = 100_000
                 ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.known = tuple(known)
        self.max_keys = max_keys
        self.total = 0
        self.overflow = 0  # hellos not tabulated because the cap was reached
        self._cells: dict[tuple[str, str, str], _Cell] = {}
        self._fps: dict[tuple[str, str], _Fp] = {}

    def add(self, h: Hello) -> None:
        self.total += 1
        fkey = (h.ja4, h.ja3)
        fp = self._fps.get(fkey)
        if fp is None:
            if len(self._fps) >= self.max_keys:
                self.overflow += 1
                return
            fp = self._fps[fkey] = _Fp()
        key = (h.network, h.ja4, h.ja3)
        cell = self._cells.get(key)
        if cell is None:
            if len(self._cells) >= self.max_keys:
                self.overflow += 1
                return
            cell = self._cells[key] = _Cell(sni=h.sni)
        cell.count += 1
        fp.count += 1
        if len(fp.networks) < MAX_NETWORKS_TRACKED:
            fp.networks.add(h.network)
        if fp.known is None:
            fp.known = match_known(self.known, ja3=h.ja3, ja4=h.ja4,
                                   record_version=h.record_version,
                                   cipher_suite_count=h.cipher_suite_count)

    @property
    def networks(self) -> int:
        return len({k[0] for k in self._cells})

    @property
    def fingerprints(self) -> int:
        return len(self._fps)

    def rows(self, *, min_share: float = 0.01, max_networks: int = 2) -> list[Row]:
        """Rows, flagged first (known, then rare), then by count. A fingerprint is ``rare``
        when its share of all hellos is below ``min_share`` and it came from at most
        ``max_networks`` networks; ``known:<label>`` wins over ``rare``."""
        out: list[Row] = []
        for (net, ja4, ja3), cell in self._cells.items():
            fp = self._fps[(ja4, ja3)]
            share = fp.count / self.total if self.total else 0.0
            if fp.known is not None:
                flag = f"known:{fp.known}"
            elif share < min_share and len(fp.networks) <= max_networks:
                flag = "rare"
            else:
                flag = ""
            out.append(Row(net, ja4, ja3, cell.count, share, fp.count, len(fp.networks), flag,
                           cell.sni))
        rank = {"": 2, "rare": 1}
        out.sort(key=lambda r: (rank.get(r.flag, 0), -r.count, r.network, r.ja4, r.ja3))
        return out


@dataclass(slots=True)
class _Pending:
    conn: TLSConnection
    head: bytes = b""
    fed: int = 0


@dataclass(slots=True)
class CaptureStats:
    flows: int = 0
    hellos: int = 0
    not_tls: int = 0  # client sides that do not look like TLS, or stopped parsing
    anomalies: dict[str, int] = field(default_factory=dict)


def hellos_in(path: str | os.PathLike[str], *,
              pseudonym: Callable[[str], str] | None = None,
              stats: CaptureStats | None = None) -> Iterable[Hello]:
    """Each flow's first ClientHello in the capture at ``path``, in capture order.

    Raises :class:`~tlswatch.capture.CaptureFormatError` (not a capture) or OSError.
    """
    st = stats if stats is not None else CaptureStats()
    reader = read_flows(path)
    pending: dict[int, _Pending] = {}
    done: set[int] = set()  # flows already answered (bounded by the engine's live flows)
    with reader:
        for ev in reader:
            if isinstance(ev, FlowStart):
                st.flows += 1
                reader.skip(ev.flow_id, Side.SERVER)
            elif isinstance(ev, Detected):
                if ev.side == Side.CLIENT and ev.result != Detection.YES:
                    st.not_tls += 1
                    reader.skip(ev.flow_id)
                    done.add(ev.flow_id)
            elif isinstance(ev, Data):
                if ev.side != Side.CLIENT or ev.flow_id in done:
                    continue
                p = pending.get(ev.flow_id)
                if p is None:
                    if ev.offset != 0:  # picked up mid-stream: the hello is not here
                        reader.skip(ev.flow_id)
                        done.add(ev.flow_id)
                        continue
                    p = pending[ev.flow_id] = _Pending(TLSConnection())
                if len(p.head) < 3:
                    p.head = (p.head + ev.data)[:3]
                p.fed += len(ev.data)
                events = p.conn.feed_client(ev.data)
                hello = p.conn.client_hello
                failed = any(isinstance(e, InvalidEvent) for e in events)
                if hello is not None:
                    ja3, ja4 = p.conn.ja3, p.conn.ja4
                    assert ja3 is not None and ja4 is not None
                    rv = (int.from_bytes(p.head[1:3], "big")
                          if not hello.sslv2 and len(p.head) == 3 and p.head[0] == 22 else None)
                    st.hellos += 1
                    yield Hello(network_of(ev.key.client_ip, pseudonym), ja4, ja3,
                                hello.server_name, rv,
                                sum(1 for c in hello.cipher_suites if not is_grease(c)))
                elif failed or p.fed > MAX_HELLO_BYTES:
                    st.not_tls += 1
                else:
                    continue
                del pending[ev.flow_id]
                done.add(ev.flow_id)
                reader.skip(ev.flow_id)
            elif isinstance(ev, FlowEnd):
                pending.pop(ev.flow_id, None)
                done.discard(ev.flow_id)
        st.anomalies = dict(reader.anomalies)


def count_captures(paths: Iterable[str | os.PathLike[str]], counter: FingerprintCounter, *,
                   pseudonym: Callable[[str], str] | None = None,
                   stats: CaptureStats | None = None) -> FingerprintCounter:
    for path in paths:
        for h in hellos_in(path, pseudonym=pseudonym, stats=stats):
            counter.add(h)
    return counter

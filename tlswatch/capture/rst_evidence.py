"""Why a TCP reset may not come from the server's own stack: one judgement for captures
(``tlswatch analyse``) and for the probe's own live capture (``tlswatch probe --pcap``)."""

from __future__ import annotations

from ..model import RstInfo
from .events import Rst

__all__ = ["rst_info"]


def rst_info(rst: Rst, count: int, after: int) -> RstInfo:
    """The RST's TTL/IP ID and the evidence that it was injected: a TTL or IP ID unlike the
    same side's previous packet, several RSTs, an unexpected sequence number, or the server
    still sending after it (``count`` RSTs and ``after`` packets seen from that side)."""
    ev: list[str] = []
    if rst.prev_ttl is not None and rst.ttl != rst.prev_ttl:
        ev.append(f"ttl_differs_from_server({rst.ttl}!={rst.prev_ttl})")
    if rst.ip_id is not None:
        if rst.ip_id == 0 and rst.prev_ip_id != 0:
            ev.append("ip_id_zero")
        elif rst.prev_ip_id is not None and not 0 <= (rst.ip_id - rst.prev_ip_id) & 0xFFFF <= 64:
            # A host's IP IDs count up (per connection or globally); a forger's do not follow.
            ev.append(f"ip_id_unlike_server({rst.ip_id} after {rst.prev_ip_id})")
    if count > 1:
        ev.append(f"several_rsts({count})")
    if rst.seq_delta:
        ev.append(f"seq_unexpected({rst.seq_delta:+d})")
    if after:
        ev.append(f"server_sent_after_rst({after})")
    return RstInfo(rst.ttl, rst.ip_id, tuple(ev))

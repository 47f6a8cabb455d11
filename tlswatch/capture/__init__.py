"""Capture reading for ``tlswatch analyse``: pcap/pcapng (found by magic number, compressed or
not), link/IP/TCP decoding, IP fragment reassembly, TCP reassembly with gaps and anomalies, a
bounded flow table, and TLS found by content. Produces observations; judging happens in
``classify``.

Layers, each usable alone::

    open_capture(path)          -> (ts_ns, linktype, caplen, origlen, data) per packet
    decode(linktype, data, c)   -> Decoded (addresses, ports, TTL, IP ID, TCP fields, payload)
    FragmentReassembler         -> whole IPv4/IPv6 datagrams from fragments, bounded
    TcpReassembler.feed(ts, p)  -> FlowStart/Data/Gap/Fin/Rst/Detected/FlowEnd events
    read_flows(path)            -> all of the above in one fast loop

Each name loads its submodule on first use (:mod:`tlswatch._lazy`).
"""

from typing import TYPE_CHECKING

from tlswatch._lazy import lazy_exports

if TYPE_CHECKING:
    from .anomalies import Anomaly
    from .errors import CaptureError, CaptureFormatError, CaptureWarning
    from .events import (
        Data,
        Detected,
        Fin,
        FlowEnd,
        FlowEvent,
        FlowKey,
        FlowStart,
        Gap,
        Rst,
        Secrets,
        Side,
        SideSummary,
    )
    from .flows import FlowReader, read_flows
    from .ipfrag import FragmentReassembler
    from .layers import Decoded, LinkType, decode, ip_to_str
    from .open import CaptureReader, open_capture
    from .pcapng import SECRETS_TLS_KEYLOG
    from .tcp import FlowConfig, TcpReassembler

__all__ = [
    "SECRETS_TLS_KEYLOG",
    "Anomaly",
    "CaptureError",
    "CaptureFormatError",
    "CaptureReader",
    "CaptureWarning",
    "Data",
    "Decoded",
    "Detected",
    "Fin",
    "FlowConfig",
    "FlowEnd",
    "FlowEvent",
    "FlowKey",
    "FlowReader",
    "FlowStart",
    "FragmentReassembler",
    "Gap",
    "LinkType",
    "Rst",
    "Secrets",
    "Side",
    "SideSummary",
    "TcpReassembler",
    "decode",
    "ip_to_str",
    "open_capture",
    "read_flows",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".anomalies": ("Anomaly",),
    ".errors": ("CaptureError", "CaptureFormatError", "CaptureWarning"),
    ".events": ("Data", "Detected", "Fin", "FlowEnd", "FlowEvent", "FlowKey", "FlowStart", "Gap",
                "Rst", "Secrets", "Side", "SideSummary"),
    ".flows": ("FlowReader", "read_flows"),
    ".ipfrag": ("FragmentReassembler",),
    ".layers": ("Decoded", "LinkType", "decode", "ip_to_str"),
    ".open": ("CaptureReader", "open_capture"),
    ".pcapng": ("SECRETS_TLS_KEYLOG",),
    ".tcp": ("FlowConfig", "TcpReassembler"),
})

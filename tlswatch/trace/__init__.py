"""TTL-limited ClientHellos that locate the hop where TLS interception or injection starts.

``trace(TraceConfig(ip, port, sni, control_sni), judge) -> TraceRecord`` (a coroutine): a
SYN trace, a control-SNI trace and a target-SNI trace, each ClientHello sent on a normally
connected socket with its TTL lowered to k; ICMP errors and the peer's TCP header facts are
read from raw sockets (root / CAP_NET_RAW). Modules: ``icmp`` and ``segments`` (parsing
hostile packet bytes), ``rawwatch`` (the raw sockets), ``ttl_socket`` (TTL knob, connect),
``hops`` (one probe, the traces), ``judging`` (chain judge + verdict table per hop),
``locate`` (the decision), ``record`` (the ``tlswatch-trace/1`` record; schema in
``trace.schema.json``), ``run`` (all of it). Method and limits: docs/trace.md.
"""

from tlswatch.trace.hops import TraceConfig
from tlswatch.trace.locate import Location, locate
from tlswatch.trace.rawwatch import RawSocketDenied
from tlswatch.trace.record import SCHEMA, TraceRecord, record_line
from tlswatch.trace.run import trace

__all__ = ["SCHEMA", "Location", "RawSocketDenied", "TraceConfig", "TraceRecord", "locate",
           "record_line", "trace"]

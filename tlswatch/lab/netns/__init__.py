"""The lab in network namespaces: packets cross real hops, a middlebox sits on the path.

::

    client -- r1 -- r2 -- mb -- r3 -- server        (hops before/after mb configurable)

Each node is a namespace joined by veth pairs (198.18.0.0/15 only, offloads off). The
server namespace runs an origin per lab domain and the lab resolver; the middlebox REDIRECTs
port 443 into the 2019-style interceptor and injects RSTs/alerts (its own TTL and IP ID)
for reset/alert domains. ``NetnsLab(cfg)`` is a context manager; see docs/lab-netns.md.
"""

from tlswatch.lab.netns.addresses import is_netns_lab_address
from tlswatch.lab.netns.config import ALERTS, NetnsConfig, NetnsError
from tlswatch.lab.netns.lab import SCHEMA, NetnsLab, run_netns_lab_forever
from tlswatch.lab.netns.topology import Hop

__all__ = ["ALERTS", "SCHEMA", "Hop", "NetnsConfig", "NetnsError", "NetnsLab",
           "is_netns_lab_address", "run_netns_lab_forever"]

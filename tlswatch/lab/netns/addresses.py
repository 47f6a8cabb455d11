"""The namespace lab's address plan, all inside 198.18.0.0/15 (RFC 2544 benchmarking).

Link ``i`` (1..N) joins node ``i-1`` and node ``i`` of the chain client(0) .. server(N)::

    198.18.i.1/24   the client-side end (node i-1)     198.18.i.2/24   the server-side end (node i)

so hop ``i`` answers from 198.18.i.2. Services live on the server namespace's ``lo``::

    198.19.0.53     lab resolver (UDP+TCP 53)
    198.19.1.k      origin k of an "intercept"/"pass" domain: the middlebox REDIRECTs this /24
    198.19.2.k      origin k of a "reset"/"alert" domain: never redirected, only dropped+injected

These addresses exist only on interfaces inside the lab's own namespaces.
"""

from __future__ import annotations

import ipaddress

__all__ = [
    "DIRECT_NET",
    "INTERCEPT_NET",
    "LAB_NET",
    "RESOLVER",
    "SERVICE_NET",
    "is_netns_lab_address",
    "link_ip",
    "link_net",
    "service_ip",
]

LAB_NET = ipaddress.ip_network("198.18.0.0/15")
SERVICE_NET = "198.19.0.0/16"
INTERCEPT_NET = "198.19.1.0/24"
DIRECT_NET = "198.19.2.0/24"
RESOLVER = "198.19.0.53"
_MAX_INDEX = 254


def is_netns_lab_address(ip: str) -> bool:
    """True for addresses the namespace lab may hand out: inside 198.18.0.0/15."""
    try:
        return ipaddress.ip_address(ip) in LAB_NET
    except ValueError:
        return False


def link_net(i: int) -> str:
    _check(i, "link")
    return f"198.18.{i}.0/24"


def link_ip(i: int, side: str) -> str:
    """``side`` "client" (.1, node i-1) or "server" (.2, node i) of link ``i``."""
    _check(i, "link")
    return f"198.18.{i}.{1 if side == 'client' else 2}"


def service_ip(treatment: str, k: int) -> str:
    """Origin address ``k`` (1..254) of a domain with this treatment."""
    _check(k, "service")
    return f"198.19.{2 if treatment in ('reset', 'alert') else 1}.{k}"


def _check(i: int, what: str) -> None:
    if not 1 <= i <= _MAX_INDEX:
        raise ValueError(f"{what} index {i} out of range 1..{_MAX_INDEX}")

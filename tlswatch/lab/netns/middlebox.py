"""The middlebox namespace: iptables rules, and the interceptor behind the REDIRECT.

Decision (dd: reset/alert vs. REDIRECT): the nat table decides on a connection's first
packet, before any SNI is seen, so reset/alert domains get origins in their own /24
(``DIRECT_NET``) that the REDIRECT rule excludes. Their ClientHellos are forwarded, except
that a FORWARD rule drops a hello whose SNI entry (``00 <len16> <name>``) matches, and the
injector answers it. Everything for ``INTERCEPT_NET`` on port 443 arriving from the client
side is REDIRECTed into the lab interceptor (:class:`tlswatch.lab.interceptor.Middlebox`),
which reads the original destination with ``SO_ORIGINAL_DST``: SNIs on the target list get
the 2019 forged chain, others are spliced to the original destination untouched.
"""

from __future__ import annotations

import socket
import struct

from tlswatch.lab.netns.addresses import DIRECT_NET, INTERCEPT_NET
from tlswatch.lab.netns.topology import Runner, Topology

__all__ = [
    "INTERCEPT_PORT",
    "SO_ORIGINAL_DST",
    "install_rules",
    "iptables_rules",
    "original_destination",
    "sni_hex_pattern",
]

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
INTERCEPT_PORT = 443
_TLS_PORT = "443"


def sni_hex_pattern(name: str) -> str:
    """iptables ``--hex-string`` for a server_name entry: host_name type, length, name."""
    raw = name.encode("ascii")
    return f"|00{len(raw):04x}|{name}"


def iptables_rules(
    topo: Topology, reset: tuple[str, ...], alert: tuple[str, ...], to_port: int = INTERCEPT_PORT
) -> list[tuple[str, list[str]]]:
    """(feature named on failure, iptables arguments) in the order they are added."""
    cif = topo.facing_client(topo.middlebox_hop)
    rules: list[tuple[str, list[str]]] = [
        ("iptables nat REDIRECT unavailable",
         ["-t", "nat", "-A", "PREROUTING", "-i", cif, "-p", "tcp", "-d", INTERCEPT_NET,
          "--dport", _TLS_PORT, "-j", "REDIRECT", "--to-ports", str(to_port)]),
    ]
    for name in (*reset, *alert):
        rules.append(
            ("iptables string match unavailable",
             ["-A", "FORWARD", "-i", cif, "-p", "tcp", "-d", DIRECT_NET, "--dport", _TLS_PORT,
              "-m", "string", "--algo", "bm", "--hex-string", sni_hex_pattern(name),
              "-j", "DROP"]))
    return rules


def install_rules(runner: Runner, ns: str, rules: list[tuple[str, list[str]]]) -> list[str]:
    """Add the rules in ``ns``; returns them as shell-like lines for the description."""
    lines = []
    for what, args in rules:
        # -w: the xtables lock file is shared by every namespace on the machine.
        runner.in_ns(ns, [runner.tools.iptables, "-w", "5", *args], what)
        lines.append("iptables " + " ".join(args))
    return lines


def original_destination(sock: socket.socket, local_ip: str) -> tuple[str, int] | None:
    """Where a REDIRECTed connection was going; None for one addressed to us directly
    (relaying it would connect the interceptor to itself)."""
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port, packed = struct.unpack_from("!2xH4s", raw)
    ip = socket.inet_ntoa(packed)
    del local_ip  # the listener's address (0.0.0.0); the accepted socket's own one counts
    try:
        if ip == sock.getsockname()[0]:
            return None
    except OSError:
        return None
    return ip, int(port)

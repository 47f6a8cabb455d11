"""Namespaces, veth links, addresses, routes, forwarding and offloads of the chain

    client - r1 .. rB - mb - r(B+1) .. r(B+A) - server

plus the names that make two labs never collide, and teardown (also of stale labs).

Names carry a per-lab tag ``tw<owner pid><letter>``: namespaces are ``<tag>-<node>``, veth
ends ``<tag><link>c`` / ``<tag><link>s`` (at most 15 characters). A namespace whose owner pid
is gone is a stale lab's leftover and is removed by the next lab that starts.

Routes are explicit per link and for the service /16 (no default route), so a packet to any
address outside the lab gets "network unreachable" instead of wandering.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import string
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tlswatch.lab.netns.addresses import SERVICE_NET, link_ip, link_net
from tlswatch.lab.netns.config import NetnsError
from tlswatch.lab.netns.features import Tools

__all__ = [
    "NETNS_ETC",
    "Hop",
    "Runner",
    "Topology",
    "lab_namespaces",
    "new_tag",
    "remove_lab",
    "remove_stale_labs",
]

#: Where ``ip netns exec`` finds a namespace's own resolv.conf.
NETNS_ETC = Path("/etc/netns")
TAG_RE = re.compile(r"^(tw(\d+)[a-z])-[a-z0-9_]+$")
_COUNTER = itertools.count()
_CMD_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class Hop:
    """A node ``index`` hops from the client; ``ip`` is where its ICMP comes from."""

    index: int
    name: str
    ns: str
    ip: str


class Runner:
    """Runs the lab's commands; a failure becomes one line naming the feature."""

    def __init__(self, tools: Tools) -> None:
        self.tools = tools

    def run(self, argv: Sequence[str], what: str, stdin: str | None = None) -> str:
        try:
            done = subprocess.run(
                list(argv), input=stdin, capture_output=True, text=True, timeout=_CMD_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NetnsError(f"{what}: {exc}") from None
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise NetnsError(f"{what}: {lines[-1] if lines else f'exit {done.returncode}'}")
        return done.stdout

    def in_ns(self, ns: str, argv: Sequence[str], what: str) -> str:
        return self.run([self.tools.ip, "netns", "exec", ns, *argv], what)


def new_tag() -> str:
    """A tag no live lab uses: this process's pid and a letter."""
    existing = set(_list_namespaces())
    for _ in range(26):
        tag = f"tw{os.getpid()}{string.ascii_lowercase[next(_COUNTER) % 26]}"
        if not any(n.startswith(tag + "-") for n in existing):
            return tag
    raise NetnsError("too many namespace labs in this process (26)")


class Topology:
    def __init__(self, tag: str, hops_before: int, hops_after: int) -> None:
        self.tag = tag
        self.nodes: tuple[str, ...] = (
            "client",
            *(f"r{i}" for i in range(1, hops_before + 1)),
            "mb",
            *(f"r{i}" for i in range(hops_before + 1, hops_before + hops_after + 1)),
            "server",
        )
        self.links = len(self.nodes) - 1
        self.middlebox_hop = hops_before + 1
        self.server_hop = self.links

    def ns(self, node: str) -> str:
        return f"{self.tag}-{node}"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self.ns(n) for n in self.nodes)

    def iface(self, link: int, side: str) -> str:
        """The veth end of ``link`` in node ``link-1`` ("client") or node ``link`` ("server")."""
        return f"{self.tag}{link}{'c' if side == 'client' else 's'}"

    @property
    def client_ip(self) -> str:
        return link_ip(1, "client")

    @property
    def hops(self) -> tuple[Hop, ...]:
        return tuple(
            Hop(i, self.nodes[i], self.ns(self.nodes[i]), link_ip(i, "server"))
            for i in range(1, self.links + 1)
        )

    def facing_client(self, position: int) -> str:
        """The interface of node ``position`` (>= 1) towards the client."""
        return self.iface(position, "server")

    def facing_server(self, position: int) -> str:
        return self.iface(position + 1, "client")

    def build(self, runner: Runner, server_addresses: Sequence[str]) -> None:
        """Create everything; raises :class:`NetnsError` (the caller tears down)."""
        tools = runner.tools
        for ns in self.namespaces:
            runner.run([tools.ip, "netns", "add", ns], "network namespaces unavailable")
        for pos, node in enumerate(self.nodes):
            self._sysctls(runner, self.ns(node), forward=0 < pos < self.links)
        for link in range(1, self.links + 1):
            runner.run(
                [tools.ip, "link", "add", "name", self.iface(link, "client"), "netns",
                 self.ns(self.nodes[link - 1]), "type", "veth", "peer", "name",
                 self.iface(link, "server"), "netns", self.ns(self.nodes[link])],
                "veth unavailable",
            )
        for pos, node in enumerate(self.nodes):
            lines = self._ip_batch(pos)
            if node == "server":
                lines += [f"addr add {ip}/32 dev lo" for ip in server_addresses]
            runner.run([tools.ip, "-n", self.ns(node), "-batch", "-"],
                       f"cannot configure addresses/routes in {self.ns(node)}",
                       stdin="\n".join(lines) + "\n")
            for ifname in self._ifaces(pos):
                # Software checksums and no segmentation/coalescing: captured and injected
                # packets have the sizes and checksums real wires carry.
                runner.in_ns(self.ns(node),
                             [tools.ethtool, "-K", ifname, "tso", "off", "gso", "off",
                              "gro", "off", "tx", "off", "rx", "off"],
                             f"ethtool cannot turn offloads off on {ifname}")

    def _ifaces(self, pos: int) -> list[str]:
        out = []
        if pos >= 1:
            out.append(self.facing_client(pos))
        if pos < self.links:
            out.append(self.facing_server(pos))
        return out

    def _ip_batch(self, pos: int) -> list[str]:
        lines = ["link set lo up"]
        if pos >= 1:
            lines.append(f"addr add {link_ip(pos, 'server')}/24 dev {self.facing_client(pos)}")
        if pos < self.links:
            lines.append(f"addr add {link_ip(pos + 1, 'client')}/24 dev {self.facing_server(pos)}")
        lines += [f"link set {ifname} up" for ifname in self._ifaces(pos)]
        for link in range(1, self.links + 1):
            if link < pos:  # behind us, towards the client
                lines.append(f"route add {link_net(link)} via {link_ip(pos, 'client')}")
            elif link > pos + 1:  # ahead, towards the server
                lines.append(f"route add {link_net(link)} via {link_ip(pos + 1, 'server')}")
        if pos < self.links:
            lines.append(f"route add {SERVICE_NET} via {link_ip(pos + 1, 'server')}")
        return lines

    @staticmethod
    def _sysctls(runner: Runner, ns: str, forward: bool) -> None:
        sysctl = runner.tools.sysctl
        # Every TTL-limited packet gets its ICMP time-exceeded back (no rate limit), sent
        # from the address of the interface it came in on.
        required = [
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv4.icmp_errors_use_inbound_ifaddr=1",
            f"net.ipv4.ip_forward={int(forward)}",
        ]
        runner.in_ns(ns, [sysctl, "-q", "-w", *required], f"sysctl failed in {ns}")
        # Best effort: a kernel without IPv6 or the global ICMP limiter lacks these keys.
        # IPv6 off keeps router solicitations and DAD out of captures.
        for key in ("net.ipv4.icmp_msgs_per_sec=100000", "net.ipv4.icmp_msgs_burst=100000",
                    "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"):
            with contextlib.suppress(NetnsError):
                runner.in_ns(ns, [sysctl, "-q", "-w", key], "sysctl")

    def write_resolv_conf(self, node: str, resolver: str) -> Path:
        """/etc/netns/<ns>/resolv.conf: ``ip netns exec`` bind-mounts it over /etc/resolv.conf."""
        path = NETNS_ETC / self.ns(node) / "resolv.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# tlswatch namespace lab {self.tag}\nnameserver {resolver}\n")
        return path


def _list_namespaces(ip: str = "ip") -> list[str]:
    try:
        out = subprocess.run([ip, "netns", "list"], capture_output=True, text=True,
                             timeout=_CMD_TIMEOUT, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def lab_namespaces(tag: str, ip: str = "ip") -> list[str]:
    """Namespaces of the lab ``tag`` that exist now."""
    return [n for n in _list_namespaces(ip) if n.startswith(tag + "-")]


def remove_lab(tag: str, ip: str = "ip") -> list[str]:
    """Kill what runs in the lab's namespaces, delete them and their /etc/netns entries."""
    removed = []
    for ns in lab_namespaces(tag, ip):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            pids = subprocess.run([ip, "netns", "pids", ns], capture_output=True, text=True,
                                  timeout=_CMD_TIMEOUT, check=False).stdout.split()
            for pid in pids:
                if pid.isdigit() and int(pid) != os.getpid():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run([ip, "netns", "del", ns], capture_output=True,
                           timeout=_CMD_TIMEOUT, check=False)
        removed.append(ns)
    with contextlib.suppress(OSError):
        for entry in NETNS_ETC.iterdir():
            if entry.name.startswith(tag + "-"):
                shutil.rmtree(entry, ignore_errors=True)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_labs(ip: str = "ip") -> list[str]:
    """Remove labs whose owner process is gone (a SIGKILLed lab whose reaper died too):
    namespaces, /etc/netns entries and the lab's own temp workdirs (``tlswatch-<tag>-*``)."""
    names = list(_list_namespaces(ip))
    with contextlib.suppress(OSError):
        names += [e.name for e in NETNS_ETC.iterdir()]
    workdirs = list(Path(tempfile.gettempdir()).glob("tlswatch-tw*-*"))
    names += [d.name.removeprefix("tlswatch-") for d in workdirs]
    stale = set()
    for name in names:
        m = TAG_RE.match(name)
        if m and not _alive(int(m.group(2))):
            stale.add(m.group(1))
    removed: list[str] = []
    for tag in sorted(stale):
        removed += remove_lab(tag, ip)
        for d in workdirs:
            if d.name.startswith(f"tlswatch-{tag}-"):
                shutil.rmtree(d, ignore_errors=True)
    return removed

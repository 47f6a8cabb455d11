"""Start-up checks that need no side effects: kernel support, privileges, tools.

Each failure is one line naming what is missing (:class:`NetnsError`). Kernel features that
can only be tried (veth, iptables REDIRECT, the string match) are named by the step that
uses them in :mod:`~tlswatch.lab.netns.topology` and :mod:`~tlswatch.lab.netns.middlebox`.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass

from tlswatch.lab.netns.config import NetnsError

__all__ = ["Tools", "check_host"]

_TOOLS = {
    "ip": "iproute2",
    "iptables": "iptables",
    "ethtool": "ethtool",
    "sysctl": "procps",
}


@dataclass(frozen=True, slots=True)
class Tools:
    """Absolute paths of the tools the lab runs (found once, on the caller's PATH)."""

    ip: str
    iptables: str
    ethtool: str
    sysctl: str


def check_host(path: str | None = None) -> Tools:
    """Raise :class:`NetnsError` naming the first missing prerequisite; else the tools."""
    if not sys.platform.startswith("linux"):
        raise NetnsError(f"network namespaces need Linux (this is {sys.platform})")
    if not os.path.exists("/proc/self/ns/net"):
        raise NetnsError("no network namespace support in this kernel (/proc/self/ns/net missing)")
    if os.geteuid() != 0:
        raise NetnsError("not root: the namespace lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)")
    found: dict[str, str] = {}
    for tool, package in _TOOLS.items():
        where = shutil.which(tool, path=path)
        if where is None:
            raise NetnsError(f"{tool} missing: install {package} (needed by the namespace lab)")
        found[tool] = where
    return Tools(**found)

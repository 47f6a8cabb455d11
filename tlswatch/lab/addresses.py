"""The lab's address plan: every service gets its own loopback address in one /16.

Linux routes all of 127.0.0.0/8 to ``lo``, so binding any of these needs no setup::

    P.0.1   censored resolver          P.0.2   control resolver
    P.0.10  blockpage server (HTTP)    P.1.i   origin i (direct: the control path)
    P.2.i   middlebox address of i     P.4.k   hostile server k
    P.5.j   sslsplit listener j        (P = address_prefix, e.g. 127.77)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["AddressPlan", "is_lab_safe"]

_MAX_INDEX = 254


def is_lab_safe(ip: str) -> bool:
    """True for addresses the lab may hand out or connect to: loopback or ``0.0.0.0``."""
    addr = ipaddress.ip_address(ip)
    return addr.is_loopback or addr == ipaddress.IPv4Address("0.0.0.0")


@dataclass(frozen=True, slots=True)
class AddressPlan:
    prefix: str = "127.77"

    def _ip(self, third: int, fourth: int) -> str:
        if not 1 <= fourth <= _MAX_INDEX:
            raise ValueError(f"lab address index {fourth} out of range 1..{_MAX_INDEX}")
        ip = f"{self.prefix}.{third}.{fourth}"
        if not ipaddress.ip_address(ip).is_loopback:  # the hard network rule
            raise ValueError(f"{ip} is not a loopback address")
        return ip

    @property
    def resolver(self) -> str:
        return self._ip(0, 1)

    @property
    def control_resolver(self) -> str:
        return self._ip(0, 2)

    @property
    def blockpage(self) -> str:
        return self._ip(0, 10)

    def origin(self, i: int) -> str:
        return self._ip(1, i)

    def middlebox(self, i: int) -> str:
        return self._ip(2, i)

    def hostile(self, k: int) -> str:
        return self._ip(4, k)

    def sslsplit(self, j: int) -> str:
        return self._ip(5, j)

"""What counts as a bogon DNS answer: unroutable, special-purpose addresses that a censor's
resolver returns instead of the real one (``0.0.0.0``, loopback, private space ...).

Shared by the probe (which never connects to a bogon) and ``tlswatch analyse`` (which
reports DNS answers made only of bogons); kept apart from :mod:`tlswatch.probe.dns` so that
judging a capture does not load dnspython and asyncio.
"""

from __future__ import annotations

import ipaddress
from typing import Final, Literal

__all__ = [
    "BOGON_KINDS",
    "DEFAULT_BOGONS",
    "LAB_BOGONS",
    "BogonKind",
    "BogonPolicy",
    "Network",
    "bogon_kind",
    "routable_policy",
]

BogonKind = Literal["zero", "loopback", "private", "link_local", "multicast", "reserved"]

BOGON_KINDS: Final[tuple[BogonKind, ...]] = (
    "zero",
    "loopback",
    "private",
    "link_local",
    "multicast",
    "reserved",
)
#: The default policy: every special-purpose range is a bogon.
DEFAULT_BOGONS: Final[frozenset[BogonKind]] = frozenset(BOGON_KINDS)
#: For the lab and tests, whose origins live on 127.0.0.0/8 and ::1.
LAB_BOGONS: Final[frozenset[BogonKind]] = DEFAULT_BOGONS - {"loopback"}


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BogonPolicy(frozenset[BogonKind]):
    """The bogon kinds that count, plus networks whose answers never count as bogons.

    ``--routable 198.18.0.0/15`` tells tlswatch that a lab's (or a private network's)
    addresses stand for public ones. A frozenset of kinds, so it goes wherever a plain set
    of kinds went; its networks travel with it (and with pickling, to Dask workers).
    """

    routable: tuple[Network, ...]

    def __new__(cls, kinds: frozenset[BogonKind] | set[BogonKind] = DEFAULT_BOGONS,
                routable: tuple[Network, ...] = ()) -> BogonPolicy:
        self = super().__new__(cls, kinds)
        self.routable = tuple(routable)
        return self

    def __reduce__(self) -> tuple[type[BogonPolicy], tuple[frozenset[BogonKind],
                                                           tuple[Network, ...]]]:
        return BogonPolicy, (frozenset(self), self.routable)

    def __repr__(self) -> str:
        return f"BogonPolicy({sorted(self)!r}, routable={[str(n) for n in self.routable]!r})"


def routable_policy(kinds: frozenset[BogonKind], cidrs: tuple[str, ...],
                    option: str = "--routable") -> frozenset[BogonKind]:
    """``kinds`` with the networks ``cidrs`` exempted; ValueError (one line) for a bad one."""
    if not cidrs:
        return kinds
    nets: list[Network] = []
    for text in cidrs:
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{option} {text!r}: expected a network such as 198.18.0.0/15") \
                from None
    return BogonPolicy(kinds, tuple(nets))


def bogon_kind(ip: str, policy: frozenset[BogonKind] = DEFAULT_BOGONS) -> BogonKind | None:
    """The bogon class of an answer under ``policy``, or None when it may be connected to."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(policy, BogonPolicy) and any(addr in net for net in policy.routable):
        return None
    kind: BogonKind | None
    if addr.is_unspecified or (addr.version == 4 and addr in _ZERO_NET):
        kind = "zero"
    elif addr.is_loopback:
        kind = "loopback"
    elif addr.is_link_local:
        kind = "link_local"
    elif addr.is_multicast:
        kind = "multicast"
    elif addr.is_private or (addr.version == 4 and addr in _CGNAT):
        # Python counts documentation/benchmark ranges as private too: all unroutable.
        kind = "private"
    elif addr.is_reserved:
        kind = "reserved"
    else:
        kind = None
    return kind if kind in policy else None


_ZERO_NET: Final = ipaddress.ip_network("0.0.0.0/8")
_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")

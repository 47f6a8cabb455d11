"""What the compressed-certificate tests over TCP and QUIC share: hosts, time, scenarios."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from tlswatch.testing import FIXED_NOW, CertFactory, Scenario
from tlswatch.testing.pcap_writer import Host

STORE = str(Path(__file__).resolve().parents[2] / "captures" / "lab-public-root.pem")
CLIENT = Host("192.0.2.10", "02:00:00:00:00:0a")
SERVER = Host("198.51.100.7", "02:00:00:00:00:07", ttl=52)
T0 = int(FIXED_NOW.timestamp()) * 1_000_000_000


@lru_cache(maxsize=4)
def scenario(name: str, host: str) -> Scenario:
    """A test-kit scenario (``legit``, ``kz2019`` ...) for ``host``, seed 0, fixed clock."""
    sc: Scenario = getattr(CertFactory(seed=0, now=FIXED_NOW), name)(host)
    assert sc.leaf_key is not None
    return sc


def ders(sc: Scenario) -> tuple[bytes, ...]:
    return tuple(c.public_bytes(Encoding.DER) for c in sc.chain)

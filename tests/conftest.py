"""Suite-wide fixtures and the network guard.

The guard fails any test whose code connects or sends to an address outside
127.0.0.0/8 and ::1. A test that builds network namespaces opts in with
``@pytest.mark.allow_network("10.231.0.0/16", ...)`` for exactly the addresses it creates.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
from collections.abc import Iterator
from typing import Any

import pytest

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
_allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []


class NetworkGuardError(AssertionError):
    pass


def _check(address: Any) -> None:
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return  # AF_UNIX paths, AF_PACKET interface tuples: not IP destinations
    host = address[0].split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        # A name: resolving it is the test's business, connecting to it is not allowed.
        if host in ("localhost", "ip6-localhost"):
            return
        raise NetworkGuardError(f"test tried to reach hostname {host!r}") from None
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped  # type: ignore[union-attr]
    for net in (*LOOPBACK, *_allowed):
        if ip.version == net.version and ip in net:
            return
    raise NetworkGuardError(f"test tried to reach {ip}: only loopback is allowed in tests")


_orig_connect = socket.socket.connect
_orig_connect_ex = socket.socket.connect_ex
_orig_sendto = socket.socket.sendto
_orig_sendmsg = socket.socket.sendmsg


def _connect(self: socket.socket, address: Any) -> None:
    _check(address)
    return _orig_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _check(address)
    return _orig_connect_ex(self, address)


def _sendto(self: socket.socket, data: Any, *args: Any) -> int:
    _check(args[-1])
    return _orig_sendto(self, data, *args)  # type: ignore[call-overload, no-any-return]


def _sendmsg(self: socket.socket, buffers: Any, *args: Any) -> int:
    if len(args) >= 3 and args[2] is not None:
        _check(args[2])
    return _orig_sendmsg(self, buffers, *args)


def pytest_configure(config: pytest.Config) -> None:
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = _sendto  # type: ignore[method-assign, assignment]
    socket.socket.sendmsg = _sendmsg  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _network_allowance(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("allow_network")
    added = [ipaddress.ip_network(c) for c in (marker.args if marker else ())]
    _allowed.extend(added)
    try:
        yield
    finally:
        for net in added:
            _allowed.remove(net)


def require_module(name: str, *, module_level: bool = False) -> Any:
    """Import an optional module; skips locally when missing, fails in CI (CI installs it).
    ``module_level``: called at a test module's top (skips the whole module)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Python module {name} is required in CI (.ci/run installs the extras)",
                        pytrace=False)
        pytest.skip(f"{name} not installed", allow_module_level=module_level)


def require_tool(name: str) -> str:
    """Path of an external tool; skips locally when missing, fails in CI (CI installs it)."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required in CI (.ci/run installs it)")
    pytest.skip(f"{name} not installed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A local Dask cluster of two process workers on 127.0.0.1, one per test module."""
    distributed = require_module("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as c:
        yield c

"""One namespace lab per pytest session, shared by every test package that needs one.

From a test package under ``tests/`` (with an ``__init__.py``, so ``tests/`` is on sys.path)::

    # conftest.py
    from lab.netns.fixture import netns_lab  # noqa: F401  (the session fixture)

    def test_x(netns_lab: NetnsLab) -> None: ...

or ``with shared_netns_lab() as lab:`` in plain code. However many conftests import the
fixture, the lab is started once and stopped when its last user is done. Tests must talk
to the lab only from inside its namespaces (``lab.exec_argv(lab.client_ns, [...])``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import pytest
from conftest import require_tool

from tlswatch.lab.netns import NetnsConfig, NetnsLab

__all__ = ["NETNS_TEST_CONFIG", "netns_lab", "require_netns", "shared_netns_lab"]

#: Bounded but generous timeouts (a loaded CI machine forges keys slowly); the clock is
#: today's (None), so a probe judging "now" sees valid chains.
NETNS_TEST_CONFIG = NetnsConfig(io_timeout=5.0, hold_seconds=5.0, start_timeout=60.0)

_lock = threading.Lock()
_lab: NetnsLab | None = None
_users = 0


def require_netns() -> None:
    """Skip (locally) or fail (CI, which runs as root) when the namespace lab cannot run."""
    for tool in ("ip", "iptables", "ethtool", "sysctl"):
        require_tool(tool)
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: the namespace lab must be able to start")
        pytest.skip("the namespace lab needs root")


@contextlib.contextmanager
def shared_netns_lab() -> Iterator[NetnsLab]:
    """The session's lab (started on first use, stopped when the last user leaves)."""
    global _lab, _users
    with _lock:
        if _lab is None:
            lab = NetnsLab(NETNS_TEST_CONFIG)
            lab.start()
            _lab = lab
        _users += 1
        lab = _lab
    try:
        yield lab
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _lab is not None:
                _lab.stop()
                _lab = None


@pytest.fixture(scope="session")
def netns_lab() -> Iterator[NetnsLab]:
    require_netns()
    with shared_netns_lab() as lab:
        yield lab

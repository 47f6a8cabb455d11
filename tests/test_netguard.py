"""The network guard itself: off-machine destinations fail, loopback works."""

from __future__ import annotations

import socket

import conftest
import pytest
from conftest import NetworkGuardError


def test_connect_outside_loopback_is_refused() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(NetworkGuardError):
            s.connect(("192.0.2.1", 443))  # TEST-NET-1: never reached, the guard stops it first
    finally:
        s.close()


def test_udp_sendto_outside_loopback_is_refused() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(NetworkGuardError):
            s.sendto(b"x", ("8.8.8.8", 53))
    finally:
        s.close()


def test_ipv6_and_hostnames_are_refused() -> None:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        with pytest.raises(NetworkGuardError):
            s.sendto(b"x", ("2001:db8::1", 53, 0, 0))
        with pytest.raises(NetworkGuardError):
            s.connect(("example.com", 443))
    finally:
        s.close()


def test_loopback_is_allowed() -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        c.connect(srv.getsockname())
        conn, _ = srv.accept()
        c.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        conn.close()
    finally:
        c.close()
        srv.close()


@pytest.mark.allow_network("198.51.100.0/24")
def test_marker_opts_in_for_given_cidr_only() -> None:
    # Checked without sending: no packet may leave for a non-loopback address here.
    conftest._check(("198.51.100.7", 9))
    with pytest.raises(NetworkGuardError):
        conftest._check(("198.51.101.7", 9))


def test_marker_allowance_ends_with_the_test() -> None:
    with pytest.raises(NetworkGuardError):
        conftest._check(("198.51.100.7", 9))

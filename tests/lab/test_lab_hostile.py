"""Hostile servers behave as named, and each is bounded."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

import pytest

from tlswatch.tls import Detection, TLSConnection, looks_like_tls

from .clients import read_all, resolve, send_hello


def _addr(desc: dict[str, Any], kind: str) -> tuple[str, int]:
    h = desc["hostile"][kind]
    assert resolve(desc["resolver"], h["domain"])[1] == [h["ip"]]
    return h["ip"], h["port"]


def test_silent(desc: dict[str, Any]) -> None:
    ip, port = _addr(desc, "silent")
    sock = send_hello(ip, port, "hostile-silent.test", timeout=0.4)
    with sock, pytest.raises(TimeoutError):
        sock.recv(1)


def test_slow_dribbles_a_server_hello(desc: dict[str, Any]) -> None:
    ip, port = _addr(desc, "slow")  # the test lab uses 0.1 s per byte
    with send_hello(ip, port, "hostile-slow.test") as sock:
        got = b""
        deadline = time.monotonic() + 0.55
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                got += sock.recv(100)
            except TimeoutError:
                break
    assert 2 <= len(got) <= 8
    assert got[0] == 0x16


def test_garbage_is_not_tls(desc: dict[str, Any]) -> None:
    ip, port = _addr(desc, "garbage")
    with send_hello(ip, port, "hostile-garbage.test") as sock:
        data = read_all(sock)
    assert len(data) == 4096
    assert looks_like_tls(data) is Detection.NO


def test_huge_chain_is_200_certificates_then_stalls(desc: dict[str, Any]) -> None:
    ip, port = _addr(desc, "hugechain")
    wire = TLSConnection(max_message_size=1 << 24)
    with send_hello(ip, port, "hostile-hugechain.test", timeout=5) as sock:
        total = 0
        while wire.certificates is None:
            chunk = sock.recv(1 << 16)
            assert chunk
            total += len(chunk)
            wire.feed_server(chunk)
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):  # no ServerHelloDone: it stalls
            sock.recv(1)
    assert len(wire.certificates) == 200
    assert 1_900_000 < total < 2_300_000


def test_huge_chain_fails_a_real_client_quickly(desc: dict[str, Any]) -> None:
    ip, port = _addr(desc, "hugechain")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection((ip, port), timeout=5)
    # OpenSSL caps the certificate list (excessive message size): an error, not a hang
    with raw, pytest.raises(ssl.SSLError):
        ctx.wrap_socket(raw, server_hostname="hostile-hugechain.test")


def test_midclose(desc: dict[str, Any]) -> None:
    ip, port = _addr(desc, "midclose")
    wire = TLSConnection()
    with send_hello(ip, port, "hostile-midclose.test") as sock:
        data = read_all(sock)  # ends in EOF
    wire.feed_server(data)
    assert wire.server_hello is not None
    assert wire.certificates is None  # cut inside the Certificate record

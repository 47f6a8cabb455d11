"""Blockers and DNS tampering as a client sees them; the control resolver as the reference."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from .clients import read_all, resolve, send_hello, tls_fetch


def _mbox(desc: dict[str, Any], method: str) -> tuple[str, int]:
    domain = desc["blockers"][method][0]
    _, answers = resolve(desc["resolver"], domain)
    assert answers == [desc["domains"][domain]["middlebox"]]
    return answers[0], desc["port"]


def test_reset_comes_right_after_the_client_hello(desc: dict[str, Any]) -> None:
    ip, port = _mbox(desc, "reset")
    domain = desc["blockers"]["reset"][0]
    with socket.create_connection((ip, port), timeout=0.3) as sock:
        # connected, and nothing (no RST, no data) before the hello is sent
        with pytest.raises(TimeoutError):
            sock.recv(1)
        from .clients import client_hello

        sock.sendall(client_hello(domain))
        sock.settimeout(2)
        with pytest.raises(ConnectionResetError):
            sock.recv(1)


def test_reset_only_for_the_blocked_sni(desc: dict[str, Any]) -> None:
    ip, port = _mbox(desc, "reset")
    # the same address with another SNI is spliced to the (working) origin
    seen = tls_fetch(ip, port, "blocked-reset.test.invalid")
    assert b"<title>blocked-reset.test</title>" in seen.body


def test_drop_never_answers(desc: dict[str, Any]) -> None:
    ip, port = _mbox(desc, "drop")
    sock = send_hello(ip, port, desc["blockers"]["drop"][0], timeout=0.5)
    with sock, pytest.raises(TimeoutError):
        sock.recv(1)


def test_injected_alert_bytes(desc: dict[str, Any]) -> None:
    ip, port = _mbox(desc, "alert")
    with send_hello(ip, port, desc["blockers"]["alert"][0]) as sock:
        data = read_all(sock)
    assert data == bytes.fromhex("15 0303 0002 02 28")  # fatal handshake_failure, then FIN


def test_blockpage_on_the_tls_port(desc: dict[str, Any]) -> None:
    ip, port = _mbox(desc, "blockpage")
    with send_hello(ip, port, desc["blockers"]["blockpage"][0]) as sock:
        data = read_all(sock)
    assert data.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"<title>Access restricted</title>" in data


def test_refused(desc: dict[str, Any]) -> None:
    domain = desc["blockers"]["refused"][0]
    _, answers = resolve(desc["resolver"], domain)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((answers[0], desc["port"]), timeout=1).close()
    # the origin itself works (control path)
    _, control = resolve(desc["control_resolver"], domain)
    assert b"<title>" in tls_fetch(control[0], desc["port"], domain).body


@pytest.mark.parametrize("tcp", [False, True])
def test_dns_tampering_vs_control(desc: dict[str, Any], tcp: bool) -> None:
    nx, zero, bp = (desc["blockers"][m][0] for m in ("dns_nxdomain", "dns_zero", "dns_blockpage"))
    assert resolve(desc["resolver"], nx, tcp) == ("NXDOMAIN", [])
    assert resolve(desc["resolver"], zero, tcp) == ("NOERROR", ["0.0.0.0"])
    assert resolve(desc["resolver"], bp, tcp) == ("NOERROR", [desc["blockpage"]["ip"]])
    for name in (nx, zero, bp):
        assert resolve(desc["control_resolver"], name, tcp) == (
            "NOERROR",
            [desc["domains"][name]["origin"]],
        )
    for server in ("resolver", "control_resolver"):
        assert resolve(desc[server], "unknown.invalid", tcp)[0] == "NXDOMAIN"


def test_blockpage_server_behind_tampered_dns(desc: dict[str, Any]) -> None:
    bp = desc["blockers"]["dns_blockpage"][0]
    _, answers = resolve(desc["resolver"], bp)
    with send_hello(answers[0], desc["port"], bp) as sock:
        assert read_all(sock).startswith(b"HTTP/1.1 403")


def test_every_answer_stays_on_this_machine(desc: dict[str, Any]) -> None:
    for name in desc["domains"]:
        for server in ("resolver", "control_resolver"):
            for ip in resolve(desc[server], name)[1] + resolve(desc[server], "www." + name)[1]:
                addr = ipaddress.ip_address(ip)
                assert addr.is_loopback or str(addr) == "0.0.0.0", (name, ip)


def test_sni_blockers_fire_at_any_middlebox_address(desc: dict[str, Any]) -> None:
    kz_ip = desc["incountry"]["kz-host-3.kz"]["ip"]
    with send_hello(kz_ip, desc["port"], desc["blockers"]["alert"][0]) as sock:
        assert read_all(sock) == bytes.fromhex("15 0303 0002 02 28")
    sock = send_hello(kz_ip, desc["port"], desc["blockers"]["reset"][0])
    with sock, pytest.raises(ConnectionResetError):
        sock.recv(1)

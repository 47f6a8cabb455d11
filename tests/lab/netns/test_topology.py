"""Packets cross real hops: every router answers a TTL-limited packet, the server is reached,
and the client namespace resolves lab names through its own resolv.conf."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tlswatch.lab.netns import NetnsLab

HERE = Path(__file__).parent
TIME_EXCEEDED, UNREACHABLE, PORT_UNREACHABLE = 11, 3, 3


def ns_client(lab: NetnsLab, *args: str) -> Any:
    done = subprocess.run(
        lab.exec_argv(lab.client_ns, [sys.executable, str(HERE / "ns_client.py"), *args]),
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_each_hop_sends_time_exceeded_and_the_server_answers(netns_lab: NetnsLab) -> None:
    lab = netns_lab
    assert [h.index for h in lab.hops] == list(range(1, lab.server_hop + 1))
    assert [h.name for h in lab.hops] == ["r1", "r2", "mb", "r3", "server"]
    assert lab.middlebox_hop == 3 and lab.server_hop == 5
    target = lab.address_of("example.org")
    seen = ns_client(lab, "ttl", target, str(lab.server_hop))
    for hop in lab.hops[:-1]:
        assert seen[str(hop.index)] == {"type": TIME_EXCEEDED, "code": 0, "from": hop.ip}, hop
    # At the server's distance the datagram arrives: the closed port answers, from the
    # origin address itself.
    assert seen[str(lab.server_hop)] == {"type": UNREACHABLE, "code": PORT_UNREACHABLE,
                                         "from": target}


def test_ttl_probes_are_not_rate_limited(netns_lab: NetnsLab) -> None:
    # Twice in a row at once: a rate-limited router would answer the second burst with
    # silence (the default allows one ICMP per second per destination).
    lab = netns_lab
    target = lab.address_of("facebook.com")
    for _ in range(2):
        seen = ns_client(lab, "ttl", target, str(lab.middlebox_hop))
        assert [seen[str(h.index)]["from"] for h in lab.hops[: lab.middlebox_hop]] == [
            h.ip for h in lab.hops[: lab.middlebox_hop]]


def test_client_namespace_resolves_lab_names_via_its_resolv_conf(netns_lab: NetnsLab) -> None:
    lab = netns_lab
    names = ["facebook.com", "www.facebook.com", "example.org", "reset.test", "nope.test"]
    got = ns_client(lab, "resolve", *names)
    assert got["nameservers"] == [lab.resolver]
    for name in names[:-1]:
        assert got[name] == [lab.address_of(name)]
    assert got["nope.test"] == "nxdomain"
    conf = Path("/etc/netns") / lab.client_ns / "resolv.conf"
    assert f"nameserver {lab.resolver}" in conf.read_text()


def test_description_names_every_namespace_and_hop(netns_lab: NetnsLab) -> None:
    lab = netns_lab
    desc = lab.describe()
    json.dumps(desc)
    assert desc["running"] is True
    assert tuple(desc["namespaces"].values()) == lab.namespaces
    assert desc["client"]["ns"] == lab.client_ns
    assert [h["ip"] for h in desc["hops"]] == [h.ip for h in lab.hops]
    assert desc["middlebox_hop"] == 3 and desc["server_hop"] == 5
    assert desc["domains"]["reset.test"]["treatment"] == "reset"
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=True).stdout.split()
    for ns in lab.namespaces:
        assert ns in listed
        assert ns.startswith(lab.tag + "-")
    # Nothing lab-made in the root namespace: no interface carries the tag here.
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                           check=True).stdout
    assert lab.tag not in links

"""The namespace lab's pure parts, without root: config, names, routes, rules, injection."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from tlswatch.lab.netns import NetnsConfig, NetnsError
from tlswatch.lab.netns.addresses import DIRECT_NET, INTERCEPT_NET, SERVICE_NET, link_ip
from tlswatch.lab.netns.features import check_host
from tlswatch.lab.netns.injector import MAX_FLOWS, Injector
from tlswatch.lab.netns.middlebox import iptables_rules, original_destination, sni_hex_pattern
from tlswatch.lab.netns.topology import TAG_RE, Topology

from ..clients import client_hello

# -- config ------------------------------------------------------------------------------


def test_default_treatments_cover_targets_untargeted_reset_and_alert() -> None:
    t = NetnsConfig().treatments()
    assert t["facebook.com"] == t["mail.google.com"] == "intercept"
    assert len([d for d, v in t.items() if v == "intercept"]) == 37
    assert t["example.org"] == "pass"
    assert t["reset.test"] == "reset" and t["alert.test"] == "alert"


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"hops_before_middlebox": -1}, "hops_before_middlebox"),
    ({"hops_after_middlebox": 99}, "hops_after_middlebox"),
    ({"reset_domains": ("Not A Name",)}, "reset_domains"),
    ({"alert_domains": ("reset.test",)}, "already in reset_domains"),
    ({"alert": "teapot"}, "alert"),
    ({"io_timeout": 0}, "io_timeout"),
])
def test_bad_config_is_one_line(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(NetnsError) as err:
        NetnsConfig(**kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_reset_domain_cannot_also_be_a_target() -> None:
    with pytest.raises(NetnsError, match="also an interception target"):
        NetnsConfig(targets=("reset.test",)).treatments()


# -- names and routes --------------------------------------------------------------------


def test_names_carry_the_tag_and_fit_linux_limits() -> None:
    tag = "tw4194304z"  # the largest pid Linux hands out
    assert TAG_RE.match(tag + "-client")
    topo = Topology(tag, 12, 12)
    assert topo.nodes[0] == "client" and topo.nodes[-1] == "server"
    assert topo.nodes[topo.middlebox_hop] == "mb" and topo.server_hop == 26
    for link in range(1, topo.links + 1):
        for side in ("client", "server"):
            name = topo.iface(link, side)
            assert name.startswith(tag) and len(name) <= 15  # IFNAMSIZ - 1
    assert all(ns.startswith(tag + "-") for ns in topo.namespaces)
    assert len(set(topo.namespaces)) == len(topo.nodes)


def _owner(topo: Topology, dst: str) -> int | None:
    return next((p for p in range(len(topo.nodes))
                 if any(line.startswith(f"addr add {dst}/") for line in topo._ip_batch(p))),
                None)


def _next_hop(topo: Topology, pos: int, dst: str) -> int | None:
    """Where node ``pos`` sends a packet for ``dst`` per its batch lines (None: local/none)."""
    addr = ipaddress.ip_address(dst)
    if pos == _owner(topo, dst):
        return None
    for line in topo._ip_batch(pos):
        words = line.split()
        if words[:2] == ["addr", "add"] and addr in ipaddress.ip_network(words[2], strict=False):
            # On a connected link: deliver to the neighbour that owns the address.
            return pos + 1 if dst == link_ip(pos + 1, "server") else pos - 1
        if words[:2] == ["route", "add"] and addr in ipaddress.ip_network(words[2]):
            gateway = words[4]
            return pos + 1 if gateway == link_ip(pos + 1, "server") else pos - 1
    raise AssertionError(f"node {pos} has no route to {dst}")


@pytest.mark.parametrize(("before", "after"), [(2, 1), (0, 0), (3, 4)])
def test_every_node_reaches_every_address_and_nothing_else(before: int, after: int) -> None:
    topo = Topology("tw1a", before, after)
    addresses = [link_ip(i, s) for i in range(1, topo.links + 1) for s in ("client", "server")]
    for src in range(len(topo.nodes)):
        for dst in addresses:
            owner = _owner(topo, dst)
            pos, steps = src, 0
            while (nxt := _next_hop(topo, pos, dst)) is not None:
                pos, steps = nxt, steps + 1
                assert steps <= topo.links, "routing loop"
            assert pos == owner
        if src < topo.links:  # the services sit behind the server
            assert _next_hop(topo, src, "198.19.1.1") == src + 1
    # No default route anywhere: off-lab destinations are unreachable.
    for pos in range(len(topo.nodes)):
        routes = [line for line in topo._ip_batch(pos) if line.startswith("route")]
        assert not any("default" in r for r in routes)
        assert all(ipaddress.ip_network(r.split()[2]).subnet_of(
            ipaddress.ip_network("198.18.0.0/15")) for r in routes)
    assert SERVICE_NET == "198.19.0.0/16"


# -- middlebox rules -----------------------------------------------------------------------


def test_sni_pattern_is_the_server_name_entry() -> None:
    assert sni_hex_pattern("reset.test") == "|00000a|reset.test"
    hello = client_hello("reset.test")
    assert b"\x00\x00\x0areset.test" in hello


def test_rules_redirect_only_the_intercept_net_and_drop_hellos_by_sni() -> None:
    topo = Topology("tw1a", 2, 1)
    rules = iptables_rules(topo, ("reset.test",), ("alert.test",))
    (what, redirect), *drops = rules
    assert what == "iptables nat REDIRECT unavailable"
    assert redirect[redirect.index("-d") + 1] == INTERCEPT_NET
    assert redirect[redirect.index("-i") + 1] == topo.facing_client(topo.middlebox_hop)
    assert "REDIRECT" in redirect
    assert [r[r.index("--hex-string") + 1] for _, r in drops] == [
        "|00000a|reset.test", "|00000a|alert.test"]
    assert all(r[r.index("-d") + 1] == DIRECT_NET and r[-1] == "DROP" for _, r in drops)


def test_original_destination_of_a_plain_connection_is_none() -> None:
    # Not REDIRECTed: relaying would connect the interceptor to itself.
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        with socket.create_connection(lsock.getsockname()) as _client:
            conn, _ = lsock.accept()
            with conn:
                assert original_destination(conn, "0.0.0.0") is None


# -- host checks ---------------------------------------------------------------------------


def test_not_root_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(NetnsError, match=r"^not root"):
        check_host()


def test_missing_tool_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    with pytest.raises(NetnsError, match=r"^ip missing: install iproute2"):
        check_host(path=str(tmp_path))


# -- injector --------------------------------------------------------------------------------


class _Sent:
    def __init__(self) -> None:
        self.packets: list[Any] = []

    def send(self, pkt: Any) -> None:
        self.packets.append(pkt)


def _segments(sni: str, seq: int, split: int) -> list[Any]:
    from scapy.layers.inet import IP, TCP

    hello = client_hello(sni)
    parts = [hello[:split], hello[split:]] if split else [hello]
    out, offset = [], 0
    for i, part in enumerate(parts):
        out.append(IP(src="198.18.1.1", dst="198.19.2.1", ttl=62, id=100 + i)
                   / TCP(sport=40000, dport=443, flags="PA", seq=seq + offset, ack=777)
                   / part)
        offset += len(part)
    return [IP(bytes(p)) for p in out]  # as dissected from the wire


def _injector(sent: _Sent) -> Injector:
    inj = Injector("unused0", ["reset.test"], ["alert.test"], alert_description=49, seed=1)
    inj._sock = sent
    return inj


@pytest.mark.parametrize("split", [0, 100])
def test_reset_domain_hello_draws_rsts_with_the_middleboxs_ttl(split: int) -> None:
    from scapy.layers.inet import IP, TCP

    sent = _Sent()
    inj = _injector(sent)
    segs = _segments("reset.test", 5000, split)
    for seg in segs:
        inj._on_packet(seg)
    hello_len = len(client_hello("reset.test"))
    to_client = [p for p in sent.packets if p[IP].dst == "198.18.1.1"]
    to_server = [p for p in sent.packets if p[IP].dst == "198.19.2.1"]
    assert len(to_client) == 1
    rst = to_client[0]
    assert rst[IP].src == "198.19.2.1" and rst[IP].ttl == 64
    assert str(rst[TCP].flags) == "RA" and rst[TCP].seq == 777
    assert rst[TCP].ack == 5000 + hello_len and (rst[TCP].sport, rst[TCP].dport) == (443, 40000)
    # The server expects the segment that was dropped: the first or the last one.
    assert {p[TCP].seq for p in to_server} == {5000, segs[-1][TCP].seq}
    assert all(str(p[TCP].flags) == "R" and p[IP].src == "198.18.1.1" for p in to_server)
    ids = [p[IP].id for p in sent.packets]
    assert len(set(ids)) == len(ids) and 0 not in ids


def test_alert_domain_gets_the_alert_record_then_rst() -> None:
    from scapy.layers.inet import IP, TCP

    sent = _Sent()
    inj = _injector(sent)
    for seg in _segments("alert.test", 9, 0):
        inj._on_packet(seg)
    to_client = [p for p in sent.packets if p[IP].dst == "198.18.1.1"]
    alert, rst = to_client
    assert bytes(alert[TCP].payload) == bytes([21, 3, 3, 0, 2, 2, 49])  # fatal access_denied
    assert alert[TCP].seq == 777 and rst[TCP].seq == 777 + 7 and rst[TCP].flags.R


def test_other_snis_garbage_and_endless_hellos_draw_nothing() -> None:
    from scapy.layers.inet import IP, TCP

    sent = _Sent()
    inj = _injector(sent)
    for seg in _segments("example.org", 1, 50):
        inj._on_packet(seg)
    garbage = IP(src="198.18.1.1", dst="198.19.2.1") / TCP(dport=443, seq=1) / (b"\x16" * 300)
    inj._on_packet(IP(bytes(garbage)))
    inj._on_packet(b"not a packet")
    assert sent.packets == []
    # Many flows that never complete a hello: memory stays bounded.
    for port in range(MAX_FLOWS + 50):
        start = IP(src="198.18.1.1", dst="198.19.2.1") / TCP(sport=port + 1, dport=443, seq=1)
        inj._on_packet(IP(bytes(start / b"\x16\x03\x01\x40\x00\x01")))
    assert len(inj._partial) <= MAX_FLOWS
    assert sent.packets == []

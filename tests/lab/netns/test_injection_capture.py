"""Injected packets carry the middlebox's TTL and IP ID: seen in a capture taken in the
client namespace (the probe's ``--pcap``), and named by ``tlswatch analyse``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool

from tlswatch.lab.netns import NetnsLab

from .test_interception import probe_argv, records

INITIAL_TTL = 64  # Linux default in every lab namespace and the injector's own


@pytest.fixture(scope="module")
def reset_capture(netns_lab: NetnsLab, tmp_path_factory: pytest.TempPathFactory
                  ) -> tuple[Path, dict[str, Any]]:
    require_tool("tcpdump")
    pcap = tmp_path_factory.mktemp("netns-pcap") / "reset.pcap"
    done = subprocess.run(probe_argv(netns_lab, "reset.test", "--pcap", str(pcap)),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    (rec,) = records(done.stdout)
    assert rec["outcome"] == "tls/reset"
    return pcap, rec


def test_injected_rst_arrives_with_the_middleboxs_ttl(
        netns_lab: NetnsLab, reset_capture: tuple[Path, dict[str, Any]]) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.utils import rdpcap

    pcap, _ = reset_capture
    server_ip = netns_lab.address_of("reset.test")
    from_server = [p for p in rdpcap(str(pcap))
                   if IP in p and TCP in p and p[IP].src == server_ip and p[TCP].sport == 443]
    resets = [p for p in from_server if p[TCP].flags.R]
    others = [p for p in from_server if not p[TCP].flags.R]
    assert resets and others, "the capture lacks the server's packets or the RST"
    print([(p[IP].ttl, p[IP].id, str(p[TCP].flags)) for p in from_server])
    # Routers decrement: the server's packets crossed server_hop-1 routers, the injected RST
    # only middlebox_hop-1.
    assert {p[IP].ttl for p in others} == {INITIAL_TTL - (netns_lab.server_hop - 1)}
    assert {p[IP].ttl for p in resets} == {INITIAL_TTL - (netns_lab.middlebox_hop - 1)}
    # The RST's IP ID comes from the injector's own counter, not the server's.
    assert not {p[IP].id for p in resets} & {p[IP].id for p in others}


def test_analyse_says_the_rst_looks_injected(
        netns_lab: NetnsLab, reset_capture: tuple[Path, dict[str, Any]]) -> None:
    pcap, _ = reset_capture
    done = subprocess.run([sys.executable, "-m", "tlswatch", "analyse", str(pcap)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    recs = [r for r in map(json.loads, done.stdout.splitlines())
            if r.get("kind") is None and r.get("source") == "pcap"]
    tls = [r for r in recs if r.get("flow", {}).get("server_ip") == netns_lab.address_of(
        "reset.test")]
    assert len(tls) == 1, recs
    rec = tls[0]
    assert rec["outcome"] == "tls/reset"
    rst = rec["tcp"]["rst"]
    server_ttl = 64 - (netns_lab.server_hop - 1)
    mb_ttl = 64 - (netns_lab.middlebox_hop - 1)
    assert rst["ttl"] == mb_ttl
    assert f"ttl_differs_from_server({mb_ttl}!={server_ttl})" in rst["injected_evidence"]

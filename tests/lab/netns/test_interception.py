"""What a client in the client namespace sees through the middlebox, measured with the
real probe CLI (``tlswatch probe --connect``) run inside that namespace."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tlswatch.lab.netns import NetnsLab

CASES = ("facebook.com", "mail.google.com", "example.org", "reset.test", "alert.test")


def probe_argv(lab: NetnsLab, domain: str, *extra: str) -> list[str]:
    return lab.exec_argv(lab.client_ns, [
        sys.executable, "-m", "tlswatch", "probe", domain, "--connect", lab.address_of(domain),
        "--store", str(lab.store_path), "--retries", "0", "--connect-timeout", "2",
        "--tls-timeout", "5", "--timeout", "15", *extra])


def records(stdout: str) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, stdout.splitlines()) if r.get("kind") != "run"]


@pytest.fixture(scope="module")
def probed(netns_lab: NetnsLab) -> dict[str, dict[str, Any]]:
    # All probes at once: each is a separate process in the client namespace.
    procs = {d: subprocess.Popen(probe_argv(netns_lab, d), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for d in CASES}
    out = {}
    for domain, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        (rec,) = records(stdout)
        out[domain] = rec
    return out


@pytest.mark.parametrize("domain", ["facebook.com", "mail.google.com"])
def test_target_sni_is_intercepted_with_the_qaznet_named_root(
        probed: dict[str, dict[str, Any]], netns_lab: NetnsLab, domain: str) -> None:
    rec = probed[domain]
    assert netns_lab.treatment(domain) == "intercept"
    assert rec["verdict"] == "intercepted", rec["outcome"]
    assert rec["outcome"].startswith("cert/known_interception_ca:")
    chain = rec["chain"]
    assert chain[0]["subject"].endswith(f"CN={domain}") or domain in chain[0]["sans"]
    issuers = [c["issuer"] for c in chain]
    assert any("Security Certificate" in i for i in issuers)
    assert any("Qaznet Trust Network" in c["subject"] for c in chain)
    assert chain[0]["key"]["exponent"] == 3  # the 2019 forger's host key
    assert rec["target"]["ip"] == netns_lab.address_of(domain)


def test_untargeted_sni_passes_untouched(probed: dict[str, dict[str, Any]],
                                         netns_lab: NetnsLab) -> None:
    rec = probed["example.org"]
    assert netns_lab.treatment("example.org") == "pass"
    assert rec["verdict"] == "ok", rec["outcome"]
    assert rec["outcome"] == "cert/valid"
    # The chain is the origin's, anchored in the lab's public root (the --store file).
    root = netns_lab.describe()["public_root"]["subject"]
    assert rec["chain"][-1]["issuer"] == root


def test_reset_domain_is_reset_right_after_the_client_hello(
        probed: dict[str, dict[str, Any]], netns_lab: NetnsLab) -> None:
    rec = probed["reset.test"]
    assert netns_lab.treatment("reset.test") == "reset"
    assert rec["tcp"]["failure"] is None  # the handshake with the real server worked
    assert rec["outcome"] == "tls/reset"
    assert rec["verdict"] in ("anomaly", "blocked")


def test_alert_domain_gets_the_injected_alert(probed: dict[str, dict[str, Any]],
                                              netns_lab: NetnsLab) -> None:
    rec = probed["alert.test"]
    assert netns_lab.treatment("alert.test") == "alert"
    assert rec["outcome"] == "tls/alert:handshake_failure"
    assert rec["tls"]["alert"] is not None


def test_control_sni_to_a_reset_domains_address_is_not_blocked(netns_lab: NetnsLab) -> None:
    # The block is triggered by the SNI, not the address: another name to the same IP passes
    # (the origin answers with its own chain, which does not match that name).
    argv = probe_argv(netns_lab, "reset.test")
    argv[argv.index("reset.test")] = "example.org"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    (rec,) = records(done.stdout)
    assert rec["tls"]["failure"] is None, rec["outcome"]
    assert rec["outcome"] == "cert/hostname_mismatch"

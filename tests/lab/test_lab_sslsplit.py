"""sslsplit, the interceptor no one here wrote, routed for a couple of lab domains."""

from __future__ import annotations

import os
from typing import Any

from conftest import require_tool
from cryptography import x509

from .clients import resolve, tls_fetch


def test_sslsplit_chain_is_issued_by_its_own_ca(desc: dict[str, Any]) -> None:
    require_tool("sslsplit")
    info = desc["sslsplit"]
    assert info["status"] == "running", info
    assert "Qaznet" not in info["ca_subject"] and "Lab Corp" in info["ca_subject"]
    for domain, ip in info["domains"].items():
        assert resolve(desc["resolver"], domain)[1] == [ip]
        seen = tls_fetch(ip, desc["port"], domain)
        origin = tls_fetch(desc["domains"][domain]["origin"], desc["port"], domain)
        assert seen.leaf.issuer.rfc4514_string() == info["ca_subject"]
        assert seen.leaf.issuer != origin.leaf.issuer
        assert seen.leaf.subject == origin.leaf.subject  # sslsplit copies the subject too
        assert seen.leaf.public_key() != origin.leaf.public_key()
        sans = seen.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert domain in sans.value.get_values_for_type(x509.DNSName)
        assert f"<title>{domain}</title>".encode() in seen.body


def test_sslsplit_process_belongs_to_the_lab(desc: dict[str, Any]) -> None:
    require_tool("sslsplit")
    pid = desc["sslsplit"]["pid"]
    assert isinstance(pid, int)
    os.kill(pid, 0)  # alive while the lab runs

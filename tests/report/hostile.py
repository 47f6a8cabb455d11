"""Records whose peer-supplied strings are HTML/JS payloads, and ordinary ones beside them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tlswatch.classify.chain import ChainJudge, decide
from tlswatch.classify.record import chain_record
from tlswatch.classify.rules import ControlAgreement, ControlView
from tlswatch.model import Target, Vantage, to_dict
from tlswatch.testing import CertFactory
from tlswatch.testing.certs import FIXED_NOW
from tlswatch.x509.registry import load_registry

# Each payload sets window.__pwned (or fetches something) if it ever runs or renders as HTML.
SCRIPT_CN = "<script>window.__pwned=1;document.title='PWNED'</script>"
IMG_O = '"><img src=x onerror="window.__pwned=2">'
JS_URL = "javascript:window.__pwned=3//"
SVG_DOMAIN = "<svg onload=window.__pwned=4>.example"
VANTAGE = "</title><script>window.__pwned=5</script>"
STYLE = "<style>body{background:url(http://127.0.0.1:9/css)}</style>"
PAYLOADS = (SCRIPT_CN, IMG_O, JS_URL, SVG_DOMAIN, VANTAGE, STYLE)
# A piece of each payload that must show on the page as text (names may be RFC 4514-escaped).
MARKERS = ("<script>window.__pwned=1", "<img src=x onerror=", "javascript:window.__pwned=3",
           "<svg onload=window.__pwned=4>", "</title><script>window.__pwned=5",
           "<style>body{background:url(")


def hostile_chain() -> list[bytes]:
    f = CertFactory(seed=0)
    root = f.root(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SCRIPT_CN),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, IMG_O)]))
    leaf = f.leaf(root, ["evil.example"], subject=x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, JS_URL),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, STYLE)]))
    return [leaf.cert.public_bytes(Encoding.DER), root.cert.public_bytes(Encoding.DER)]


def records() -> list[dict[str, Any]]:
    """Two intercepted records with hostile strings everywhere, and ordinary ones."""
    judge = ChainJudge(None, load_registry(()))
    out: list[dict[str, Any]] = []
    ders = hostile_chain()
    for i, (domain, vantage) in enumerate([(SVG_DOMAIN, VANTAGE), ("evil.example", "lab")]):
        at = FIXED_NOW + timedelta(days=i)
        j = judge.judge(ders, host="evil.example", at=at)
        view = ControlView("sni", ControlAgreement.VALID, "cert/valid")
        rec = chain_record(record_id=f"hostile{i}", run_id="test", source="probe", at=at,
                           target=Target(domain=domain, sni="evil.example"), judgement=j,
                           decision=decide(j, view), vantage=Vantage(vantage, "lab"),
                           control=view)
        d = to_dict(rec)
        d["reasons"].append(f'<iframe src="http://127.0.0.1:9/">{JS_URL}')
        d["anomalies"] = [f"</svg>{SCRIPT_CN}"]
        if i == 1:
            # RFC 4514 escapes '<' in names (``\<script\>``); a record from another producer
            # may not: the raw payloads as subject and issuer, too.
            d["chain"][0]["subject"] = f"CN={SCRIPT_CN},OU={STYLE}"
            d["chain"][0]["issuer"] = f"O={IMG_O},CN={JS_URL}"
        out.append(d)
    f = CertFactory(seed=0)
    for n, (domain, scenario) in enumerate([("example.com", f.legitimate()),
                                            ("expired.example", f.expired())]):
        chain = [c.public_bytes(Encoding.DER) for c in scenario.chain]
        j = judge.judge(chain, host=scenario.host, at=scenario.at)
        rec = chain_record(record_id=f"plain{n}", run_id="test", source="probe",
                           at=scenario.at, target=Target(domain=domain), judgement=j,
                           decision=decide(j), vantage=Vantage("lab", "lab"))
        out.append(to_dict(rec))
    out.append({"id": "b1", "run_id": "test", "source": "probe", "schema": "tlswatch/1",
                "time": "2019-08-03T00:00:00Z", "target": {"domain": "blocked.example"},
                "vantage": {"name": "lab", "kind": "lab"}, "verdict": "blocked",
                "outcome": "tls/reset", "rule_id": "R72-failure-control-succeeded",
                "reasons": ["failed here while the control succeeded"]})
    return out


def write_results(path: Path, extra_lines: tuple[str, ...] = ()) -> Path:
    with open(path, "w") as f:
        for rec in records():
            f.write(json.dumps(rec) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return path


DOMAINS = {SVG_DOMAIN, "evil.example", "example.com", "expired.example", "blocked.example"}

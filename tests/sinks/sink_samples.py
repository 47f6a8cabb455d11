"""Deterministic sample records for the sink tests (also imported by killed child processes).

Record ``i`` is a pure function of ``i``, so a reader can check every row a killed writer
left: contiguous ids, each equal to what was meant to be written. Peer strings are hostile
(formula starters, control characters, bidi overrides, quotes, separators, non-ASCII).
"""

from __future__ import annotations

import base64
import hashlib

from tlswatch.model import (
    Attempts,
    CertFacts,
    Control,
    DnsInfo,
    Flow,
    HttpInfo,
    InputRecord,
    Interception,
    KeyInfo,
    Record,
    RstInfo,
    RunRecord,
    Target,
    TcpInfo,
    TlsInfo,
    Validation,
    Vantage,
)

HOSTILE = (
    "=HYPERLINK(\"http://x\",\"click\")",
    "+1+2",
    "-2+3",
    "@SUM(A1:A9)",
    "\tTAB first",
    "\rCR first",
    "'already quoted",
    "CN=evil\n\r\x1b[31m\u202eredli\u2028ne",
    "Қазақстан, \"Qaznet\" Trust | Network \\x1b",
    "",
)


def _der(i: int, n: int) -> bytes:
    return b"\x30\x82" + hashlib.sha256(f"{i}/{n}".encode()).digest() * (1 + n)


def cert(i: int, n: int) -> CertFacts:
    der = _der(i, n)
    return CertFacts(
        sha256=hashlib.sha256(der).hexdigest(), der_b64=base64.b64encode(der).decode(),
        spki_sha256=f"{n:064x}", subject=HOSTILE[(i + n) % len(HOSTILE)] or None,
        issuer=f"C=KZ, CN=Security Certificate {n}", serial=f"{i:x}",
        not_before="2019-07-01T00:00:00Z", not_after="2019-10-01T00:00:00Z",
        key=KeyInfo("rsa", 2048, 3 if n == 0 else 65537), sans=(f"d{i}.example", "*.x.example"),
        sct=n == 1, self_signed=n == 2)


def record(i: int) -> Record:
    """A full observation; every third one failed at TCP, every fifth has a control."""
    hostile = HOSTILE[i % len(HOSTILE)]
    failed = i % 3 == 2
    chain = () if failed else (cert(i, 0), cert(i, 1), cert(i, 2))
    return Record(
        id=f"m{i:06d}", run_id="run-1", source="probe" if i % 2 else "pcap",
        time=f"2019-08-01T12:{i % 60:02d}:{(i * 7) % 60:02d}" + (".25Z" if i % 4 else "Z"),
        target=Target(domain=f"d{i}.example", sni=hostile or None, ip="127.0.0.1",
                      port=443 + i % 2),
        vantage=Vantage(name=f"kz-{i % 3}", kind="vantage"),
        flow=Flow("10.0.0.1", 40000 + i, "127.0.0.1", 443) if i % 2 == 0 else None,
        dns=DnsInfo(resolver="127.0.0.53", answers=("127.0.0.1", "::1"), rcode="NOERROR"),
        tcp=TcpInfo(failure="tcp/reset" if failed else None, connect_ms=1.25 + i,
                    rst=RstInfo(ttl=57, ip_id=0, injected_evidence=("ttl_differs",))
                    if failed else None),
        tls=None if failed else TlsInfo(version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256",
                                        alert=hostile or None, history="CsSiIhcCfF",
                                        ja3="a" * 32, ja4="t13d1516h2_8daaf6152771_b186095e22b6",
                                        handshake_ms=12.5, bytes_read=4096),
        http=HttpInfo(status=200, title=hostile, body_len=i) if i % 4 == 0 else None,
        chain=chain,
        validation=() if failed else (
            Validation("mozilla@2019-06", "2019-06-01", False, "2019-08-01T12:00:00Z",
                       "untrusted_root", "ab" * 32, hostile, True),
            Validation("apple", "2024", False, "2019-08-01T12:00:00Z", "untrusted_root")),
        interception=Interception(True, "kz-2019-qaznet-root", "kz-2019", "cd" * 32,
                                  "issuer_name_only", ("rsa_exponent_3", "no_sct_list"))
        if not failed else Interception(False),
        control=Control(kind="path", outcome="cert/valid", chain=(cert(i + 1000, 0),),
                        target=Target(domain=f"d{i}.example")) if i % 5 == 0 else None,
        attempts=Attempts(2, 1 + i % 2),
        verdict="blocked" if failed else "intercepted",
        outcome="tcp/reset" if failed else "cert/known_interception_ca:kz-2019-qaznet-root",
        confidence=0.7 + (i % 3) / 10, rule_id="R21-interception-weak",
        rules_version="2026.11.1", reasons=(f"reason {i}", hostile), anomalies=(hostile,)
        if hostile else (),
    )


def run_record(n: int, *, ended: bool = False) -> RunRecord:
    return RunRecord(
        run_id=f"run-{n}", tool="tlswatch", tool_version="0.1.0",
        started="2019-08-01T12:00:00Z", ended="2019-08-01T13:00:00.5Z" if ended else None,
        command=("tlswatch", "probe", "-o", "out file.jsonl", "=cmd"),
        rules_version="2026.11.1", registry_version="2026.11", stores=(("auto", "2019-06"),),
        openssl="OpenSSL 3.0.13", vantage=Vantage("here", "local"), resumed=n > 1)


def input_record(n: int) -> InputRecord:
    return InputRecord(
        run_id=f"run-{n}", path=f"captures/{HOSTILE[n % len(HOSTILE)]}.pcap", sha256=f"{n:064x}",
        size=1000 + n, records=3, complete=n % 2 == 1, partial=n % 2 == 0, format="pcap",
        packets=10, flows=2, handshakes=1, anomalies={"tcp_gap": 2, "weird\x1b": 1},
        warnings=("truncated at byte 100",))


def stream(start: int, count: int, run: int = 1) -> list[Record | RunRecord | InputRecord]:
    """A run: opening run record, ``count`` records from ``start``, an input record, and the
    closing run record."""
    return [run_record(run), *(record(i) for i in range(start, start + count)),
            input_record(run), run_record(run, ended=True)]

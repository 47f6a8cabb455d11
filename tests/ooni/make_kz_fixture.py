"""Write ``fixtures/kz2019-forged-facebook.generated.jsonl``: a 2019 Kazakhstan interception.

A ``web_connectivity`` measurement shaped like the ooni/spec example (ts-017) whose handshake
presented the 2019-style forged chain for facebook.com, as a probe in Kazakhtelecom's network
(AS9198) would have recorded it on 2019-08-01. The chain comes from the public test kit
(``CertFactory(seed=0).forged_2019("facebook.com")``), so the file is reproducible:

    python tests/ooni/make_kz_fixture.py        # rewrite the fixture
    python tests/ooni/make_kz_fixture.py --check  # exit 1 if it differs
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from tlswatch.testing import CertFactory

FIXTURE = Path(__file__).parent / "fixtures" / "kz2019-forged-facebook.generated.jsonl"


def measurement() -> dict[str, Any]:
    chain = CertFactory(seed=0).forged_2019("facebook.com").chain
    certs = [{"data": base64.b64encode(c.public_bytes(Encoding.DER)).decode(), "format": "base64"}
             for c in chain]
    return {
        "data_format_version": "0.2.0",
        "input": "https://facebook.com/",
        "measurement_start_time": "2019-08-01 12:00:00",
        "probe_asn": "AS9198",
        "probe_cc": "KZ",
        "probe_ip": "127.0.0.1",
        "report_id": "20190801T120000Z_webconnectivity_KZ_9198_n1_tlswatchTESTfixture",
        "resolver_ip": "127.0.0.1",
        "software_name": "tlswatch-test-fixture",
        "software_version": "0",
        "test_keys": {
            "queries": [{"answers": [{"answer_type": "A", "ipv4": "31.13.72.36", "ttl": None}],
                         "engine": "system", "failure": None, "hostname": "facebook.com",
                         "query_type": "A", "resolver_address": "", "t": 0.02}],
            "tcp_connect": [{"ip": "31.13.72.36", "port": 443,
                             "status": {"failure": None, "success": True}, "t": 0.1}],
            "tls_handshakes": [{"address": "31.13.72.36:443",
                                "cipher_suite": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                                "failure": "ssl_unknown_authority", "negotiated_protocol": "",
                                "no_tls_verify": False, "peer_certificates": certs,
                                "server_name": "facebook.com", "t": 0.25,
                                "tags": ["tcptls_experiment"], "tls_version": "TLSv1.2"}],
        },
        "test_name": "web_connectivity",
        "test_version": "0.4.0",
    }


def render() -> str:
    return json.dumps(measurement(), separators=(",", ":"), sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        return 0 if FIXTURE.read_text() == text else 1
    FIXTURE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

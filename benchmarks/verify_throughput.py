"""Chain verdicts per second, with and without the verdict cache, next to a bare verify.

Fixed workload: the seeded test kit's chains (valid, 2019 forgery, random-CA forgery,
expired, wrong host, self-signed, incomplete) for 40 host names, each judged 5 times at
times inside one validity window, against the test kit's public store.
The reference is ``cryptography``'s own strict ``ServerVerifier.verify`` on the valid chains
(the cheapest possible check, with no diagnosis, facts or registry), so the ratio shows what
the full judgement costs on top of it.

    python benchmarks/verify_throughput.py            # full run; output in verify_throughput.out
    python benchmarks/verify_throughput.py --smoke    # seconds-long run used by the test suite
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder

from tlswatch.classify.chain import ChainJudge, decide
from tlswatch.testing import CertFactory, write_store_pem
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import load_store


def workload(hosts: int) -> list[tuple[list[bytes], str]]:
    f = CertFactory(seed=0)
    items: list[tuple[list[bytes], str]] = []
    for i in range(hosts):
        host = f"site{i}.example"
        for sc in (f.legitimate(host), f.forged_2019(host), f.forged_random_ca(host),
                   f.expired(host), f.wrong_host(host), f.self_signed(host),
                   f.incomplete_chain(host)):
            items.append(([c.public_bytes(Encoding.DER) for c in sc.chain], host))
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny workload (CI)")
    args = ap.parse_args()
    hosts, repeats = (2, 2) if args.smoke else (40, 5)

    f = CertFactory(seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "public.pem"
        write_store_pem(store_path, [f.public_root().cert])
        stores = [load_store(str(store_path))]
        registry = load_registry()
        items = workload(hosts)
        times = [f.now + timedelta(minutes=m) for m in range(repeats)]
        n = len(items) * len(times)

        verdicts: dict[str, int] = {}
        results = {}
        for label, cache_size in (("no cache", 0), ("cache", 4096)):
            judge = ChainJudge(stores, registry, cache_size=cache_size)
            t0 = time.perf_counter()
            for at in times:
                for ders, host in items:
                    d = decide(judge.judge(ders, host=host, at=at))
                    if cache_size == 0:
                        verdicts[d.verdict] = verdicts.get(d.verdict, 0) + 1
            results[label] = n / (time.perf_counter() - t0)
            hits = judge.hits

        # Reference: bare strict verification of the valid chains only.
        from cryptography import x509

        valid = [(x509.load_der_x509_certificate(d[0][0]),
                  [x509.load_der_x509_certificate(x) for x in d[0][1:]], d[1])
                 for d in items[::7]]
        vstore = stores[0].verification_store()
        t0 = time.perf_counter()
        m = 0
        for at in times:
            for leaf, inter, host in valid:
                PolicyBuilder().store(vstore).time(at).build_server_verifier(
                    DNSName(host)).verify(leaf, inter)
                m += 1
        bare = m / (time.perf_counter() - t0)

    print(f"workload: {len(items)} chains x {len(times)} times = {n} judgements "
          f"({', '.join(f'{k} {v}' for k, v in sorted(verdicts.items()))})")
    print(f"full judgement, no cache : {results['no cache']:9.0f} /s")
    print(f"full judgement, cache    : {results['cache']:9.0f} /s  "
          f"(x{results['cache'] / results['no cache']:.1f} vs no cache; {hits}/{n} cache hits)")
    print(f"reference: bare cryptography verify of valid chains: {bare:9.0f} /s")
    print(f"ratio full judgement (no cache) / bare verify: {results['no cache'] / bare:.2f}")


if __name__ == "__main__":
    main()

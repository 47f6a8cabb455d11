"""Regenerate the bundled seed-0 test keys: ``python tools/make_keycache.py``.

The lab's 2019 forger needs an RSA-2048 e=3 key per targeted host; deriving them in pure
Python takes ~0.2 s each, so the keys for seed 0 and the packaged target list are bundled
(test-only keys that anyone can recompute; never trust them).
"""

from __future__ import annotations

from tlswatch.lab.config import default_targets_path, load_targets
from tlswatch.testing.keys import RSA_2048, RSA_2048_E3, RSA_4096, bundle_key

FIXED_PKI = [
    # (name, spec) of the fixed test PKI in tlswatch.testing.certs
    ("kz2019-root", RSA_4096),
    ("kz2019-security", RSA_2048),
]


def main() -> None:
    for name, spec in FIXED_PKI:
        print(bundle_key(0, name, spec).name)
    for host in load_targets(default_targets_path()):
        for name in (host, "www." + host):
            print(bundle_key(0, "kz2019-host:" + name, RSA_2048_E3).name)


if __name__ == "__main__":
    main()

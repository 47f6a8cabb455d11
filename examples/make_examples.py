"""Regenerate the example chains byte for byte: ``python examples/make_examples.py``.

All are made by the seeded test kit (``tlswatch.testing``) at its fixed clock,
2019-08-01T12:00:00Z; none is a real site's certificate.
"""

from __future__ import annotations

from pathlib import Path

from tlswatch.testing import CertFactory, to_pem, write_store_pem

HERE = Path(__file__).resolve().parent


def main() -> None:
    f = CertFactory(seed=0)
    files = {
        # A faithful 2019-style forgery: leaf (e=3, no SKI/AKI/EKU/SCT) -> Security Certificate
        # -> a test root named like the real "Qaznet Trust Network" (our own key).
        "kz2019-forged-facebook.pem": f.forged_2019("facebook.com").chain,
        # The same shape, but the chain ends in the real Qaznet root certificate.
        "kz2019-real-root-facebook.pem": f.real_qaznet_root_chain("facebook.com").chain,
        # A chain from the test kit's "public" CA, valid for example.com.
        "legit-example.pem": f.legitimate("example.com").chain,
        "expired-example.pem": f.expired("example.com").chain,
    }
    for name, chain in files.items():
        (HERE / name).write_bytes(to_pem(chain))
    write_store_pem(HERE / "test-public-root.pem", [f.public_root().cert])


if __name__ == "__main__":
    main()

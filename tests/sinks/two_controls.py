"""Records of a run with two controls, made by the real probe-record code (not by hand).

``control`` is the path control, ``control_sni`` the SNI control (docs/verdicts.md "Two
controls"); chains come from the seeded certificate factory, so every record is the same on
every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tlswatch.classify.chain import ChainJudge
from tlswatch.classify.probe_record import judge_observation, probe_record
from tlswatch.model import Record, Target, Vantage
from tlswatch.probe.observation import ProbeObservation
from tlswatch.testing import CertFactory, write_store_pem
from tlswatch.x509.registry import load_registry
from tlswatch.x509.stores import load_store

F = CertFactory(seed=0)
SITE = Target(domain="facebook.com", sni="facebook.com", ip="127.0.0.1", port=443)
SNI_TARGET = Target(domain="facebook.com", sni="example.com", ip="127.0.0.1", port=443)


def _ders(chain: Sequence[x509.Certificate]) -> tuple[bytes, ...]:
    return tuple(c.public_bytes(Encoding.DER) for c in chain)


def _obs(target: Target = SITE, *, chain_der: tuple[bytes, ...] = (),
         failure: str | None = None) -> ProbeObservation:
    return ProbeObservation(target=target, started=F.now, chain_der=chain_der, failure=failure)


def write_store(path: Path) -> Path:
    """The trust store the records were judged with (``rejudge --store`` needs it)."""
    return write_store_pem(path, [F.public_root().cert])


def two_control_records(store: Path) -> list[Record]:
    """A forged chain with both controls valid, an SNI control that decides, a reset with
    the controls disagreeing, and a one-control record beside them."""
    judge = ChainJudge([load_store(str(store))], load_registry())
    legit = _ders(F.legitimate("facebook.com").chain)
    random_ca = _ders(F.forged_random_ca("facebook.com").chain)
    sni_ok = _obs(SNI_TARGET, chain_der=_ders(F.legitimate("example.com").chain))
    cases = [
        (_obs(chain_der=random_ca), _obs(chain_der=legit), sni_ok),
        (_obs(chain_der=random_ca), _obs(chain_der=random_ca), sni_ok),
        (_obs(failure="tls/reset"), _obs(chain_der=legit), _obs(SNI_TARGET, failure="tls/reset")),
        (_obs(chain_der=random_ca), _obs(chain_der=legit), None),
    ]
    out = []
    for i, (seen, control, sni) in enumerate(cases):
        rec, _ = probe_record(
            record_id=f"two-{i}", run_id="run-2c", seen=judge_observation(seen, judge),
            control=judge_observation(control, judge),
            sni_control=judge_observation(sni, judge) if sni else None,
            vantage=Vantage("kz", "vantage"))
        out.append(rec)
    return out

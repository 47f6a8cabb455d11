"""CaptureObserver with key logs: the lab's TLS 1.3 captures decrypted, their chains observed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlswatch.capture.observe import CaptureObserver, FlowObservation, Observation
from tlswatch.tls.keylog import KeyLog, load_keylog

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


def observe(name: str, keylog: KeyLog | None) -> tuple[FlowObservation, CaptureObserver]:
    out: list[Observation] = []
    obs = CaptureObserver(CAPTURES / name, out.append, keylog=keylog)
    try:
        obs.run()
    finally:
        obs.close()
    (flow,) = out
    assert isinstance(flow, FlowObservation)
    return flow, obs


@pytest.mark.parametrize(("name", "chain_len"), [
    ("clean-tls13", 2), ("clean-tls13-chacha20", 2), ("clean-tls13-aes256", 2),
    ("clean-tls13-hrr", 2), ("kz2019-intercepted-tls13", 3)])
def test_key_log_decrypts_the_chain(name: str, chain_len: int) -> None:
    flow, obs = observe(f"{name}.pcapng", load_keylog(CAPTURES / f"{name}.keylog"))
    assert flow.keylog == "decrypted" and not flow.chain_encrypted
    assert len(flow.chain_der) == chain_len and flow.handshake_complete
    assert flow.failure is None and flow.version == 0x0304
    assert obs.stats.decrypted == 1 and obs.stats.encrypted_chains == 0
    assert obs.stats.chains == 0  # (cleartext chains only)


def test_hrr_history_and_without_keys() -> None:
    flow, obs = observe("clean-tls13-hrr.pcapng", None)
    assert flow.chain_encrypted and flow.keylog is None and flow.chain_der == ()
    assert "h" in flow.history and obs.stats.encrypted_chains == 1


def test_wrong_key_log_fails_cleanly() -> None:
    flow, obs = observe("clean-tls13.pcapng", load_keylog(CAPTURES / "clean-tls13.wrong.keylog"))
    assert flow.keylog == "decrypt_failed" and "did not authenticate" in flow.keylog_detail
    assert flow.chain_encrypted and flow.chain_der == () and flow.failure is None
    assert obs.stats.decrypt_failed == 1 and obs.stats.encrypted_chains == 1


def test_a_key_log_for_other_sessions() -> None:
    flow, obs = observe("clean-tls13.pcapng", load_keylog(CAPTURES / "clean-tls13-hrr.keylog"))
    assert flow.keylog == "no_key" and flow.chain_encrypted and obs.stats.no_key == 1


def test_dsb_alone_decrypts_and_stays_with_its_capture() -> None:
    shared = KeyLog()
    flow, obs = observe("tls13-with-dsb.pcapng", shared)
    assert flow.keylog == "decrypted" and len(flow.chain_der) == 3
    assert obs.stats.key_logs == 1 and len(obs.embedded_keylog) == 1
    assert len(shared) == 0  # the DSB's secrets applied to that capture only
    # ... and the same packets without it stay encrypted.
    flow, _ = observe("kz2019-intercepted-tls13.pcapng", shared)
    assert flow.chain_encrypted and flow.keylog is None


def test_same_decrypted_chain_as_the_dsb() -> None:
    a, _ = observe("tls13-with-dsb.pcapng", None)
    b, _ = observe("kz2019-intercepted-tls13.pcapng",
                   load_keylog(CAPTURES / "kz2019-intercepted-tls13.keylog"))
    assert a.chain_der == b.chain_der


def test_tls12_client_random_is_recorded() -> None:
    out: list[Observation] = []
    obs = CaptureObserver(CAPTURES / "clean-tls12.pcap", out.append,
                          keylog=load_keylog(CAPTURES / "clean-tls12.keylog"))
    obs.run()
    obs.close()
    (flow,) = out
    assert isinstance(flow, FlowObservation)
    assert flow.keylog == "tls12_master_secret" and len(flow.chain_der) == 2
    assert obs.stats.tls12_keys == 1 and obs.stats.chains == 1

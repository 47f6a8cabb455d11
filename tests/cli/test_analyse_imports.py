"""``tlswatch analyse`` starts without the probe stack: no asyncio, dnspython, pyOpenSSL, QUIC
or TLS 1.3 decryption is imported until a capture needs it (a fresh interpreter each time;
what the interpreter itself loaded before tlswatch does not count)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
STORE = str(CAPTURES / "lab-public-root.pem")

#: Never needed to judge a capture of TLS over TCP (DNS answers load dnspython's parser only).
PROBE_STACK = ("asyncio", "OpenSSL", "dns.asyncquery", "tlswatch.probe.dns",
               "tlswatch.probe.http_fetch", "tlswatch.probe.measure", "tlswatch.probe.tls_client",
               "tlswatch.probe.tcp", "tlswatch.probe.campaign", "tlswatch.lab", "tlswatch.report")
#: Needed only for QUIC packets, key logs and --resume.
ON_DEMAND = ("tlswatch.quic", "tlswatch.tls.decrypt", "tlswatch.sinks.readers")
#: dnspython's heavy modules, needed only when a capture holds DNS answers.
DNSPYTHON = ("dns.message", "dns.name", "dns.edns", "dns.rdata")


def _new_modules(code: str) -> set[str]:
    """Modules that ``code`` imported in a fresh interpreter."""
    script = ("import json, sys\n_before = set(sys.modules)\n" + code +
              "\nprint(json.dumps(sorted(set(sys.modules) - _before)))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_importing_the_command_loads_no_probe_quic_or_dnspython() -> None:
    modules = _new_modules("import tlswatch.cli.analyse")
    assert "tlswatch.cli.analyse" in modules  # (the check itself works)
    assert _loaded(modules, PROBE_STACK + ON_DEMAND + DNSPYTHON) == []


def test_the_whole_cli_entry_point_loads_no_more(tmp_path: Path) -> None:
    modules = _new_modules("import sys\nfrom tlswatch.cli.main import cli\n"
                           "cli.get_command(None, 'analyse')")  # (what `tlswatch analyse` loads)
    assert "tlswatch.cli.analyse" in modules
    assert _loaded(modules, PROBE_STACK + ON_DEMAND + DNSPYTHON) == []


def test_analysing_tls_and_blockpage_captures_loads_no_probe_stack(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    captures = [str(CAPTURES / n) for n in ("clean-tls12.pcap", "kz2019-intercepted-tls12.pcap",
                                            "blockpage-on-443.pcap", "injected-alert.pcap")]
    modules = _new_modules(
        "from tlswatch.cli.analyse import analyse\n"
        f"analyse.main({[*captures, '--store', STORE, '-o', str(out)]!r}, "
        "standalone_mode=False)")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    # (they ran: chains judged, a non-TLS answer's title read)
    assert {r.get("outcome") for r in lines} >= {"cert/valid", "tls/not_tls"}
    assert any((r.get("http") or {}).get("title") == "Access restricted" for r in lines)
    assert "tlswatch.x509.validate" in modules
    assert _loaded(modules, PROBE_STACK + ON_DEMAND + DNSPYTHON) == []

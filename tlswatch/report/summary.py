"""The terminal summary of a :class:`~tlswatch.report.stats.ReportStats`.

Every string that came from a record (names, issuers, outcomes with peer details) goes
through :func:`~tlswatch.textsafe.terminal_safe`: a certificate subject can hold escape
sequences that would rewrite the user's terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tlswatch.report.stats import VERDICTS, ReportStats
from tlswatch.textsafe import terminal_safe

__all__ = ["render_summary"]

MAX_ROWS = 60


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if t else "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render_summary(stats: ReportStats, *, max_rows: int = MAX_ROWS) -> str:
    s = terminal_safe
    out: list[str] = []
    span = (f", {_when(stats.first)} .. {_when(stats.last)} UTC" if stats.first else "")
    counts = ", ".join(f"{stats.verdicts[v]} {v}" for v in VERDICTS if stats.verdicts[v])
    out.append(f"{stats.total} records from {len(stats.inputs)} file(s){span}")
    out.append(f"verdicts: {counts or 'none'}")

    out += ["", "Verdicts per domain and vantage"]
    cells = sorted(stats.cells.items(),
                   key=lambda kv: (-(kv[1]["intercepted"] + kv[1]["blocked"]),
                                   -(kv[1]["anomaly"] + kv[1]["down"]), kv[0]))
    rows = [[s(d, 60), s(v, 30), *(str(c[x]) if c[x] else "." for x in VERDICTS)]
            for (d, v), c in cells[:max_rows]]
    out += ["  " + r for r in _table(["domain", "vantage", *VERDICTS], rows)] if rows \
        else ["  (no records)"]
    if len(cells) > max_rows:
        out.append(f"  … {len(cells) - max_rows} more rows (--html shows all)")

    out += ["", "Interception CAs seen"]
    cas = stats.sorted_cas()
    if not cas:
        out.append("  none")
    for ca in cas[:max_rows]:
        name = (f"{s(ca.label, 80)} (incident {s(ca.incident or '-', 60)})" if ca.label
                else f"untrusted issuer {s(ca.issuer, 80)}")
        ev = ", ".join(f"{s(k, 40)} {n}" for k, n in ca.evidence.most_common())
        domains = ", ".join(s(d, 60) for d in ca.domains[:8])
        more = len(ca.domains) - 8 + ca.more_domains
        out.append(f"  {name}: {ca.count} records, first {_when(ca.first)}, "
                   f"last {_when(ca.last)} UTC")
        out.append(f"    evidence: {ev}; domains: {domains}" + (f" (+{more})" if more > 0 else ""))

    out += ["", "Blocking methods (outcome classes of blocked records)"]
    if not stats.blocking:
        out.append("  none")
    for domain, methods in sorted(stats.blocking.items(), key=lambda kv: (-kv[1].total(),
                                                                          kv[0]))[:max_rows]:
        out.append(f"  {s(domain, 60)}: " + ", ".join(
            f"{s(m, 40)} {n}" for m, n in methods.most_common()))

    if stats.traces_total:
        out += ["", "Middlebox traces (tlswatch trace)"]
        rows = [[s(t.sni, 60), s(t.ip, 40), s(t.kind, 14),
                 str(t.hop) if t.hop is not None else "-", s(t.router or "-", 40),
                 str(t.server_hop) if t.server_hop is not None else "-"]
                for t in stats.traces[:max_rows]]
        out += ["  " + r for r in _table(["sni", "target", "kind", "hop", "router",
                                          "server hop"], rows)]
        if stats.traces_total > len(rows):
            out.append(f"  … {stats.traces_total - len(rows)} more traces")

    out += ["", "Anomalies"]
    if stats.anomaly_outcomes:
        out.append("  anomaly verdicts: " + ", ".join(
            f"{s(k, 60)} {n}" for k, n in stats.anomaly_outcomes.most_common(12)))
    for note, n in stats.anomaly_notes.most_common(8):
        out.append(f"  {n} x {s(note, 120)}")
    bad = sum(i.bad_lines for i in stats.inputs)
    for i in stats.inputs:
        if i.bad_lines:
            out.append(f"  {s(i.path, 120)}: {i.bad_lines} unusable line(s) skipped"
                       + (f" ({s('; '.join(i.bad_examples), 160)})" if i.bad_examples else ""))
    if not stats.anomaly_outcomes and not stats.anomaly_notes and not bad:
        out.append("  none")
    return "\n".join(out) + "\n"

"""A self-contained HTML report: inline CSS, inline SVG charts, no script, no network.

Opening the file must not reach anything (a report about censorship may be read where
fetching a CDN is itself a signal), and nothing from a peer may run in it. So: every value
taken from records is passed through :func:`~tlswatch.report.charts.esc`, the page has no
``<script>``, no external URL and no link built from record data, and a Content Security
Policy (``default-src 'none'``) makes the browser refuse any request or script even if an
escaping bug slipped through.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from tlswatch import __version__
from tlswatch.classify.rules import RULES_VERSION
from tlswatch.report.charts import VERDICT_COLORS, esc, issuer_chart, timeline_chart, verdict_chart
from tlswatch.report.stats import VERDICTS, Finding, ReportStats

__all__ = ["CSP", "MAX_CHART_DOMAINS", "render_html"]

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
       "form-action 'none'")
MAX_CHART_DOMAINS = 300
OPEN_FINDINGS = 3

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:16px 24px;
color:#212121;background:#fff;overflow-wrap:anywhere}
h1{font-size:24px;margin:8px 0}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0;font-size:13px;max-width:100%}
th,td{border:1px solid #e0e0e0;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
.pill{display:inline-block;border-radius:10px;padding:1px 9px;margin:2px;color:#fff;
font-weight:600;font-size:12px}
.mono{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
details{border:1px solid #e0e0e0;border-radius:4px;margin:6px 0;padding:4px 10px}
summary{cursor:pointer}.muted{color:#666}.chart{max-width:100%;height:auto}
ul{margin:4px 0;padding-left:20px}
"""


def _pill(verdict: str, text: str | None = None) -> str:
    color = VERDICT_COLORS.get(verdict, "#607d8b")
    return f'<span class="pill" style="background:{color}">{esc(text or verdict)}</span>'


def _when(t: datetime | None) -> str:
    return esc(t.strftime("%Y-%m-%d %H:%M:%S")) if t else "-"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "") -> str:
    """A table of already-escaped cells (headers are ours and escaped here)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in r) + "</tr>" for r in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _td(value: object, *, num: bool = False, mono: bool = False) -> str:
    cls = "n" if num else "mono" if mono else ""
    text = "-" if value is None or value == "" else value
    return f'<td class="{cls}">{esc(text)}</td>' if cls else f"<td>{esc(text)}</td>"


def _list(items: Iterable[object]) -> str:
    lis = "".join(f"<li>{esc(i)}</li>" for i in items)
    return f"<ul>{lis}</ul>" if lis else '<p class="muted">none</p>'


def _control(title: str, ctl: dict[str, Any]) -> str:
    subj = "; ".join(str(s) for s in ctl.get("chain") or () if s)
    return (f"<p><b>{esc(title)}</b> ({esc(ctl.get('kind') or '-')}"
            + (f", SNI {esc(ctl['sni'])}" if ctl.get("sni") else "")
            + f"): {esc(ctl.get('outcome') or '-')}"
            + (f"; chain: {esc(subj)}" if subj else "") + "</p>")


def _finding(f: Finding, *, open_: bool = False) -> str:
    e: dict[str, Any] = f.example
    conf = e.get("confidence")
    parts = [f"<details{' open' if open_ else ''}><summary>{_pill(f.verdict)} "
             f"<b>{esc(f.domain)}</b> "
             f'<span class="muted">from</span> {esc(f.vantage)} · '
             f'<span class="mono">{esc(f.outcome)}</span> · {f.count} record(s), '
             f"{_when(f.first)} .. {_when(f.last)} UTC</summary>"]
    parts.append(f"<p>rule <b>{esc(e.get('rule_id') or '-')}</b>"
                 + (f", confidence {float(conf):.2f}" if isinstance(conf, int | float) else "")
                 + f", source {esc(e.get('source') or '-')}, example record "
                 f'<span class="mono">{esc(e.get("id") or "-")}</span> at '
                 f"{esc(e.get('time') or '-')}</p>")
    tgt = e.get("target") or {}
    parts.append(f"<p>target: domain {esc(tgt.get('domain') or '-')}, SNI "
                 f"{esc(tgt.get('sni') or '-')}, IP {esc(tgt.get('ip') or '-')}"
                 + (f"; TLS failure {esc(e['tls_failure'])}" if e.get("tls_failure") else "")
                 + "</p>")
    parts.append("<p><b>Reasons</b></p>" + _list(e.get("reasons") or ()))
    icp = e.get("interception")
    if icp:
        parts.append(f"<p><b>Interception</b>: {esc(icp.get('label') or 'unnamed')} (incident "
                     f"{esc(icp.get('incident') or '-')}), evidence "
                     f"{esc(icp.get('evidence') or '-')}"
                     + (f"; forgery traits: {esc(', '.join(icp.get('pattern') or ()))}"
                        if icp.get("pattern") else "") + "</p>")
    chain = e.get("chain") or []
    if chain:
        parts.append("<p><b>Chain</b> (as presented, leaf first)</p>" + _table(
            ["#", "subject", "issuer", "valid from", "valid until", "sha256"],
            ([_td(i, num=True), _td(c.get("subject")), _td(c.get("issuer")),
              _td(c.get("not_before")), _td(c.get("not_after")),
              _td(c.get("sha256"), mono=True)] for i, c in enumerate(chain))))
    validation = e.get("validation") or []
    if validation:
        parts.append("<p><b>Validation per store</b></p>" + _table(
            ["store", "version", "result", "anchor"],
            ([_td(v.get("store")), _td(v.get("store_version")),
              _td("trusted" if v.get("trusted") else (v.get("error") or "untrusted")),
              _td(v.get("anchor"))] for v in validation)))
    ctl = e.get("control")
    if ctl:
        parts.append(_control("Control", ctl))
    else:
        parts.append('<p><b>Control</b>: <span class="muted">none measured</span></p>')
    if e.get("control_sni"):  # the second control of a two-control run
        parts.append(_control("SNI control", e["control_sni"]))
    if e.get("anomalies"):
        parts.append("<p><b>Anomalies</b></p>" + _list(e["anomalies"]))
    parts.append("</details>")
    return "".join(parts)


def render_html(stats: ReportStats, *, title: str = "tlswatch report",
                generated: datetime | None = None) -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    generated = generated or datetime.now(UTC)
    domains = stats.sorted_domains()
    shown = domains[:MAX_CHART_DOMAINS]
    totals = " ".join(_pill(v, f"{stats.verdicts[v]} {v}") for v in VERDICTS
                      if stats.verdicts[v]) or '<span class="muted">no records</span>'
    span = (f"{_when(stats.first)} .. {_when(stats.last)} UTC" if stats.first
            else "no times")
    h: list[str] = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="muted">{stats.total} records from {len(stats.inputs)} file(s), {span}. '
        f"Generated {_when(generated)} UTC by tlswatch {esc(__version__)} (rules "
        f"{esc(RULES_VERSION)}; verdicts as recorded).</p>",
        f'<p id="totals">{totals}</p>',
        '<h2 id="chart-verdicts">Verdicts per domain</h2>',
        verdict_chart(shown),
    ]
    if len(domains) > len(shown):
        h.append(f'<p class="muted">{len(domains) - len(shown)} more domains: see the table '
                 "below.</p>")
    h += ['<h2 id="chart-timeline">Interception over time</h2>', timeline_chart(stats.days),
          '<h2 id="chart-issuers">Issuers seen</h2>',
          '<p class="muted">Issuer of the presented leaf certificate, per record.</p>',
          issuer_chart(stats.issuers)]

    h.append('<h2 id="cas">Interception CAs seen</h2>')
    cas = stats.sorted_cas()
    h.append(_table(
        ["CA", "incident", "evidence", "records", "first seen (UTC)", "last seen (UTC)",
         "domains"],
        ([_td(c.label or f"untrusted issuer: {c.issuer or '-'}"), _td(c.incident),
          _td(", ".join(f"{k} {n}" for k, n in c.evidence.most_common())),
          _td(c.count, num=True), f"<td>{_when(c.first)}</td>", f"<td>{_when(c.last)}</td>",
          _td(", ".join(c.domains) + (f" (+{c.more_domains})" if c.more_domains else ""))]
         for c in cas)) if cas else '<p class="muted">none</p>')

    h.append('<h2 id="blocking">Blocking methods</h2>')
    h.append(_table(["domain", "outcome classes of blocked records"],
                    ([_td(d), _td(", ".join(f"{m} {n}" for m, n in c.most_common()))]
                     for d, c in sorted(stats.blocking.items())))
             if stats.blocking else '<p class="muted">none</p>')

    h.append('<h2 id="matrix">Verdicts per domain and vantage</h2>')
    cells = sorted(stats.cells.items(), key=lambda kv: kv[0])
    h.append(_table(["domain", "vantage", *VERDICTS],
                    ([_td(d), _td(v), *(_td(c[x] or "", num=True) for x in VERDICTS)]
                     for (d, v), c in cells)) if cells else '<p class="muted">none</p>')

    h.append('<h2 id="findings">Findings and evidence</h2>')
    findings = stats.sorted_findings()
    h.append('<p class="muted">One entry per domain, vantage and outcome that is not ok; '
             "the evidence is the first such record.</p>")
    # The first few interference findings open, so a printed page shows evidence.
    h.extend(_finding(f, open_=i < OPEN_FINDINGS and f.verdict in ("intercepted", "blocked"))
             for i, f in enumerate(findings))
    if not findings:
        h.append('<p class="muted">none</p>')
    if stats.findings_dropped:
        h.append(f'<p class="muted">{stats.findings_dropped} more records of further '
                 "findings are not listed.</p>")

    if stats.traces_total:
        h.append('<h2 id="traces">Middlebox traces</h2>')
        h.append(_table(["SNI", "target", "kind", "located hop", "router", "server hop",
                         "evidence"],
                        ([_td(t.sni, mono=True), _td(t.ip, mono=True), _td(t.kind),
                          _td(t.hop, num=True), _td(t.router, mono=True),
                          _td(t.server_hop, num=True), _td(t.evidence)]
                         for t in stats.traces)))
        if stats.traces_total > len(stats.traces):
            h.append(f'<p class="muted">{stats.traces_total - len(stats.traces)} more traces '
                     "are not listed.</p>")

    h.append('<h2 id="anomalies">Anomalies</h2>')
    h.append("<p>Anomaly verdicts by outcome class:</p>" + _list(
        f"{k}: {n}" for k, n in stats.anomaly_outcomes.most_common(20)))
    h.append("<p>Notes recorded with the records:</p>" + _list(
        f"{n} × {k}" for k, n in stats.anomaly_notes.most_common(20)))

    h.append('<h2 id="inputs">Inputs</h2>')
    h.append(_table(["file", "records", "run records", "unusable lines", "examples"],
                    ([_td(i.path), _td(i.records, num=True), _td(i.runs, num=True),
                      _td(i.bad_lines, num=True), _td("; ".join(i.bad_examples))]
                     for i in stats.inputs)))
    h.append("</body></html>\n")
    return "\n".join(h)

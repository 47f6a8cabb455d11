"""Inline SVG charts, generated in Python: the HTML report needs no script and no network.

Every label comes from records, so from peers (domain names, issuer names): each goes
through :func:`esc` (``html.escape`` with quotes) whether it lands in SVG text or in an
attribute. Each chart is one ``<svg>`` element with a ``data-chart`` attribute; in the
verdict chart every domain is exactly one ``<g class="mark">`` (tests count them).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

__all__ = ["VERDICT_COLORS", "esc", "issuer_chart", "timeline_chart", "verdict_chart"]

VERDICT_COLORS: dict[str, str] = {
    "intercepted": "#c62828", "blocked": "#ef6c00", "anomaly": "#f9a825", "down": "#78909c",
    "inconclusive": "#b0bec5", "ok": "#2e7d32",
}
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def esc(text: object) -> str:
    """Escape for HTML/SVG text and (double- or single-quoted) attributes."""
    return html.escape(str(text), quote=True)


def _label(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _empty(kind: str, message: str) -> str:
    return (f'<svg class="chart" data-chart="{esc(kind)}" role="img" width="600" height="40" '
            f'viewBox="0 0 600 40" xmlns="http://www.w3.org/2000/svg"><text x="8" y="24" '
            f'{_FONT} fill="#555">{esc(message)}</text></svg>')


def verdict_chart(domains: Sequence[tuple[str, Counter[str]]], *, width: int = 900) -> str:
    """One horizontal stacked bar (one mark) per domain: its records by verdict."""
    if not domains:
        return _empty("verdicts", "no records")
    row, top, label_w = 20, 28, 250
    bar_w = width - label_w - 60
    height = top + row * len(domains) + 8
    biggest = max(c.total() for _, c in domains) or 1
    parts = [f'<svg class="chart" data-chart="verdicts" role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg">',
             "<title>Verdicts per domain</title>"]
    x = label_w
    for verdict, color in VERDICT_COLORS.items():  # legend
        parts.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{color}"/>'
                     f'<text x="{x + 14}" y="15" {_FONT}>{esc(verdict)}</text>')
        x += 22 + 7 * len(verdict)
    for i, (name, counts) in enumerate(domains):
        y = top + i * row
        total = counts.total()
        parts.append(f'<g class="mark" data-domain="{esc(name)}" data-total="{total}">')
        parts.append(f"<title>{esc(name)}: " + esc(", ".join(
            f"{counts[v]} {v}" for v in VERDICT_COLORS if counts[v])) + "</title>")
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" {_FONT}>'
                     f"{esc(_label(name))}</text>")
        x0 = float(label_w)
        for verdict, color in VERDICT_COLORS.items():
            n = counts[verdict]
            if not n:
                continue
            w = bar_w * n / biggest
            parts.append(f'<rect class="seg" data-verdict="{verdict}" x="{x0:.1f}" '
                         f'y="{y + 2}" width="{max(w, 1.0):.1f}" height="{row - 6}" '
                         f'fill="{color}"/>')
            x0 += w
        parts.append(f'<text x="{x0 + 4:.1f}" y="{y + 13}" {_FONT} fill="#333">{total}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _buckets(days: Mapping[date, Sequence[int]]) -> tuple[str, list[tuple[date, int, int]]]:
    """Group per-day [records, intercepted] into at most ~120 bars: days, weeks or months."""
    first, last = min(days), max(days)
    span = (last - first).days
    unit = "day" if span <= 120 else "week" if span <= 7 * 120 else "month"

    def key(d: date) -> date:
        if unit == "day":
            return d
        if unit == "week":
            return d - timedelta(days=d.weekday())
        return d.replace(day=1)

    acc: dict[date, list[int]] = {}
    for d, (n, bad) in days.items():
        a = acc.setdefault(key(d), [0, 0])
        a[0] += n
        a[1] += bad
    # Empty buckets too: the x axis is time, so gaps must show as gaps.
    out: list[tuple[date, int, int]] = []
    k = key(first)
    while k <= last:
        n, bad = acc.get(k, (0, 0))
        out.append((k, n, bad))
        k = (k + timedelta(days=1 if unit == "day" else 7) if unit != "month"
             else (k.replace(year=k.year + 1, month=1) if k.month == 12
                   else k.replace(month=k.month + 1)))
    return unit, out


def timeline_chart(days: Mapping[date, Sequence[int]], *, width: int = 900,
                   height: int = 220) -> str:
    """Records (grey) and intercepted records (red) per day, week or month."""
    if not days:
        return _empty("timeline", "no record has a time")
    unit, buckets = _buckets(days)
    left, bottom, top = 48, 36, 16
    plot_w, plot_h = width - left - 12, height - bottom - top
    peak = max(n for _, n, _ in buckets) or 1
    slot = plot_w / len(buckets)
    bar = max(min(slot * 0.8, 40.0), 1.0)
    parts = [f'<svg class="chart" data-chart="timeline" data-unit="{unit}" role="img" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>Interception over time (per {unit})'
             "</title>",
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 12}" y2="{top + plot_h}" '
             'stroke="#999"/>',
             f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" {_FONT}>{peak}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" {_FONT}>0</text>']
    step = max(1, len(buckets) // 8)
    for i, (start, n, bad) in enumerate(buckets):
        x = left + i * slot + (slot - bar) / 2
        h_all = plot_h * n / peak
        h_bad = plot_h * bad / peak
        label = start.isoformat() if unit != "month" else start.strftime("%Y-%m")
        parts.append(f'<g class="bucket" data-start="{label}" data-records="{n}" '
                     f'data-intercepted="{bad}"><title>{label}: {bad} intercepted of {n}'
                     "</title>"
                     f'<rect x="{x:.1f}" y="{top + plot_h - h_all:.1f}" width="{bar:.1f}" '
                     f'height="{h_all:.1f}" fill="#cfd8dc"/>'
                     f'<rect x="{x:.1f}" y="{top + plot_h - h_bad:.1f}" width="{bar:.1f}" '
                     f'height="{h_bad:.1f}" fill="{VERDICT_COLORS["intercepted"]}"/></g>')
        if i % step == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - 14}" text-anchor="middle" '
                         f'{_FONT}>{label}</text>')
    parts.append(f'<rect x="{width - 260}" y="4" width="10" height="10" fill="#cfd8dc"/>'
                 f'<text x="{width - 246}" y="13" {_FONT}>records</text>'
                 f'<rect x="{width - 180}" y="4" width="10" height="10" '
                 f'fill="{VERDICT_COLORS["intercepted"]}"/>'
                 f'<text x="{width - 166}" y="13" {_FONT}>intercepted</text></svg>')
    return "".join(parts)


def issuer_chart(issuers: Counter[str], *, top_n: int = 15, width: int = 900) -> str:
    """The issuers of presented leaf certificates, most common first (the rest summed)."""
    if not issuers:
        return _empty("issuers", "no certificate chains in the input")
    top = issuers.most_common(top_n)
    rest = issuers.total() - sum(n for _, n in top)
    if rest:
        top.append(("(all others)", rest))
    row, label_w = 20, 300
    bar_w = width - label_w - 60
    height = 8 + row * len(top)
    peak = max(n for _, n in top) or 1
    parts = [f'<svg class="chart" data-chart="issuers" role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" '
             'xmlns="http://www.w3.org/2000/svg"><title>Issuers of the presented leaf '
             "certificates</title>"]
    for i, (name, n) in enumerate(top):
        y = 4 + i * row
        w = max(bar_w * n / peak, 1.0)
        parts.append(f'<g class="issuer" data-issuer="{esc(name)}"><title>{esc(name)}: {n}'
                     f'</title><text x="{label_w - 6}" y="{y + 13}" text-anchor="end" {_FONT}>'
                     f'{esc(_label(name, 40))}</text><rect x="{label_w}" y="{y + 2}" '
                     f'width="{w:.1f}" height="{row - 6}" fill="#5c6bc0"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" {_FONT}>{n}</text></g>')
    parts.append("</svg>")
    return "".join(parts)

"""What a campaign shows on stderr: a live status line (terminals only), -v lines, a summary.

Records go to stdout or a file; everything here goes to stderr, so piping the records
stays clean. The live line is a plain ``\\r``-rewritten line (no extra dependency), at most
a few redraws per second. Peer-supplied text (outcome details such as an issuer's CN) goes
through :func:`~tlswatch.textsafe.terminal_safe`.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from typing import TYPE_CHECKING, TextIO

from tlswatch.failures import Verdict
from tlswatch.model import Record
from tlswatch.textsafe import terminal_safe

if TYPE_CHECKING:  # (the probe stack is not loaded by commands that only read)
    from tlswatch.probe.campaign import Summary

__all__ = ["Progress", "summary_table", "verbose_line"]

_ORDER = [v.value for v in Verdict]


def verbose_line(rec: Record) -> str:
    """One line per measurement: verdict, outcome, target, destination, attempts, time."""
    t = rec.target
    where = "-" if t.ip is None else (f"[{t.ip}]" if ":" in t.ip else t.ip) + f":{t.port}"
    att = f" attempts {rec.attempts.agreeing}/{rec.attempts.count}" if rec.attempts else ""
    via = f" via {terminal_safe(rec.vantage.name, 40)}" if rec.vantage.kind != "local" else ""
    ctl = f" control {rec.control.kind}: {terminal_safe(rec.control.outcome, 80)}" \
        if rec.control else ""
    return (f"{rec.verdict:<12} {terminal_safe(rec.outcome, 90)}  {terminal_safe(t.domain, 80)}"
            f" sni={terminal_safe(t.sni, 80)} {where}{via}{att}{ctl}")


class Progress:
    """Counts by verdict, rate and ETA on one rewritten line when ``live``."""

    def __init__(self, stream: TextIO, *, live: bool, verbose: bool = False,
                 total: int | None = None, interval: float = 0.2) -> None:
        self.stream = stream
        self.live = live
        self.verbose = verbose
        self.total = total
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self.done = 0
        self.t0 = time.monotonic()
        self._last_draw = 0.0
        self._shown = False

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self._shown = False

    def message(self, text: str) -> None:
        """Print one line (an input problem, an error) without breaking the status line."""
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()
        self._draw(force=True)

    def line(self, rec: Record) -> str:
        """The -v line of one record (commands with other records override it)."""
        return verbose_line(rec)

    def record(self, rec: Record) -> None:
        self.done += 1
        self.counts[rec.verdict] += 1
        if self.verbose:
            self.message(self.line(rec))
        else:
            self._draw()

    def status(self) -> str:
        elapsed = max(1e-9, time.monotonic() - self.t0)
        rate = self.done / elapsed
        parts = [f"{self.done}" + (f"/{self.total}" if self.total else "")]
        parts += [f"{v} {self.counts[v]}" for v in _ORDER if self.counts[v]]
        parts.append(f"{rate:.1f}/s")
        if self.total and rate > 0 and self.done < self.total:
            left = int((self.total - self.done) / rate)
            parts.append(f"ETA {left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}")
        return "  ".join(parts)

    def _draw(self, force: bool = False) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r\x1b[K" + self.status()[:width])
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        self._clear()
        self.stream.flush()


def summary_table(summary: Summary, *, top: int = 10, bad_lines: int = 0) -> str:
    """Verdict × count, the most common outcomes (``stage/class``) and the totals."""
    lines = ["verdict        records"]
    for v in _ORDER:
        if summary.verdicts[v]:
            lines.append(f"  {v:<12} {summary.verdicts[v]:>7}")
    if summary.outcomes:
        lines.append(f"outcome (top {top})")
        for name, n in summary.outcomes.most_common(top):
            lines.append(f"  {terminal_safe(name, 40):<28} {n:>7}")
    lines.append(
        f"{summary.records} records in {summary.elapsed_s:.2f} s ({summary.rate:.1f}/s), "
        f"{summary.measurements} measurements; already done {summary.skipped}; "
        f"retried {summary.retried}; bad input lines {bad_lines}; internal errors "
        f"{summary.errors}")
    return "\n".join(lines)

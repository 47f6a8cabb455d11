"""Reports for people: a terminal summary and a self-contained HTML page with charts.

:class:`ReportStats` aggregates a stream of ``tlswatch/1`` records in bounded memory;
:func:`read_into` streams a results file into it; :func:`render_summary` and
:func:`render_html` render the aggregates.
"""

from tlswatch.report.html import render_html
from tlswatch.report.inputs import ReportInputError, read_into
from tlswatch.report.stats import CaSeen, Finding, InputStats, ReportStats
from tlswatch.report.summary import render_summary

__all__ = [
    "CaSeen",
    "Finding",
    "InputStats",
    "ReportInputError",
    "ReportStats",
    "read_into",
    "render_html",
    "render_summary",
]

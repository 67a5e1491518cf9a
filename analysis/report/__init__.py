"""``shadow report``: the HTML page that renders an analysis (``page``), its plotly charts
(``charts``), its HTML pieces (``html``) and its stylesheet (``style``)."""

from __future__ import annotations

from analysis.report.page import build_report, write_report

__all__ = ["build_report", "write_report"]

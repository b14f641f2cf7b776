"""Scaling reports: a results directory in, the paper's figures and every fitted number out.

    write_report("results/quickstart")   # -> results/quickstart/report/index.html

writes, into the output directory:

    index.html        self-contained (figures embedded as data URIs, no scripts): opens offline
    report.md         the same report in Markdown, linking figures/<name>.png
    figures/          every figure as PNG and SVG
    fits.json         every fitted number and interval, per section, with skip reasons

Rendering only: the numbers come from `scalegrid.analysis` (see `sections.py` for which function
feeds which section); nothing is fitted here.
"""

from scalegrid.report.build import write_report

__all__ = ["write_report"]

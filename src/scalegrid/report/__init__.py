"""Scaling reports: a results directory in, the paper's figures and every fitted number out.

    write_report("results/quickstart")   # -> results/quickstart/report/index.html
    report_of("s3://bucket/quickstart")  # any results store: drawn from a local copy, uploaded

writes, into the output directory:

    index.html        self-contained (figures embedded as data URIs, no scripts): opens offline
    report.md         the same report in Markdown, linking figures/<name>.png
    figures/          every figure as PNG and SVG
    fits.json         every fitted number and interval, per section, with skip reasons

Rendering only: the numbers come from `scalegrid.analysis` (see `sections/__init__.py` for which
function feeds which section); nothing is fitted here.
"""

from scalegrid.report.build import report_of, write_report

__all__ = ["report_of", "write_report"]

"""Scaling reports: a results directory in, the paper's figures and every fitted number out.

    write_report("results/quickstart")   # -> results/quickstart/report/index.html

writes, into the output directory:

    index.html        self-contained (figures embedded as data URIs, no scripts): opens offline
    report.md         the same report in Markdown, linking figures/<name>.png
    figures/          every figure as PNG and SVG
    fits.json         every fitted number and interval, per section, with skip reasons

Rendering only: the numbers come from `scalegrid.analysis` (see `sections/__init__.py` for which
function feeds which section); nothing is fitted here.
"""

from __future__ import annotations

from pathlib import Path


def write_report(results_dir: str | Path, out_dir: str | Path | None = None, **options) -> Path:
    """Write the report of `results_dir` (default out_dir: RESULTS/report); returns index.html.
    Options: bootstrap=1000, seed=0, workers, snapshot (see `build.write_report`)."""
    from scalegrid.report.build import write_report as build  # matplotlib loads only here

    return build(results_dir, out_dir, **options)


__all__ = ["write_report"]

"""Fixtures: results directories written through the real store, and one full report of the paper
grid shared by the tests that only read it (a report of ~1,300 runs takes seconds)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from synthetic_results import Written, write_paper_grid


@dataclass
class Report:
    results: Path
    out: Path
    index: Path
    written: Written

    @property
    def fits(self) -> dict:
        return json.loads((self.out / "fits.json").read_text())

    @property
    def markdown(self) -> str:
        return (self.out / "report.md").read_text()

    @property
    def html(self) -> str:
        return self.index.read_text()


@pytest.fixture(scope="session")
def paper_report(tmp_path_factory) -> Report:
    """The paper grid (4 sizes x 4 budgets x epochs x wd x lr, ensembles, students, curves, each
    (size, budget)'s search, seeds/000's diagnostics, memorisation and adaptive runs) with 2 FAILED trials, and its report with 1,000 bootstrap resamples per fit."""
    from scalegrid.report import write_report

    root = tmp_path_factory.mktemp("paper")
    results = root / "results"
    written = write_paper_grid(results, n_failed=2, search=True, signals=True)
    index = write_report(results)
    return Report(results=results, out=results / "report", index=index, written=written)


SMALL = dict(
    sizes=(150e6, 300e6, 600e6, 1.4e9), budgets=(200e6, 400e6, 800e6, 1.6e9), epochs=(1, 4), weight_decays=(0.1, 0.8),
    lrs=(3e-3,), members=(), distill=False, curves=0,
)


@pytest.fixture
def small_results(tmp_path) -> Path:
    """64 training runs (4 sizes x 4 budgets, the fewest a law in parameters or data needs, x 2 epochs x 2
    weight decays): quick to report."""
    results = tmp_path / "results"
    write_paper_grid(results, **SMALL)
    return results

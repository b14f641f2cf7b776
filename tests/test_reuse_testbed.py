"""The multi-epoch testbed shows "larger datasets can be repeated more" (seeds/003), end to end.

The shipped sweep (sweeps/linreg-reuse.yaml: 13 lrs per N, 8 seeds, K up to 64) without its largest
N (16,384 alone is 75% of its compute; `benchmarks/bench_reuse.py` runs it whole) goes through
`scalegrid run` on a real local Ray, `scalegrid fit reuse --json` and the report. The numbers
asserted are the issue's; the exact one-pass reference makes E(1, N) ~ 1 a check, not a fit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from scalegrid.cli import main


SWEEP = Path(__file__).parents[1] / "sweeps" / "linreg-reuse.yaml"
LARGEST_TESTED = 4096


@pytest.fixture(scope="module")
def testbed(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("testbed")
    spec = yaml.safe_load(SWEEP.read_text())
    spec["include"] = [point for point in spec["include"] if point["unique_tokens"] <= LARGEST_TESTED]
    spec["results"] = str(root / "results")
    path = root / "linreg-reuse.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["run", str(path), "--no-report"]) == 0
    fit = subprocess.run([sys.executable, "-m", "scalegrid.cli", "fit", "reuse", spec["results"], "--json"],
                         capture_output=True, text=True, check=True)
    return root / "results", json.loads(fit.stdout)


def reuse(doc: dict) -> pd.DataFrame:
    """E(K, N) as a [N, K] frame."""
    return pd.DataFrame(doc["table"]).pivot(index="unique_tokens", columns="epochs", values="effective_reuse")


def test_fit_reuse_prints_the_table_beside_the_fits(testbed):
    _, doc = testbed
    table = pd.DataFrame(doc["table"])
    assert {"unique_tokens", "epochs", "effective_reuse", "effective_reuse_lo", "effective_reuse_hi", "lr"} <= set(table)
    assert sorted(table["unique_tokens"].unique()) == [256, 1024, 4096] and sorted(table["epochs"].unique()) == list(range(1, 65))
    assert (table["seeds"] == 8).all() and doc["reference"][0]["kind"] == "exact"
    assert (table["effective_reuse_lo"] <= table["effective_reuse"]).all()
    assert (table["effective_reuse"] <= table["effective_reuse_hi"]).all()
    assert {f["law"] for f in doc["fits"]} == {"K* = A ln N + B", "K* = a N^b"}
    assert sorted({f["eps"] for f in doc["fits"]}) == [0.1, 0.2, 0.3, 0.5]
    assert len(doc["r_star"]) == 3 and len(doc["k_star"]) == 12


def test_one_and_two_epochs_are_worth_as_much_as_fresh_data(testbed):
    e = reuse(testbed[1])
    assert e[1].between(0.70, 1.35).all() and abs(e[1].mean() - 1) <= 0.12, e[1]
    half = e[2] / 2
    assert half.between(0.65, 1.35).all() and 0.82 <= half.mean() <= 1.08, half


def test_many_epochs_saturate(testbed):
    e = reuse(testbed[1])
    assert (e[64] / 64 <= 0.45).all(), e[64]
    assert (e[64] / e[16] >= 0.95).all(), e[64] / e[16]
    small = e.index <= 1024
    assert (e[64][small] / e[32][small] <= 1.35).all(), e[64] / e[32]


def test_larger_datasets_can_be_repeated_more(testbed):
    _, doc = testbed
    e = reuse(doc)
    assert e.loc[4096, 64] / e.loc[256, 64] >= 1.5, e[64]
    slope = np.polyfit(np.log(e.index.to_numpy(float)), e[64].to_numpy(), 1)[0]
    assert slope >= 1.2, slope
    law = next(f for f in doc["fits"] if f["eps"] == 0.5 and f["law"] == "K* = A ln N + B")
    assert law["params"]["A"] >= 1.0 and law["n_points"] == 3, law
    r_star = pd.DataFrame(doc["r_star"]).sort_values("unique_tokens")["r_star"]
    assert r_star.is_monotonic_increasing  # Muennighoff's R* is not one number


def test_the_report_draws_e_against_k(testbed):
    from scalegrid.report import write_report

    results, doc = testbed
    out = write_report(results, workers=0, bootstrap=200).parent
    section = json.loads((out / "fits.json").read_text())["sections"]["reuse"]
    assert section["status"] == "ok" and section["figures"] == ["figures/reuse.png"]
    assert (out / "figures" / "reuse.svg").is_file()
    assert len(section["fits"]["effective_reuse"]) == len(doc["table"])
    assert "**Reuse: E(64, N) = " in (out / "report.md").read_text()

"""Chinchilla's L(N, D): Besiroglu et al.'s replication on Epoch AI's data, and exact recovery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalegrid.analysis import chinchilla_loss, drop_highest, fit_chinchilla
from scalegrid.analysis.chinchilla import chinchilla_model, hoffmann_starts

ANCHORS = Path(__file__).resolve().parents[1] / "data" / "anchors"  # public reference data, PROVENANCE.md there
CHINCHILLA_CSV = ANCHORS / "chinchilla" / "svg_extracted_data.csv"

PUBLISHED = {"A": 482.01, "B": 2085.43, "E": 1.8169, "alpha": 0.3478, "beta": 0.3658}
PUBLISHED_SE = {"A": 124.5, "B": 1293.3, "E": 0.026, "alpha": 0.015, "beta": 0.021}
GRID_FIT = {"A": 477.8, "B": 2143.9, "E": 1.817, "alpha": 0.3473, "beta": 0.3672}


@pytest.fixture(scope="module")
def epoch_points() -> pd.DataFrame:
    if not CHINCHILLA_CSV.exists():
        pytest.skip(f"anchor data not found at {CHINCHILLA_CSV} (tests/data/anchors/ is part of the repository)")
    return drop_highest(pd.read_csv(CHINCHILLA_CSV), "loss", 5)


@pytest.fixture(scope="module")
def besiroglu_fit(epoch_points):
    return fit_chinchilla(epoch_points, params="Model Size", tokens=None, flops="Training FLOP",
                          loss="loss", bootstrap=200, seed=0)


def test_drop_highest_leaves_the_240_points_of_besiroglu(epoch_points):
    assert len(epoch_points) == 240
    assert epoch_points["loss"].max() < 4.0


def test_fit_matches_besiroglu_et_al(besiroglu_fit):
    p = besiroglu_fit.params
    assert besiroglu_fit.converged and besiroglu_fit.n_points == 240
    assert list(p) == ["A", "B", "E", "alpha", "beta"]
    assert p["E"] == pytest.approx(1.817, abs=0.01)
    for name in ("alpha", "beta"):
        assert (abs(p[name] - PUBLISHED[name]) <= 0.005) or (abs(p[name] - GRID_FIT[name]) <= 0.005)
    assert p["A"] == pytest.approx(GRID_FIT["A"], rel=0.03)
    assert p["B"] == pytest.approx(GRID_FIT["B"], rel=0.05)


def test_bootstrap_spread_matches_the_published_standard_errors(besiroglu_fit):
    # Besiroglu et al. report bootstrap standard errors; ours, from 200 resamples, are close.
    for name in ("E", "alpha", "beta"):
        se = np.nanstd(besiroglu_fit.sample(name))
        assert se == pytest.approx(PUBLISHED_SE[name], rel=0.35), name
        lo, hi = besiroglu_fit.ci[name]
        assert lo < besiroglu_fit.params[name] < hi


TRUTH = {"A": 400.0, "B": 2000.0, "E": 1.7, "alpha": 0.34, "beta": 0.28}


def _synthetic(seed: int, noise: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n, d = np.geomspace(7e7, 1.6e10, 8), np.geomspace(5e9, 5e11, 8)
    nn, dd = (a.ravel() for a in np.meshgrid(n, d))
    y = chinchilla_loss(nn, dd, **TRUTH) * np.exp(rng.normal(0.0, noise, nn.size))
    return pd.DataFrame({"params": nn, "tokens": dd, "val_loss": y, "flops": 6 * nn * dd})


def test_synthetic_chinchilla_is_recovered_from_hoffmanns_grid():
    res = fit_chinchilla(_synthetic(0, noise=0.0), bootstrap=0)
    for name, value in TRUTH.items():
        assert res.params[name] == pytest.approx(value, rel=1e-4), name
    noisy = fit_chinchilla(_synthetic(1, noise=5e-4), flops="flops", tokens=None, bootstrap=0)
    assert noisy.params["E"] == pytest.approx(TRUTH["E"], abs=0.01)
    assert noisy.params["alpha"] == pytest.approx(TRUTH["alpha"], abs=0.01)
    assert noisy.params["beta"] == pytest.approx(TRUTH["beta"], abs=0.005)


def test_hoffmann_grid_has_4500_starts():
    df = _synthetic(0, 0.0)
    assert hoffmann_starts(chinchilla_model(df.params.to_numpy(), df.tokens.to_numpy())).shape == (4500, 5)

"""Saturating power laws: exact recovery, both objectives, several variables, interval coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalegrid.analysis import Objective, fit_power_law, inverse_power_law, power_law

TRUTH = {"A": 400.0, "B": 0.3, "C": 1.8}


def _draw(seed: int, n: int = 20, noise: float = 0.003, x_name: str = "params") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e6, 1e9, n)
    y = power_law(x, **TRUTH) * np.exp(rng.normal(0.0, noise, n))
    return pd.DataFrame({x_name: x, "val_loss": y})


def test_noise_free_power_law_is_recovered_exactly():
    res = fit_power_law(_draw(0, noise=0.0), "params", "val_loss", bootstrap=0)
    for name, value in TRUTH.items():
        assert res.params[name] == pytest.approx(value, rel=1e-6), name
    assert res.converged and res.objective < 1e-20


@pytest.mark.parametrize("kind", ["huber", "lsq"])
def test_power_law_with_small_noise_is_recovered_tightly(kind):
    res = fit_power_law(_draw(1, n=40, noise=0.001), "params", "val_loss",
                        objective=Objective(kind=kind), bootstrap=0)
    assert res.params["A"] == pytest.approx(TRUTH["A"], rel=0.05)
    assert res.params["B"] == pytest.approx(TRUTH["B"], abs=0.005)
    assert res.params["C"] == pytest.approx(TRUTH["C"], abs=0.01)


def test_two_variable_additive_law_is_recovered():
    rng = np.random.default_rng(2)
    n = np.geomspace(1e7, 1e10, 7)
    d = np.geomspace(1e9, 1e12, 7)
    nn, dd = (a.ravel() for a in np.meshgrid(n, d))
    y = 1.5 + 300 * nn**-0.3 + 900 * dd**-0.25
    df = pd.DataFrame({"n": nn, "d": dd, "loss": y * np.exp(rng.normal(0, 5e-4, y.size))})
    res = fit_power_law(df, ["n", "d"], "loss", bootstrap=0)
    assert list(res.params) == ["A_n", "B_n", "A_d", "B_d", "C"]
    assert res.params["B_n"] == pytest.approx(0.3, abs=0.01)
    assert res.params["B_d"] == pytest.approx(0.25, abs=0.01)
    assert res.params["C"] == pytest.approx(1.5, abs=0.02)


def test_inverse_power_law_round_trips_and_is_infinite_below_the_asymptote():
    x = np.array([1e3, 1e6, 1e9])
    np.testing.assert_allclose(inverse_power_law(power_law(x, **TRUTH), **TRUTH), x, rtol=1e-9)
    assert inverse_power_law(TRUTH["C"] - 0.1, **TRUTH) == np.inf


def _coverage(draw, x_name, truth, repeats=100, bootstrap=200):
    covered = dict.fromkeys(truth, 0)
    for seed in range(repeats):
        res = fit_power_law(draw(seed), x_name, "val_loss", bootstrap=bootstrap, seed=seed)
        for name, value in truth.items():
            lo, hi = res.ci[name]
            covered[name] += lo <= value <= hi
    return covered


def test_95_percent_intervals_cover_the_truth_at_least_90_times_in_100():
    covered = _coverage(_draw, "params", TRUTH)
    assert min(covered.values()) >= 90, covered


ENSEMBLE_TRUTH = {"A": 0.25, "B": 1.0, "C": 3.1}  # L(K) = 0.25 / K + 3.1: the ensemble law


def _draw_ensemble(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    k = np.repeat(np.arange(1.0, 9.0), 3)  # members 1..8, three seeds each
    y = power_law(k, **ENSEMBLE_TRUTH) * np.exp(rng.normal(0.0, 0.002, k.size))
    return pd.DataFrame({"members": k, "val_loss": y})


def test_ensemble_law_is_recovered_and_its_intervals_cover():
    res = fit_power_law(_draw_ensemble(0).assign(val_loss=lambda f: power_law(f.members, **ENSEMBLE_TRUTH)),
                        "members", "val_loss", bootstrap=0)
    for name, value in ENSEMBLE_TRUTH.items():
        assert res.params[name] == pytest.approx(value, rel=1e-6), name
    covered = _coverage(_draw_ensemble, "members", ENSEMBLE_TRUTH)
    assert min(covered.values()) >= 90, covered

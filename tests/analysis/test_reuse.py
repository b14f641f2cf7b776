"""Multi-epoch reuse: E(K, N), K*(N) and the law K*(N) = A log N + B, on tables of known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalegrid.analysis import (
    FitInputError,
    effective_reuse,
    fit_one_pass,
    fit_reuse,
    fit_reuse_law,
    power_law,
    reuse_threshold,
)

ONE_PASS = {"A": 30.0, "B": 0.5, "C": 0.1}  # L(1, n) = 30 / sqrt(n) + 0.1
SLOPE, INTERCEPT = 3.0, -20.0  # K*(N) = 3 ln N - 20: 4, 7, 10, 13, 16 at N = e^8 .. e^12
EPOCHS = np.arange(1, 21)


def _loss_table(seed: int = 0, noise: float = 1e-5) -> pd.DataFrame:
    """Losses of K epochs over N samples when K epochs are worth min(K, K*(N)) fresh passes."""
    rng = np.random.default_rng(seed)
    rows = []
    for log_n in range(8, 13):
        n = np.exp(log_n)
        k_star = SLOPE * log_n + INTERCEPT
        for k in EPOCHS:
            for lr in (0.1, 0.3):  # a worse learning rate the table must ignore
                worth = min(k, k_star) * (1.0 if lr == 0.1 else 0.5)
                loss = power_law(n * worth, **ONE_PASS) * np.exp(rng.normal(0.0, noise))
                rows.append({"unique_tokens": n, "epochs": k, "lr": lr, "val_loss": loss})
    for log_n in range(13, 18):  # one-pass runs on more data, for the fresh-data curve
        n = np.exp(log_n)
        rows.append({"unique_tokens": n, "epochs": 1, "lr": 0.1,
                     "val_loss": power_law(n, **ONE_PASS) * np.exp(rng.normal(0.0, noise))})
    return pd.DataFrame(rows)


def test_one_pass_curve_is_recovered():
    res = fit_one_pass(_loss_table(noise=0.0))
    for name, value in ONE_PASS.items():
        assert res.params[name] == pytest.approx(value, rel=1e-5), name


def test_effective_reuse_recovers_the_worth_of_repeated_epochs():
    reuse = effective_reuse(_loss_table())
    assert len(reuse) == 5 * 20 + 5  # one row per (N, K): best over learning rates
    n = np.exp(9.0)  # K* = 7
    got = reuse[np.isclose(reuse.unique_tokens, n)].set_index("epochs")["effective_reuse"]
    np.testing.assert_allclose(got.loc[[1, 4, 7]], [1, 4, 7], rtol=2e-3)
    np.testing.assert_allclose(got.loc[[8, 15, 20]], 7, rtol=2e-3)


def test_threshold_is_the_largest_k_reused_effectively():
    th = reuse_threshold(effective_reuse(_loss_table()), eps=0.01)
    inner = th[th.max_epochs == 20]
    np.testing.assert_array_equal(inner.k_star, [4, 7, 10, 13, 16])
    assert not inner.censored.any()
    assert th[th.max_epochs == 1].censored.all()  # one-pass-only sizes say nothing about K*


def test_reuse_law_is_recovered_exactly():
    res = fit_reuse(_loss_table(), eps=0.01, bootstrap=100)
    assert list(res.params) == ["A", "B"] and res.n_points == 5
    assert res.params["A"] == pytest.approx(SLOPE, abs=1e-9)
    assert res.params["B"] == pytest.approx(INTERCEPT, abs=1e-8)


def test_reuse_law_intervals_cover_the_truth_at_least_90_times_in_100():
    log_n = np.linspace(8, 16, 30)
    covered = {"A": 0, "B": 0}
    for seed in range(100):
        rng = np.random.default_rng(seed)
        k_star = SLOPE * log_n + INTERCEPT + rng.normal(0.0, 0.5, log_n.size)
        res = fit_reuse_law(pd.DataFrame({"unique_tokens": np.exp(log_n), "k_star": k_star}),
                            bootstrap=500, seed=seed)
        for name, truth in (("A", SLOPE), ("B", INTERCEPT)):
            lo, hi = res.ci[name]
            covered[name] += lo <= truth <= hi
    assert min(covered.values()) >= 90, covered


def test_too_few_thresholds_is_an_error_naming_the_fix():
    table = _loss_table()
    with pytest.raises(FitInputError, match="add more epochs or dataset sizes"):
        fit_reuse(table[table.epochs <= 5], eps=0.01, bootstrap=0)
    with pytest.raises(FitInputError, match="one-pass rows"):
        fit_reuse(table[table.epochs > 1], bootstrap=0)

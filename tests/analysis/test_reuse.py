"""Multi-epoch reuse: E(K, N), K*(N) and its two laws, R* per N, on tables of known truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scalegrid.analysis import (
    FitInputError,
    FittedOnePass,
    TunedOnePass,
    epoch_rows,
    fit_one_pass,
    muennighoff_reuse,
    power_law,
    reuse_analysis,
)

LOG_N = np.arange(8, 13)  # N = e^8 .. e^12
SLOPE, INTERCEPT = 3.0, -20.0  # the K at which reuse stops: 3 ln N - 20 = 4, 7, 10, 13, 16
EPOCHS = np.arange(1, 41)
SEEDS = 8


def reference(largest: float = 1e9) -> TunedOnePass:
    """R(1, n) = 30 / sqrt(n): a straight line in log-log, so its inversion is exact."""
    n = np.geomspace(1, largest, 200)
    return TunedOnePass(samples=n, risk=30 / np.sqrt(n), lr=np.full(n.size, 0.1), ladder=np.array([0.1]))


def loss_table(worth, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Losses of K epochs over N samples worth `worth(N, K)` fresh passes at the best lr (0.1),
    half as much at a worse one (0.3); seed s gets a factor exp(+-noise) in pairs, so the seed
    mean at each cell is the truth up to O(noise^2)."""
    rng = np.random.default_rng(seed)
    rows = []
    for log_n in LOG_N:
        n = float(np.exp(log_n))
        for k in EPOCHS:
            for lr, scale in ((0.1, 1.0), (0.3, 0.5)):
                truth = 30 / np.sqrt(n * worth(n, k) * scale)
                signs = rng.permutation(np.repeat([1.0, -1.0], SEEDS // 2))
                for s in range(SEEDS):
                    rows.append({"unique_tokens": n, "epochs": k, "lr": lr, "seed": s,
                                 "val_loss": truth * (1 + signs[s] * noise)})
    return pd.DataFrame(rows)


def saturating(n, k):
    return min(k, SLOPE * np.log(n) + INTERCEPT)


def test_effective_reuse_is_recovered_cell_by_cell():
    result = reuse_analysis(loss_table(saturating), reference(), bootstrap=0)
    table = result.table
    assert len(table) == LOG_N.size * EPOCHS.size and (table["lr"] == 0.1).all() and (table["seeds"] == SEEDS).all()
    want = [saturating(n, k) for n, k in zip(table["unique_tokens"], table["epochs"])]
    np.testing.assert_allclose(table["effective_reuse"], want, rtol=1e-9)
    np.testing.assert_allclose(table["effective_samples"], table["effective_reuse"] * table["unique_tokens"], rtol=1e-12)
    assert table["lr_at_edge"].all()  # 0.1 is the smallest lr tried: the optimum may lie below


@pytest.mark.parametrize("eps", [0.2, 0.5])
def test_k_star_and_the_log_law_are_recovered(eps):
    """E/K = K*/K past K*: it crosses 1 - eps at K*/(1 - eps), found between integer K."""
    result = reuse_analysis(loss_table(saturating), reference(), eps=(eps,), bootstrap=0)
    k_true = (SLOPE * LOG_N + INTERCEPT) / (1 - eps)
    inside = k_true < EPOCHS[-1]
    got = result.thresholds
    np.testing.assert_allclose(got["k_star"][inside], k_true[inside], rtol=5e-3)
    assert (got["censored"][inside] == "").all() and (got["censored"][~inside] == "above").all()
    log_law = next(law for law in result.laws if law.law == "log")
    assert log_law.samples == pytest.approx(np.exp(LOG_N[inside]))
    assert log_law.params["A"] == pytest.approx(SLOPE / (1 - eps), rel=5e-3)
    assert log_law.params["B"] == pytest.approx(INTERCEPT / (1 - eps), rel=1e-2)
    assert max(map(abs, log_law.residuals)) < 0.05


def test_the_power_law_is_recovered():
    a, b = 0.5, 0.4  # K*(N) = 0.5 N^0.4 = 12.3 .. 60.8 at eps 0.5: E/K = 1/2 there
    result = reuse_analysis(loss_table(lambda n, k: min(k, a * n**b / 2)), reference(), eps=(0.5,), bootstrap=0)
    power = next(law for law in result.laws if law.law == "power" and len(law.samples) >= 3)
    assert power.params == pytest.approx({"a": a, "b": b}, rel=1e-2)
    assert power.to_dict()["law"] == "K* = a N^b" and len(power.to_dict()["residuals"]) == len(power.samples)


def test_r_star_of_muennighoffs_law_is_recovered_per_n():
    r_true = {float(np.exp(log_n)): 2.0 * (log_n - 6) for log_n in LOG_N}  # R* grows with N
    result = reuse_analysis(loss_table(lambda n, k: muennighoff_reuse(np.float64(k), r_true[n])), reference(), bootstrap=0)
    got = result.r_star.set_index("unique_tokens")["r_star"]
    np.testing.assert_allclose(got.to_numpy(), list(r_true.values()), rtol=1e-6)
    assert not result.r_star["at_bound"].any()


def test_bootstrap_over_seeds_gives_intervals_around_the_estimate():
    result = reuse_analysis(loss_table(saturating, noise=0.05), reference(), bootstrap=300)
    table = result.table
    assert (table["effective_reuse_lo"] <= table["effective_reuse"]).all()
    assert (table["effective_reuse"] <= table["effective_reuse_hi"]).all()
    width = table["effective_reuse_hi"] - table["effective_reuse_lo"]
    assert (width > 0).all() and (width / table["effective_reuse"]).median() < 0.2
    assert all(law.ci for law in result.laws)
    exact = reuse_analysis(loss_table(saturating), reference(), bootstrap=300).table
    assert (exact["effective_reuse_hi"] - exact["effective_reuse_lo"]).abs().max() < 1e-9  # no seed noise


def test_lr_is_tuned_on_the_seed_mean_and_a_diverged_seed_rules_an_lr_out():
    rows = loss_table(saturating)
    cell = (rows["unique_tokens"] == rows["unique_tokens"].min()) & (rows["epochs"] == 3)
    lucky = cell & (rows["lr"] == 0.3) & (rows["seed"] == 0)
    rows.loc[lucky, "val_loss"] = 1e-9  # the lowest single loss, not the lowest mean
    unlucky = cell & (rows["lr"] == 0.1) & (rows["seed"] == 5)
    table = reuse_analysis(rows, reference(), bootstrap=0).table
    assert table[(table["unique_tokens"] == rows["unique_tokens"].min()) & (table["epochs"] == 3)]["lr"].item() == 0.1
    rows.loc[lucky, "val_loss"] = rows.loc[cell & (rows["lr"] == 0.3) & (rows["seed"] == 1), "val_loss"].item()
    rows.loc[unlucky, "val_loss"] = np.inf  # seed 5 diverged at lr 0.1: that lr is out for this cell
    table = reuse_analysis(rows, reference(), bootstrap=0).table
    assert table[(table["unique_tokens"] == rows["unique_tokens"].min()) & (table["epochs"] == 3)]["lr"].item() == 0.3


def test_thresholds_are_censored_where_the_crossing_is_not_seen():
    rows = loss_table(lambda n, k: k if n > 5000 else 0.5 * k)  # N < 5000: E/K = 1/2 from K = 1
    result = reuse_analysis(rows, reference(), eps=(0.3,), bootstrap=0)
    th = result.thresholds.set_index("unique_tokens")
    assert (th.loc[th.index < 5000, "censored"] == "below").all() and (th.loc[th.index < 5000, "k_star"] == 1).all()
    assert (th.loc[th.index > 5000, "censored"] == "above").all() and (th.loc[th.index > 5000, "k_star"] == 40).all()
    assert result.laws == () and "bracketed at 0 value(s)" in result.notes[0]


def test_a_fitted_reference_serves_any_table():
    rows = loss_table(saturating)
    extra = pd.DataFrame({"unique_tokens": np.exp(np.arange(13, 18.0)), "epochs": 1, "lr": 0.1, "seed": 0})
    extra["val_loss"] = 30 / np.sqrt(extra["unique_tokens"]) + 1e-4
    table = pd.concat([rows.assign(val_loss=rows["val_loss"] + 1e-4), extra], ignore_index=True)
    fit = fit_one_pass(table)
    assert fit.params == pytest.approx({"A": 30.0, "B": 0.5, "C": 1e-4}, rel=1e-4)
    result = reuse_analysis(table[table["unique_tokens"] < 2e5], FittedOnePass(fit), bootstrap=0)
    got = result.table[result.table["epochs"] == 4]["effective_reuse"].to_numpy()
    np.testing.assert_allclose(got, 4.0, rtol=1e-3)


def test_epoch_rows_read_constant_schedule_curves_and_divergence():
    constant = json.dumps({"train": {"schedule": "constant", "warmup_fraction": 0.0}})
    cosine = json.dumps({"train": {"schedule": "cosine", "warmup_fraction": 0.05}})
    runs = pd.DataFrame([
        {"trial_id": "a", "status": "COMPLETED", "epochs": 3, "val_loss": 0.3, "lr": 0.1, "config_json": constant},
        {"trial_id": "b", "status": "DIVERGED", "epochs": 3, "val_loss": np.nan, "lr": 1.0, "config_json": constant},
        {"trial_id": "c", "status": "COMPLETED", "epochs": 3, "val_loss": 0.2, "lr": 0.1, "config_json": cosine},
        {"trial_id": "d", "status": "FAILED", "epochs": 3, "val_loss": np.nan, "lr": 0.1, "config_json": constant},
    ])
    curves = pd.DataFrame([
        {"trial_id": "a", "epoch": e, "val_loss": 1.0 / e} for e in (1.0, 2.0, 3.0)
    ] + [{"trial_id": "b", "epoch": 1.0, "val_loss": 0.9}, {"trial_id": "c", "epoch": 1.0, "val_loss": 0.5}])
    rows = epoch_rows(runs, curves).sort_values(["trial_id", "epochs"])
    assert list(zip(rows["trial_id"], rows["epochs"], rows["val_loss"])) == [
        ("a", 1, 1.0), ("a", 2, 0.5), ("a", 3, pytest.approx(1 / 3)),
        ("b", 1, 0.9), ("b", 2, np.inf), ("b", 3, np.inf),
        ("c", 3, 0.2),  # a decaying schedule: only its end is a K-epoch result
    ]
    assert (rows["lr"].to_numpy() == [0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 0.1]).all()


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.drop(columns="val_loss"), "missing column 'val_loss'"),
    (lambda t: t[t["epochs"] == 1], "compares epoch counts"),
    (lambda t: t.assign(val_loss=-1.0), "non-positive"),
])
def test_bad_tables_name_the_problem(change, message):
    with pytest.raises(FitInputError, match=message):
        reuse_analysis(change(loss_table(saturating)), reference(), bootstrap=0)
    with pytest.raises(FitInputError, match="eps must be in"):
        reuse_analysis(loss_table(saturating), reference(), eps=(1.5,), bootstrap=0)


def test_one_pass_fit_needs_three_sizes():
    with pytest.raises(FitInputError, match="one-pass rows"):
        fit_one_pass(pd.DataFrame({"unique_tokens": [1.0, 2.0], "epochs": [1, 1], "val_loss": [1.0, 0.5]}))
    assert power_law(4.0, 1.0, 0.5, 0.0) == pytest.approx(0.5)


def test_rows_sharing_a_cell_count_by_their_lowest_loss():
    rows = loss_table(saturating)
    worse = rows.assign(val_loss=rows["val_loss"] * 1.5, model="small")  # another axis, not tuned here
    table = reuse_analysis(pd.concat([rows.assign(model="large"), worse]), reference(), bootstrap=0).table
    np.testing.assert_allclose(table["effective_reuse"], reuse_analysis(rows, reference(), bootstrap=0).table["effective_reuse"])

"""The recipes of "Pre-training under infinite compute" on small hand-computed runs tables."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from scalegrid.analysis import (
    best_runs,
    data_efficiency,
    data_scaling,
    distillation,
    distillation_retention,
    ensemble_scaling,
    joint_scaling,
    local_optimality,
    local_optimality_neighbours,
    optimal_hparam_scaling,
    param_scaling,
    power_law,
)

D = 1e8  # unique tokens


def _run(model, params, epochs, lr, wd, loss, *, status="COMPLETED", stage="train", members=1,
         unique_tokens=D):
    return {"model": model, "params": params, "unique_tokens": unique_tokens, "epochs": epochs,
            "lr": lr, "weight_decay": wd, "val_loss": loss, "status": status, "stage": stage,
            "members": members}


@pytest.fixture
def grid_runs() -> pd.DataFrame:
    rows = [
        # m1: best at (2, 3e-3, 0.8); lr=1e-2 never run; 0.8 is the top of the wd grid
        _run("m1", 1e6, 2, 3e-3, 0.8, 2.80),
        _run("m1", 1e6, 1, 3e-3, 0.8, 2.90),
        _run("m1", 1e6, 4, 3e-3, 0.8, 2.85),
        _run("m1", 1e6, 2, 1e-3, 0.8, 2.95),
        _run("m1", 1e6, 2, 3e-3, 0.4, 2.86),
        _run("m1", 1e6, 2, 3e-3, 0.4, 2.10, status="FAILED"),  # not a result: ignored
        _run("m1", 1e6, 2, 3e-3, 0.8, 2.70, stage="ensemble", members=2),  # another stage
        # m2: best at (2, 3e-3, 0.4), every neighbour run and worse: certified
        _run("m2", 4e6, 2, 3e-3, 0.4, 2.50),
        _run("m2", 4e6, 1, 3e-3, 0.4, 2.60),
        _run("m2", 4e6, 4, 3e-3, 0.4, 2.55),
        _run("m2", 4e6, 2, 1e-3, 0.4, 2.65),
        _run("m2", 4e6, 2, 1e-2, 0.4, 2.58),
        _run("m2", 4e6, 2, 3e-3, 0.1, 2.52),
        _run("m2", 4e6, 2, 3e-3, 0.8, 2.51),
        _run("m2", 4e6, 4, 1e-2, 0.8, 2.90),  # not a neighbour (two axes differ)
    ]
    return pd.DataFrame(rows)


def test_best_runs_ignores_failed_rows_and_other_stages(grid_runs):
    best = best_runs(grid_runs)
    assert list(best.model) == ["m1", "m2"]
    assert list(best.val_loss) == [2.80, 2.50]
    assert best.iloc[0][["epochs", "lr", "weight_decay"]].tolist() == [2, 3e-3, 0.8]


def test_best_runs_of_a_table_concatenated_from_per_trial_files(grid_runs):
    # load_runs-style concatenation: every row keeps index label 0
    stacked = pd.concat([grid_runs.iloc[[i]].reset_index(drop=True) for i in range(len(grid_runs))])
    best = best_runs(stacked)
    assert len(best) == 2 and list(best.val_loss) == [2.80, 2.50]
    assert local_optimality(stacked).certified.tolist() == [False, True]


def test_local_optimality_certificate(grid_runs):
    cert = local_optimality(grid_runs).set_index("model")
    assert cert.loc["m1", "no_worse"] and not cert.loc["m1", "certified"]
    assert cert.loc["m1", "missing"] == ["lr=0.01", "weight_decay+ (edge)"]
    assert cert.loc["m2", "certified"] and cert.loc["m2", "missing"] == []
    detail = local_optimality_neighbours(grid_runs)
    m1_epochs = detail[(detail.model == "m1") & (detail.axis == "epochs")]
    assert m1_epochs.neighbour_value.tolist() == [1, 4]
    assert m1_epochs.neighbour_loss.tolist() == [2.90, 2.85]
    assert set(m1_epochs.status) == {"no_worse"}


def test_certificate_flags_a_better_neighbour_of_a_chosen_point(grid_runs):
    chosen = grid_runs[(grid_runs.model == "m2") & (grid_runs.epochs == 4)
                       & (grid_runs.weight_decay == 0.4)]
    cert = local_optimality(grid_runs, chosen=chosen)
    assert len(cert) == 1 and not cert.no_worse[0]
    assert cert.better[0] == ["epochs=2"]


def _scaling_runs() -> pd.DataFrame:
    """Two token budgets, four sizes; the best loss of each follows C + A / N^B exactly."""
    laws = {1e8: (10.0, 0.5, 2.0), 1e9: (8.0, 0.4, 1.8)}
    rows = []
    for d, (a, b, c) in laws.items():
        for i, n in enumerate([1e4, 1e5, 1e6, 1e7]):
            best = power_law(n, a, b, c)
            rows.append(_run(f"s{i}", n, 4, 3e-3, 0.8, best, unique_tokens=d))
            rows.append(_run(f"s{i}", n, 8, 3e-3, 0.8, best + 0.05, unique_tokens=d))
    return pd.DataFrame(rows)


def test_param_scaling_recovers_each_budgets_asymptote():
    fits = param_scaling(best_runs(_scaling_runs()), bootstrap=50).set_index("unique_tokens")
    assert fits.loc[1e8, "C"] == pytest.approx(2.0, rel=1e-5)
    assert fits.loc[1e9, "C"] == pytest.approx(1.8, rel=1e-5)
    assert fits.loc[1e8, "B"] == pytest.approx(0.5, rel=1e-5)
    assert np.isnan(fits.loc[1e8, "C_lo"])  # the points lie on the law: a zero-width interval is no interval
    assert not fits.degenerate.any()
    assert fits.n_points.tolist() == [4, 4] and fits.converged.all()


ENSEMBLE_LAWS = {("m1", 1e6): (0.3, 1.0, 2.5), ("m2", 1e7): (0.2, 0.8, 2.3),
                 ("m3", 1e8): (0.15, 0.9, 2.2), ("m4", 1e9): (0.1, 1.1, 2.15)}


def _ensemble_runs() -> pd.DataFrame:
    rows = []
    for (model, n), (a, b, c) in ENSEMBLE_LAWS.items():
        rows.append(_run(model, n, 4, 3e-3, 0.8, power_law(1, a, b, c), members=None))
        for k in range(2, 7):
            rows.append(_run(model, n, 4, 3e-3, 0.8, power_law(k, a, b, c), stage="ensemble",
                             members=k))
    return pd.DataFrame(rows)


def test_ensemble_scaling_recovers_each_models_asymptote():
    fits = ensemble_scaling(_ensemble_runs(), bootstrap=0).set_index("model")
    for (model, n), (a, b, c) in ENSEMBLE_LAWS.items():
        assert fits.loc[model, "C"] == pytest.approx(c, rel=1e-5)
        assert fits.loc[model, "B"] == pytest.approx(b, rel=1e-4)
        assert fits.loc[model, "params"] == n
        assert fits.loc[model, "n_points"] == 6  # K = 1 from the train stage, 2..6 ensembles


def test_joint_scaling_fits_a_power_law_over_ensemble_asymptotes():
    sizes = np.array([1e6, 1e7, 1e8, 1e9])
    ens = pd.DataFrame({"unique_tokens": D, "params": sizes, "C": power_law(sizes, 5.0, 0.3, 2.0)})
    joint = joint_scaling(ens, bootstrap=0)
    assert joint.loc[0, "C"] == pytest.approx(2.0, rel=1e-5)
    assert joint.loc[0, "B"] == pytest.approx(0.3, rel=1e-4)


def test_data_efficiency_of_a_recipe_over_a_baseline():
    d = np.array([1e8, 2e8, 4e8, 8e8, 1.6e9])
    recipe = data_scaling(pd.DataFrame({"unique_tokens": d, "C": power_law(d, 100.0, 0.25, 2.0)}),
                          bootstrap=50)
    baseline = data_scaling(pd.DataFrame({"unique_tokens": d, "C": power_law(d, 200.0, 0.25, 2.0)}),
                            bootstrap=50)
    # 200 / D_b^0.25 = 100 / D^0.25  =>  D_b = 2^4 D: the baseline needs 16x the data
    eff = data_efficiency(recipe, baseline, [2e8, 1e9])
    np.testing.assert_allclose(eff.multiplier, 16.0, rtol=1e-4)
    np.testing.assert_allclose(eff.baseline_tokens, [3.2e9, 1.6e10], rtol=1e-4)
    assert (eff.multiplier_lo <= 16.0 + 1e-3).all() and (eff.multiplier_hi >= 16.0 - 1e-3).all()
    better_floor = data_scaling(pd.DataFrame({"unique_tokens": d, "C": power_law(d, 100.0, 0.25, 1.5)}),
                                bootstrap=0)
    assert data_efficiency(better_floor, baseline, 1e12).multiplier[0] == np.inf


def test_distillation_retention():
    assert distillation_retention(3.0, 2.8, 2.9) == pytest.approx(0.5)
    runs = pd.DataFrame([
        _run("small", 1e6, 4, 3e-3, 0.8, 3.00),
        _run("small", 1e6, 8, 3e-3, 0.8, 3.05),
        _run("small", 1e6, 4, 3e-3, 0.8, 2.85, stage="ensemble", members=4),
        _run("small", 1e6, 4, 3e-3, 0.8, 2.80, stage="ensemble", members=8),
        _run("small", 1e6, 4, 3e-3, 0.8, 2.90, stage="distill", members=4),  # teacher: 4 members
        _run("small", 1e6, 4, 3e-3, 0.8, 2.83, stage="distill", members=None),  # best ensemble
        _run("small", 1e6, 4, 3e-3, 0.8, 2.00, stage="distill", members=8, status="FAILED"),
    ])
    table = distillation(runs)
    assert table.loss_teacher.tolist() == [2.85, 2.80]
    np.testing.assert_allclose(table.retention, [(3.0 - 2.90) / (3.0 - 2.85), (3.0 - 2.83) / 0.2])


def test_optimal_weight_decay_scales_as_a_power_of_size():
    rows = []
    for n, wd_star in [(1e6, 0.1), (4e6, 0.2), (1.6e7, 0.4), (6.4e7, 0.8)]:
        for wd, extra in itertools.product([wd_star / 2, wd_star, wd_star * 2], [0.0]):
            loss = 3.0 - np.log10(n) * 0.1 + (0.0 if wd == wd_star else 0.02)
            rows.append(_run(f"n{n:g}", n, 4, 3e-3, wd, loss + extra))
    best = best_runs(pd.DataFrame(rows))
    trend = optimal_hparam_scaling(best, hparam="weight_decay", bootstrap=50)
    assert trend.loc[0, "exponent"] == pytest.approx(0.5, abs=1e-9)
    assert trend.loc[0, "coefficient"] == pytest.approx(0.1 / 1e6**0.5, rel=1e-9)
    assert np.isnan(trend.loc[0, "exponent_lo"])  # every resample lies on the same line: no interval to show


def test_best_runs_averages_a_points_seeds_and_leaves_a_scaled_ensembles_members_out():
    """A lucky seed is not the recipe's best single model: members of the same point are its seeds
    (the mean counts); members trained at an ensemble recipe's own epochs are the ensemble's inputs."""
    rows = pd.DataFrame(
        {
            "model": ["m"] * 5, "params": [10] * 5, "unique_tokens": [100] * 5, "epochs": [4, 4, 4, 8, 8],
            "stage": ["train"] * 5, "status": ["COMPLETED"] * 5, "member": [0, 1, 2, 1, 2],
            "val_loss": [2.0, 1.5, 1.9, 1.2, 1.3],
        }
    )
    best = best_runs(rows, by=["params", "unique_tokens"])
    assert best["val_loss"].tolist() == [pytest.approx((2.0 + 1.5 + 1.9) / 3, rel=1e-12)]
    assert best["seeds"].tolist() == [3] and best["seed_losses"].tolist() == [(2.0, 1.5, 1.9)]
    assert best["val_loss_sd"].iloc[0] == pytest.approx(np.std([2.0, 1.5, 1.9], ddof=1), rel=1e-12)

"""The linreg trainer: exact excess risk, closed-form checks, shared data, speed."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from scalegrid.spec import DataSpec, GaussianDataSpec, TrainSpec
from scalegrid.trainers import linreg
from scalegrid.storage import layout
from scalegrid.trainers import get_trainer
from scalegrid.trial import CURVE_COLUMNS, Trial, TrialConfig
from scalegrid.trainers.data import describe


def make_trial(*, dims=256, n=1000, epochs=4, lr=0.1, weight_decay=0.0, seed=0, data=None, **train) -> Trial:
    identity = describe(DataSpec(source="gaussian", gaussian=data or {}, unique_tokens=[n]))
    config = TrialConfig(
        trainer="linreg", model={"dims": dims}, data=identity.config, unique_tokens=n,
        epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed, train=TrainSpec(**train),
    )
    return Trial(trial_id="t", sweep="test", model_label=f"d{dims}", config=config, results=layout("unused"))


def run(trial):
    rows = []
    return get_trainer("linreg")(trial, rows.append), rows


def test_default_trial_is_fast_and_risk_decreases():
    start = time.perf_counter()
    result, rows = run(make_trial())
    assert time.perf_counter() - start < 0.5
    assert result.status == "COMPLETED"
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and result.curves == rows
    assert all(set(CURVE_COLUMNS) <= set(r) for r in rows)
    risks = [r["val_loss"] for r in rows]
    assert all(b < a for a, b in zip(risks, risks[1:])) and risks[0] < 1.0  # w = 0 has excess risk 1
    assert result.val_loss == risks[-1] == result.best_val_loss
    assert result.params == result.params_nonembed == 256
    assert result.tokens_seen == 4 * 1000 and result.flops == 6 * 256 * 4000
    assert rows[-1]["step"] == 4 * math.ceil(1000 / 16)


def test_problem_is_normalised():
    h, w_star = linreg.problem(100, GaussianDataSpec(spectrum_decay=2.0, target_decay=0.5))
    assert h[0] == 1.0 and h[9] == pytest.approx(10**-2.0)
    assert h @ w_star**2 == pytest.approx(1.0) and w_star[3] / w_star[0] == pytest.approx(4**-0.5)


def test_full_batch_gd_matches_the_closed_form():
    n, d, epochs, lr, wd = 200, 64, 7, 0.5, 0.01
    trial = make_trial(dims=d, n=n, epochs=epochs, lr=lr, weight_decay=wd,
                       batch_size=n, schedule="constant", warmup_fraction=0.0)
    result, rows = run(trial)
    x, y = linreg.samples(n, d, GaussianDataSpec())
    h, w_star = linreg.problem(d, GaussianDataSpec())
    # w_{t+1} = (I - lr (S + wd I)) w_t + lr b, w_0 = 0  =>  w_t = (I - (I - lr A)^t) A^-1 b
    a, b = x.T @ x / n + wd * np.eye(d), x.T @ y / n
    evals, evecs = np.linalg.eigh(a)
    for t, row in enumerate(rows, start=1):
        w = evecs @ ((1 - (1 - lr * evals) ** t) / evals * (evecs.T @ b))
        assert row["val_loss"] == pytest.approx(h @ (w - w_star) ** 2, rel=1e-9)
        assert row["train_loss"] == pytest.approx(np.mean((x @ w - y) ** 2), rel=1e-9)


def test_ridge_limit():
    n, d, wd = 100, 32, 0.05
    result, _ = run(make_trial(dims=d, n=n, epochs=3000, lr=0.5, weight_decay=wd,
                               batch_size=n, schedule="constant", warmup_fraction=0.0))
    x, y = linreg.samples(n, d, GaussianDataSpec())
    h, w_star = linreg.problem(d, GaussianDataSpec())
    ridge = np.linalg.solve(x.T @ x / n + wd * np.eye(d), x.T @ y / n)
    assert result.val_loss == pytest.approx(h @ (ridge - w_star) ** 2, rel=1e-6)


def test_samples_are_shared_and_nested():
    data = GaussianDataSpec(seed=5)
    x_small, y_small = linreg.samples(1500, 16, data)
    x_big, y_big = linreg.samples(5000, 16, data)
    assert np.array_equal(x_small, x_big[:1500]) and np.array_equal(y_small, y_big[:1500])
    assert not np.array_equal(x_small, linreg.samples(1500, 16, GaussianDataSpec(seed=6))[0])
    assert np.var(y_big) == pytest.approx(1 + data.noise**2, rel=0.1)  # unit signal plus noise


def test_trial_seed_reorders_sgd_only():
    a, _ = run(make_trial(seed=0))
    b, _ = run(make_trial(seed=0))
    c, _ = run(make_trial(seed=1))
    assert a.val_loss == b.val_loss and a.val_loss != c.val_loss
    assert c.val_loss == pytest.approx(a.val_loss, rel=0.5)  # the same problem, another order


def test_constant_schedule_curve_is_every_epoch_count():
    kw = dict(n=500, dims=128, lr=0.3, weight_decay=0.01, schedule="constant", warmup_fraction=0.0)
    _, long_rows = run(make_trial(epochs=8, **kw))
    for k in (1, 3, 8):
        short, _ = run(make_trial(epochs=k, **kw))
        assert short.val_loss == long_rows[k - 1]["val_loss"]


@pytest.mark.parametrize("lr", [5.0, 1e3])
def test_huge_step_size_is_diverged(lr):
    result, rows = run(make_trial(lr=lr))
    assert result.status == "DIVERGED" and "at step" in result.error
    assert math.isnan(result.val_loss) and rows == []


def test_gaussian_identity_has_no_vocabulary():
    identity = describe(DataSpec(source="gaussian", gaussian={"noise": 0.5}, unique_tokens=[10]))
    assert identity.vocab_size == 0 and identity.fields["noise"] == 0.5 and identity.fields["source"] == "gaussian"
    assert identity.key != describe(DataSpec(source="gaussian", unique_tokens=[10])).key

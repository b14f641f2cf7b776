"""The linreg trainer: exact excess risk, closed-form checks, shared data, speed, and the
vectorised pass against SGD one step at a time."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from scalegrid.grid import trial_id
from scalegrid.spec import DataSpec, GaussianDataSpec, TrainSpec, load_sweep
from scalegrid.data import gaussian
from scalegrid.trainers import get_trainer, linreg, vector_groups
from scalegrid.storage import layout
from scalegrid.data.identity import describe
from scalegrid.trainers.schedule import lr_at
from scalegrid.trial import CURVE_COLUMNS, Trial, TrialConfig

TESTBED = {"spectrum_decay": 2.0, "spectrum_offset": 8, "spectrum_scale": "trace", "target_decay": 0.5,
           "noise": 0.1, "data_per_seed": True}  # sweeps/linreg-reuse.yaml's problem


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
    h, w_star = gaussian.problem(100, GaussianDataSpec(spectrum_decay=2.0, target_decay=0.5))
    assert h[0] == 1.0 and h[9] == pytest.approx(10**-2.0)
    assert h @ w_star**2 == pytest.approx(1.0) and w_star[3] / w_star[0] == pytest.approx(4**-0.5)


def test_full_batch_gd_matches_the_closed_form():
    n, d, epochs, lr, wd = 200, 64, 7, 0.5, 0.01
    trial = make_trial(dims=d, n=n, epochs=epochs, lr=lr, weight_decay=wd,
                       batch_size=n, schedule="constant", warmup_fraction=0.0)
    result, rows = run(trial)
    x, y = gaussian.samples(n, d, GaussianDataSpec())
    h, w_star = gaussian.problem(d, GaussianDataSpec())
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
    x, y = gaussian.samples(n, d, GaussianDataSpec())
    h, w_star = gaussian.problem(d, GaussianDataSpec())
    ridge = np.linalg.solve(x.T @ x / n + wd * np.eye(d), x.T @ y / n)
    assert result.val_loss == pytest.approx(h @ (ridge - w_star) ** 2, rel=1e-6)


def test_samples_are_shared_and_nested():
    data = GaussianDataSpec(seed=5)
    x_small, y_small = gaussian.samples(1500, 16, data)
    x_big, y_big = gaussian.samples(5000, 16, data)
    assert np.array_equal(x_small, x_big[:1500]) and np.array_equal(y_small, y_big[:1500])
    assert not np.array_equal(x_small, gaussian.samples(1500, 16, GaussianDataSpec(seed=6))[0])
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


def sgd_one_step_at_a_time(trial: Trial) -> list[float]:
    """The trainer's definition, written plainly: the excess risk after each epoch."""
    cfg, t = trial.config, trial.config.train
    h, w_star = gaussian.problem(cfg.model.dims, cfg.data)
    x, y = gaussian.samples(cfg.unique_tokens, cfg.model.dims, cfg.data, trial_seed=cfg.seed)
    n, batch = len(y), min(t.batch_size, len(y))
    total = cfg.epochs * math.ceil(n / batch)
    w, step, risks = np.zeros(cfg.model.dims), 0, []
    for epoch in range(1, cfg.epochs + 1):
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        for i in range(0, n, batch):
            xb, yb = x[order[i : i + batch]], y[order[i : i + batch]]
            w -= lr_at(step, total, cfg.lr, t) * (xb.T @ (xb @ w - yb) / len(yb) + cfg.weight_decay * w)
            step += 1
        risks.append(float(h @ (w - w_star) ** 2))
    return risks


@pytest.mark.parametrize("train", [
    {"batch_size": 1, "schedule": "constant", "warmup_fraction": 0.0},
    {"batch_size": 3, "schedule": "cosine"},  # 100 samples: a short last step every epoch
    {"batch_size": 1, "schedule": "linear", "warmup_fraction": 0.2},
])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_one_vectorised_pass_is_sgd_one_step_at_a_time(train, weight_decay):
    lrs = [0.6, 0.3, 0.1, 0.03]
    trials = [make_trial(dims=48, n=100, epochs=3, lr=lr, seed=4, weight_decay=weight_decay, data=TESTBED, **train)
              for lr in lrs]
    rows: list[list[dict]] = [[] for _ in trials]
    results = linreg.train_many(trials, [r.append for r in rows])
    for trial, result, reported in zip(trials, results, rows):
        want = sgd_one_step_at_a_time(trial)
        assert result.status == "COMPLETED" and reported == result.curves
        np.testing.assert_allclose([r["val_loss"] for r in result.curves], want, rtol=1e-9)
        assert result.curves[-1]["lr"] == pytest.approx(lr_at(result.curves[-1]["step"] - 1,
                                                                 result.steps, trial.config.lr, trial.config.train))


def test_a_diverging_lr_leaves_the_pass_and_the_others_finish():
    trials = [make_trial(dims=32, n=64, epochs=4, lr=lr, batch_size=1, schedule="constant",
                         warmup_fraction=0.0, data=TESTBED) for lr in (0.2, 40.0, 0.05)]
    results = linreg.train_many(trials)
    assert [r.status for r in results] == ["COMPLETED", "DIVERGED", "COMPLETED"]
    assert "at step 64" in results[1].error and results[1].curves == [] and results[1].tokens_seen == 64
    for trial, result in zip(trials[::2], results[::2]):
        np.testing.assert_allclose([r["val_loss"] for r in result.curves], sgd_one_step_at_a_time(trial), rtol=1e-9)


def test_blocks_of_steps_are_single_steps_up_to_rounding(monkeypatch):
    trials = [make_trial(dims=256, n=300, epochs=2, lr=lr, batch_size=1, schedule="constant",
                         warmup_fraction=0.0, data=TESTBED) for lr in (0.7, 0.2, 0.05)]
    blocked = [r.val_loss for r in linreg.train_many(trials)]
    monkeypatch.setattr(linreg, "ROWS_PER_BLOCK", 1)
    assert [r.val_loss for r in linreg.train_many(trials)] == pytest.approx(blocked, rel=1e-9)


def test_vector_groups_are_the_lrs_of_one_grid_point():
    trials = [make_trial(lr=lr, seed=seed, n=n) for n in (100, 200) for seed in (0, 1) for lr in (0.1, 0.2)]
    trials = [t.model_copy(update={"trial_id": trial_id(t.config)}) for t in trials]
    groups = vector_groups(trials)
    assert [len(g) for g in groups] == [2, 2, 2, 2]
    assert all({t.config.lr for t in g} == {0.1, 0.2} and len({(t.config.seed, t.config.unique_tokens) for t in g}) == 1
               for g in groups)
    with pytest.raises(ValueError, match="differ only in lr"):
        linreg.train_many(trials[:3])


def test_testbed_problem_is_the_issues():
    """lambda_i ~ (i + 8)^-2 with trace 1; lambda_i w*_i^2 ~ (i + 8)^-3 with unit signal variance."""
    h, w_star = gaussian.problem(2048, GaussianDataSpec(**TESTBED))
    i = np.arange(1, 2049) + 8.0
    assert h.sum() == pytest.approx(1.0) and h[9] / h[0] == pytest.approx((18 / 9) ** -2)
    signal = h * w_star**2
    assert signal.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(signal / signal[0], (i / 9) ** -3, rtol=1e-10)


def test_data_per_seed_draws_each_seeds_own_nested_samples():
    data = GaussianDataSpec(**TESTBED)
    a, _ = gaussian.samples(1500, 16, data, trial_seed=0)
    b, _ = gaussian.samples(3000, 16, data, trial_seed=0)
    c, _ = gaussian.samples(1500, 16, data, trial_seed=1)
    assert np.array_equal(a, b[:1500]) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="trial_seed"):
        gaussian.samples(10, 16, data)


def test_new_data_options_leave_existing_trial_ids_alone():
    """The shipped testbed's previous spec (spectrum_decay 1.5, no offset, top-scaled, shared data)
    has the ids it had before spectrum_offset, spectrum_scale and data_per_seed existed."""
    old = load_sweep({
        "name": "linreg-reuse", "trainer": "linreg", "model": {"dims": 2048},
        "data": {"source": "gaussian", "gaussian": {"spectrum_decay": 1.5, "target_decay": 1.0, "noise": 0.1, "seed": 0},
                 "unique_tokens": 64},
        "epochs": 1, "lr": 0.05, "weight_decay": 0.0, "seed": 0,
        "train": {"batch_size": 1, "schedule": "constant", "warmup_fraction": 0.0},
    })
    from scalegrid.grid import expand

    assert [t.trial_id for t in expand(old, describe(old.data))] == ["e11fc65483d21b80"]  # in the pins before this change


def test_one_pass_problem_reads_the_runs_configs():
    configs = [make_trial(dims=64, lr=lr, seed=s, data=TESTBED, batch_size=1).config.model_dump_json()
               for lr in (0.1, 0.2) for s in (0, 1)]
    found = gaussian.one_pass_problem(configs)
    h, w_star = gaussian.problem(64, GaussianDataSpec(**TESTBED))
    assert found.batch_size == 1 and found.noise == 0.1
    np.testing.assert_array_equal(found.h, h)
    np.testing.assert_array_equal(found.signal, w_star**2)
    other = make_trial(dims=64, data={**TESTBED, "noise": 0.2}).config.model_dump_json()
    assert gaussian.one_pass_problem([*configs, other]) is None  # two problems: no single reference
    assert gaussian.one_pass_problem(["{}"]) is None

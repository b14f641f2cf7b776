"""Per-epoch gradient diagnostics: exact on full-batch linreg, the closed-form SNR of Gaussian
regression, and no effect on what the lm trainer computes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scalegrid.data import gaussian
from scalegrid.trainers import get_trainer
from scalegrid.trainers.diagnostics import curvature, epoch_diagnostics, probe_rows

from test_linreg_trainer import make_trial


def run(trial):
    rows = []
    return get_trainer(trial.config.trainer)(trial, rows.append), rows


def test_full_batch_gd_diagnostics_are_the_exact_gradients():
    """batch = n: every probe batch is the whole set, so g_bar is the full gradient of GD's iterate."""
    n, d, lr = 64, 16, 0.5
    trial = make_trial(dims=d, n=n, epochs=4, lr=lr, batch_size=n, schedule="constant", warmup_fraction=0.0,
                       diagnostics=True, probe_batches=3)
    result, rows = run(trial)
    x, y = gaussian.samples(n, d, trial.config.data, trial_seed=0)
    w, grads = np.zeros(d), []
    for _ in range(4):
        w -= lr * x.T @ (x @ w - y) / n
        grads.append(x.T @ (x @ w - y) / n)
    assert [r["grad_norm"] for r in rows] == pytest.approx([np.linalg.norm(g) for g in grads], rel=1e-9)
    cosines = [g @ p / np.linalg.norm(g) / np.linalg.norm(p) for p, g in zip(grads, grads[1:])]
    assert math.isnan(rows[0]["grad_cosine"]) and [r["grad_cosine"] for r in rows[1:]] == pytest.approx(cosines, rel=1e-9)
    assert all(r["grad_snr"] > 1e6 for r in rows)  # identical probe gradients: no noise
    assert rows[-1]["grad_gram_top"] == pytest.approx([np.linalg.norm(grads[-1]) ** 2, 0, 0], rel=1e-9, abs=1e-12)
    val = [r["val_loss"] for r in rows]
    assert math.isnan(rows[1]["val_curvature"]) and rows[3]["val_curvature"] == pytest.approx(val[3] - 2 * val[2] + val[1])


def test_snr_at_w0_is_the_closed_form_of_gaussian_regression():
    """At w = 0 (lr ~ 0), g_i of a batch of m samples has mean H delta and noise
    tr Var = ((delta' H delta + sigma^2) tr H + ||H delta||^2) / m, delta = -w*."""
    d, m, p, sigma = 32, 4, 1024, 0.5
    trial = make_trial(dims=d, n=m * p, epochs=1, lr=1e-12, batch_size=m, schedule="constant", warmup_fraction=0.0,
                       diagnostics=True, probe_batches=p, data={"noise": sigma})
    _, (row,) = run(trial)
    h, w_star = gaussian.problem(d, trial.config.data)
    mean = h * w_star  # H delta up to sign
    noise = ((w_star @ (h * w_star) + sigma**2) * h.sum() + mean @ mean) / m
    assert row["grad_norm"] == pytest.approx(np.linalg.norm(mean), rel=0.05)
    assert row["grad_snr"] == pytest.approx(mean @ mean / noise, rel=0.1)


def test_statistics_from_a_gram_matrix():
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((5, 40)) + 3.0
    previous = rng.standard_normal(40)
    stats = epoch_diagnostics(grads @ grads.T, float(grads.mean(0) @ previous), float(np.linalg.norm(previous)))
    g_bar = grads.mean(0)
    noise = ((grads - g_bar) ** 2).sum(1).sum() / 4
    assert stats["grad_norm"] == pytest.approx(np.linalg.norm(g_bar))
    assert stats["grad_snr"] == pytest.approx((g_bar @ g_bar - noise / 5) / noise)
    assert stats["grad_cosine"] == pytest.approx(g_bar @ previous / np.linalg.norm(g_bar) / np.linalg.norm(previous))
    assert stats["grad_gram_top"] == pytest.approx(sorted(np.linalg.eigvalsh(grads.T @ grads / 5))[::-1][:3])
    assert math.isnan(curvature([1.0, 0.5])) and curvature([3.0, 1.0, 0.5, 0.4]) == pytest.approx(0.4)
    rows = probe_rows(100, 4, 8, seed=1)
    assert rows.shape == (4, 8) and len(set(rows.ravel())) == 32 and (rows == probe_rows(100, 4, 8, seed=1)).all()
    with pytest.raises(ValueError, match="at least 2"):
        epoch_diagnostics(np.ones((1, 1)), None, None)


def test_lm_diagnostics_change_no_loss_and_fill_every_epoch_end(lm_trial):
    plain, plain_rows = run(lm_trial(epochs=3, unique_tokens=1024, train={"eval_every": 3}))
    probed, rows = run(lm_trial(epochs=3, unique_tokens=1024, train={"eval_every": 3, "diagnostics": True, "probe_batches": 3}))
    assert probed.val_loss == plain.val_loss and probed.train_loss == plain.train_loss
    at = {r["step"]: r["val_loss"] for r in rows}
    assert all(at[r["step"]] == r["val_loss"] for r in plain_rows)
    ends = [r for r in rows if "grad_norm" in r]
    assert [r["step"] for r in ends] == [4, 8, 12]  # 4 steps per epoch
    assert all(r["grad_norm"] > 0 and r["grad_snr"] >= 0 and len(r["grad_gram_top"]) == 3 for r in ends)
    assert math.isnan(ends[0]["grad_cosine"]) and all(-1 <= r["grad_cosine"] <= 1 for r in ends[1:])
    assert ends[2]["val_curvature"] == pytest.approx(ends[2]["val_loss"] - 2 * ends[1]["val_loss"] + ends[0]["val_loss"])

"""The `linreg` trainer: multi-pass SGD on over-parameterised linear regression, the epoch theory testbed.

Data (`GaussianDataSpec`): x ~ N(0, H) with H = diag(i^-spectrum_decay), i = 1..d, and
y = <w*, x> + noise * N(0, 1), where w*_i ~ i^-target_decay scaled so that w*^T H w* = 1 (the
signal has unit variance, so the excess risk of w = 0 is 1 and `noise` is the noise-to-signal
ratio). Sample j comes from block j // 1024 of a generator seeded by (data seed, d, block), so the
N samples of a trial are the same for every trial with that data seed and d, and a larger N
holds the smaller one's samples as its prefix.

Training: w starts at 0; K epochs of minibatch SGD on 0.5 * (x.w - y)^2 with `batch_size` samples
per step, the sample order reshuffled every epoch from (trial seed, epoch) (with `data_order:
sequential`, the samples' own order), step size from the
shared schedule (`schedule.lr_at`), and decoupled weight decay (w <- w - lr * (grad + wd * w)).

Metrics, exact rather than sampled: `val_loss` is the excess risk (w - w*)^T H (w - w*),
`train_loss` the empirical risk mean_j (x_j.w - y_j)^2 over the N training samples. A curve row
is reported at the end of every epoch; with `schedule: constant` and `warmup_fraction: 0` the row
at epoch k is exactly the k-epoch result, so one run yields every epoch count up to K.
A step size so large that the excess risk passes 1e6 (or overflows) ends the trial as DIVERGED.

A default trial (d = 256, N = 1000, K = 4, batch 16) takes a few milliseconds: numpy, float64.
"""

from __future__ import annotations

import math
import time

import numpy as np

from scalegrid.spec import GaussianDataSpec
from scalegrid.trainers.schedule import lr_at
from scalegrid.trial import Report, Status, Trial, TrialResult

GENERATOR_VERSION = "gaussian-v1"  # bump when the data a spec generates changes
_BLOCK = 1024  # samples per generator block
DIVERGED_RISK = 1e6  # an excess risk above this (w = 0 has 1) ends the trial as DIVERGED


def train(trial: Trial, report: Report) -> TrialResult:
    start = time.perf_counter()
    cfg, t = trial.config, trial.config.train
    shape, data = cfg.model, cfg.data
    h, w_star = problem(shape.dims, data)
    x, y = samples(cfg.unique_tokens, shape.dims, data)
    n, batch = len(y), min(t.batch_size, len(y))
    steps_per_epoch = math.ceil(n / batch)
    total_steps = cfg.epochs * steps_per_epoch
    w = np.zeros(shape.dims)
    curves: list[dict] = []
    step, lr, error = 0, cfg.lr, None
    shuffled = cfg.data_order == "shuffled"  # else `sequential`: the samples' own order every epoch

    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run overflows: checked below
        for epoch in range(1, cfg.epochs + 1):
            order = np.random.default_rng([cfg.seed, epoch]).permutation(n) if shuffled else np.arange(n)
            for i in range(0, n, batch):
                lr = lr_at(step, total_steps, cfg.lr, t)
                xb, yb = x[order[i : i + batch]], y[order[i : i + batch]]
                grad = xb.T @ (xb @ w - yb) / len(yb)
                w -= lr * (grad + cfg.weight_decay * w)
                step += 1
            risk = float(h @ (w - w_star) ** 2)
            row = {
                "step": step,
                "epoch": epoch,
                "tokens_seen": epoch * n,
                "train_loss": float(np.mean((x @ w - y) ** 2)),
                "val_loss": risk,
                "lr": lr,
                "wall_s": time.perf_counter() - start,
            }
            if not risk <= DIVERGED_RISK:  # also true for NaN
                error = f"excess risk {risk:.3g} at step {step}: diverged (w = 0 has 1)"
                if not (math.isfinite(risk) and math.isfinite(row["train_loss"])):
                    error = f"non-finite loss at step {step}"
                break
            curves.append(row)
            report(row)

    tokens_seen, diverged = epoch * n, error is not None
    risks = [row["val_loss"] for row in curves]
    return TrialResult(
        status=Status.DIVERGED if diverged else Status.COMPLETED,
        params=shape.num_params(),
        params_nonembed=shape.num_params(non_embedding=True),
        tokens_seen=tokens_seen,
        flops=float(shape.flops_per_token() * tokens_seen),
        val_loss=math.nan if diverged else risks[-1],
        best_val_loss=min(risks, default=math.nan),
        train_loss=math.nan if diverged else curves[-1]["train_loss"],
        error=error,
        curves=curves,
        extra={"steps": total_steps},
    )


def problem(dims: int, data: GaussianDataSpec) -> tuple[np.ndarray, np.ndarray]:
    """(the diagonal of H, w*): H_ii = i^-spectrum_decay, w*_i ~ i^-target_decay with w*^T H w* = 1."""
    i = np.arange(1, dims + 1, dtype=np.float64)
    h = i**-data.spectrum_decay
    w_star = i**-data.target_decay
    return h, w_star / math.sqrt(h @ w_star**2)


def samples(n: int, dims: int, data: GaussianDataSpec) -> tuple[np.ndarray, np.ndarray]:
    """The first n samples (x [n, dims], y [n]) of the data seed's stream."""
    h, w_star = problem(dims, data)
    xs, ys = [], []
    for block in range(math.ceil(n / _BLOCK)):
        rng = np.random.default_rng([data.seed, dims, block])
        x = rng.standard_normal((_BLOCK, dims)) * np.sqrt(h)
        xs.append(x)
        ys.append(x @ w_star + data.noise * rng.standard_normal(_BLOCK))
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]

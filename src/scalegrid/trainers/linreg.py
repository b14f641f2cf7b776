"""The `linreg` trainer: multi-pass SGD on over-parameterised linear regression, the epoch theory testbed.

Data (`GaussianDataSpec`): x ~ N(0, H) with H = diag((i + offset)^-spectrum_decay), i = 1..d, scaled
so that its top eigenvalue (`spectrum_scale: top`) or its trace (`trace`) is 1, and
y = <w*, x> + noise * N(0, 1), where w*_i ~ (i + offset)^-target_decay scaled so that w*^T H w* = 1
(the signal has unit variance, so the excess risk of w = 0 is 1 and `noise` is the noise-to-signal
ratio). Sample j comes from block j // 1024 of a generator seeded by (data seed, d, block), or with
`data_per_seed` by (data seed, trial seed, d, block): the N samples of a trial are the same for
every trial with that data seed and d (and trial seed), and a larger N holds the smaller one's
samples as its prefix. The trial seed is `seed`, or for an extra seed of a point (`member` > 0:
`search.confirm_seeds`) its own (`TrialConfig.member_seed`).

Training: w starts at 0; K epochs of minibatch SGD on 0.5 * (x.w - y)^2 with `batch_size` samples
per step, the sample order reshuffled every epoch from (trial seed, epoch) (with `data_order:
sequential`, the samples' own order), step size from the
shared schedule (`schedule.lr_at`), and decoupled weight decay (w <- w - lr * (grad + wd * w)).

Metrics, exact rather than sampled: `val_loss` is the excess risk (w - w*)^T H (w - w*),
`train_loss` the empirical risk mean_j (x_j.w - y_j)^2 over the N training samples. A curve row
is reported at the end of every epoch; with `schedule: constant` and `warmup_fraction: 0` the row
at epoch k is exactly the k-epoch result, so one run yields every epoch count up to K.
A step size so large that the excess risk passes 1e6 (or overflows) ends the trial as DIVERGED.

Vectorised: `train_many` trains the trials of one grid point that differ only in lr in one pass
(the orchestrator groups them by `vector_key`). They share their samples and their order, so one
kernel advances all their weights together, as the rows of one matrix W [lrs, d], and each trial
still gets its own result. Without weight decay the kernel solves the steps of `ROWS_PER_BLOCK`
samples at once: within a block, the residual of sample j is its residual at the block's start
minus what the updates of earlier steps changed, r_j = x_j.w_0 - y_j - sum_i lr_i/b (x_j.x_i) r_i
(i over the samples of earlier steps), a unit lower-triangular system per lr; then
w -= sum_i lr_i/b r_i x_i. That is the arithmetic of one step at a time up to rounding, in a few
matrix products instead of many small ones (batch 1, d = 2048, 13 lrs: 2.5x less CPU,
data and evaluation included; `benchmarks/bench_reuse.py --kernel`).

A default trial (d = 256, N = 1000, K = 4, batch 16) takes a few milliseconds: numpy, float64.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from scalegrid.data.gaussian import problem, samples
from scalegrid.grid import content_hash
from scalegrid.trainers.diagnostics import curvature, epoch_diagnostics, probe_rows
from scalegrid.trainers.schedule import lr_at
from scalegrid.trial import Report, Status, Trial, TrialConfig, TrialResult

DIVERGED_RISK = 1e6  # an excess risk above this (w = 0 has 1) ends the trial as DIVERGED
ROWS_PER_BLOCK = 16  # samples of the SGD steps solved together (see the module docstring); 1 step with weight decay


def train(trial: Trial, report: Report) -> TrialResult:
    return train_many([trial], [report])[0]


def vector_key(config: TrialConfig) -> str:
    """Trials with equal keys (everything but lr) can share one `train_many` pass."""
    return content_hash(config.model_dump(mode="json", exclude={"lr"}))


@dataclass
class _Run:
    """One trial inside a vectorised pass: its curve so far, and why it stopped if it did."""

    lr: float
    report: Report
    curves: list[dict] = field(default_factory=list)
    error: str | None = None


def train_many(trials: Sequence[Trial], reports: Sequence[Report] | None = None) -> list[TrialResult]:
    """Train trials that differ only in lr, in one pass; one result per trial, in order, and
    every trial's curve rows to its own report."""
    if len({vector_key(t.config) for t in trials}) > 1:
        raise ValueError("train_many needs trials that differ only in lr (one vector_key)")
    cfg = trials[0].config
    runs = [_Run(t.config.lr, report) for t, report in zip(trials, reports or [_ignore] * len(trials))]
    h, w_star = problem(cfg.model.dims, cfg.data)
    x, y = samples(cfg.unique_tokens, cfg.model.dims, cfg.data, trial_seed=cfg.member_seed)  # member 0: its seed
    _train_runs(runs, x, y, h, w_star, cfg)
    return [_result(run, cfg) for run in runs]


def _ignore(row: dict) -> None:
    pass


def _total_steps(cfg: TrialConfig) -> int:
    return cfg.epochs * math.ceil(cfg.unique_tokens / min(cfg.train.batch_size, cfg.unique_tokens))


def _lr_scale(cfg: TrialConfig) -> np.ndarray:
    """The schedule's factor at every step (lr_at is linear in the peak lr): shared by all lrs."""
    steps, per_epoch = _total_steps(cfg), _total_steps(cfg) // cfg.epochs
    if cfg.train.schedule == "constant" and cfg.train.warmup_fraction == 0:
        return np.ones(steps)
    return np.array([lr_at(step, steps, 1.0, cfg.train, steps_per_epoch=per_epoch) for step in range(steps)])


def _train_runs(runs: list[_Run], x: np.ndarray, y: np.ndarray, h: np.ndarray, w_star: np.ndarray,
                cfg: TrialConfig) -> None:
    """K epochs of SGD for every run (one sample order, one lr each) at once."""
    start, lr_scale = time.perf_counter(), _lr_scale(cfg)
    n, batch = len(y), min(cfg.train.batch_size, len(y))
    steps_per_epoch = math.ceil(n / batch)
    shuffled = cfg.data_order == "shuffled"  # else `sequential`: the samples' own order every epoch
    active = list(runs)
    w = np.zeros((len(active), len(w_star)))
    probe = _Probe.build(x, y, cfg, len(active)) if cfg.train.diagnostics else None
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run overflows: checked below
        for epoch in range(1, cfg.epochs + 1):
            order = np.random.default_rng([cfg.member_seed, epoch]).permutation(n) if shuffled else np.arange(n)
            steps = slice((epoch - 1) * steps_per_epoch, epoch * steps_per_epoch)
            lrs = np.array([run.lr for run in active])[:, None] * lr_scale[steps][None, :]
            sgd_epoch(w, x, y, order, batch, lrs, cfg.weight_decay)
            risks = ((w - w_star) ** 2) @ h
            train_losses = np.mean((x @ w.T - y[:, None]) ** 2, axis=0)
            measured = probe.measure(w) if probe else [{}] * len(active)
            keep = []
            for i, run in enumerate(active):
                row = {"step": epoch * steps_per_epoch, "epoch": epoch, "tokens_seen": epoch * n,
                       "train_loss": float(train_losses[i]), "val_loss": float(risks[i]),
                       "lr": float(lrs[i, -1]), "wall_s": time.perf_counter() - start, **measured[i]}
                if probe:
                    row["val_curvature"] = curvature([r["val_loss"] for r in run.curves] + [row["val_loss"]])
                run.error = _divergence(row)
                if run.error is None:
                    run.curves.append(row)
                    run.report(row)
                    keep.append(i)
            if len(keep) < len(active):  # diverged runs leave the pass
                active, w = [active[i] for i in keep], w[keep]
                if probe:
                    probe.previous = probe.previous[keep]
            if not active:
                break


@dataclass
class _Probe:
    """The diagnostics' fixed probe batches (`trainers/diagnostics.py`) and each run's previous
    mean probe gradient."""

    x: np.ndarray  # [P, batch, d]
    y: np.ndarray  # [P, batch]
    previous: np.ndarray  # [runs, d]: g_bar of the previous epoch (NaN before the first)

    @classmethod
    def build(cls, x: np.ndarray, y: np.ndarray, cfg: TrialConfig, runs: int) -> _Probe:
        rows = probe_rows(len(y), cfg.train.probe_batches, cfg.train.batch_size, cfg.member_seed)
        return cls(x[rows], y[rows], np.full((runs, x.shape[1]), np.nan))

    def gradients(self, w: np.ndarray) -> np.ndarray:
        """[runs, P, d]: the gradient of the mean of 0.5 (x.w - y)^2 over each probe batch."""
        residuals = np.einsum("pbd,rd->rpb", self.x, w) - self.y[None]
        return np.einsum("rpb,pbd->rpd", residuals, self.x) / self.x.shape[1]

    def measure(self, w: np.ndarray) -> list[dict]:
        """Each run's statistics at weights w [runs, d]; remembers g_bar for the next epoch."""
        grads = self.gradients(w)
        means = grads.mean(axis=1)
        rows = []
        for i, g in enumerate(grads):
            first = np.isnan(self.previous[i, 0])
            rows.append(epoch_diagnostics(g @ g.T, None if first else float(means[i] @ self.previous[i]),
                                          None if first else float(np.linalg.norm(self.previous[i]))))
        self.previous = means
        return rows


def _divergence(row: dict) -> str | None:
    risk, step = row["val_loss"], row["step"]
    if risk <= DIVERGED_RISK:  # false for NaN
        return None
    if not (math.isfinite(risk) and math.isfinite(row["train_loss"])):
        return f"non-finite loss at step {step}"
    return f"excess risk {risk:.3g} at step {step}: diverged (w = 0 has 1)"


def sgd_epoch(w: np.ndarray, x: np.ndarray, y: np.ndarray, order: np.ndarray, batch: int,
              lrs: np.ndarray, weight_decay: float) -> None:
    """One epoch of minibatch SGD for several step sizes at once, in place.

    w [runs, d]; lrs [runs, steps]: each run's step size at each step of the epoch.
    """
    steps = lrs.shape[1]
    per_block = 1 if weight_decay else max(1, ROWS_PER_BLOCK // batch)  # decay would scale every earlier update
    for first in range(0, steps, per_block):
        rows = order[first * batch : (first + per_block) * batch]
        xb, yb = x[rows], y[rows]
        step_of_row = np.arange(len(rows)) // batch
        batch_sizes = np.bincount(step_of_row)  # the epoch's last step may be short
        coef = lrs[:, first + step_of_row] / batch_sizes[step_of_row]  # [runs, rows]
        residuals = (xb @ w.T - yb[:, None]).T  # [runs, rows] at the block's start
        if batch_sizes.size > 1:
            earlier = step_of_row[:, None] > step_of_row[None, :]
            coupling = np.where(earlier, xb @ xb.T, 0.0)  # x_j . x_i for i in an earlier step
            system = np.eye(len(rows)) + coupling[None] * coef[:, None, :]
            residuals = np.linalg.solve(system, residuals[..., None])[..., 0]
        update = (coef * residuals) @ xb
        if weight_decay:
            update += (lrs[:, first] * weight_decay)[:, None] * w
        w -= update


def _result(run: _Run, cfg: TrialConfig) -> TrialResult:
    shape, diverged = cfg.model, run.error is not None
    epochs_done = len(run.curves) + diverged
    tokens_seen = epochs_done * cfg.unique_tokens
    risks = [row["val_loss"] for row in run.curves]
    return TrialResult(
        status=Status.DIVERGED if diverged else Status.COMPLETED,
        params=shape.num_params(),
        params_nonembed=shape.num_params(non_embedding=True),
        tokens_seen=tokens_seen,
        flops=float(shape.flops_per_token() * tokens_seen),
        val_loss=math.nan if diverged else risks[-1],
        best_val_loss=min(risks, default=math.nan),
        train_loss=math.nan if diverged else run.curves[-1]["train_loss"],
        error=run.error,
        curves=run.curves,
        steps=_total_steps(cfg),
    )

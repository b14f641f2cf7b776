"""Multi-epoch reuse: how many fresh samples K epochs over N samples are worth, and K*(N).

Yan, Wen, Li, Luo, Chen & Lyu, "Larger Datasets Can Be Repeated More: A Theoretical Analysis of
Multi-Epoch Scaling in Linear Regression" (ICLR 2026), as presented in Lyu's slides (seeds/003):

    R(K, N) = min over lr of the seed-mean loss after K epochs over N samples ("optimal tuning of LR")
    E(K, N) = (1/N) min{ N' : R(1, N') <= R(K, N) }      effective reuse rate
    K*(N)   = where E(K, N) / K falls below 1 - eps       end of the effective-reuse regime
    K*(N)   = A ln N + B   or   K*(N) = a N^b             (the slides' log-linear law; a power law)

R(1, N') is the reference: the one-pass loss on fresh samples with its own lr tuned. For the linreg
testbed it is computed exactly at any N' (`one_pass.tuned_one_pass`); for any other table it is the
power law A1 / N'^B1 + C1 fitted to the one-epoch rows (`FittedOnePass`), extrapolated where needed.

The E(K, N) table carries percentile intervals from a bootstrap over seeds: each replicate draws
the seeds with replacement (one draw for every cell, since a seed's runs at different N share
data), re-averages, re-tunes the lr per cell and recomputes E, K* and both laws from there. K* is
interpolated (linearly in log K) between the two epoch counts around the crossing; where E/K stays
above 1 - eps at every K tried it is censored at the largest K ("above"), where it starts below at
the smallest K, at that K ("below"). Muennighoff et al. (2023) model the same quantity as
E = 1 + R* (1 - exp(-(K - 1) / R*)), independent of N; `r_star` fits that R* per N on the table
(least squares on log E) to show it is not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from scalegrid.analysis.lbfgs import FitInputError, Objective
from scalegrid.analysis.least_squares import FitResult, percentile_ci
from scalegrid.analysis.laws import fit_power_law, inverse_power_law
from scalegrid.analysis.one_pass import sample_grid, tuned_one_pass
from scalegrid.analysis.tables import numeric_column, positive_column, require_columns

EPS = (0.1, 0.2, 0.3, 0.5)  # K* thresholds reported: E(K, N) >= (1 - eps) K
TUNED = ("lr", "weight_decay")  # axes tuned per (N, K) when the table has them; seeds are averaged
R_STAR_RANGE = (1e-2, 1e4)  # the R* search interval; a fit at its top means "no saturation seen"


class OnePassReference(Protocol):
    """R(1, n) on fresh samples: `fresh_samples` inverts it (NaN: beyond what it knows)."""

    def fresh_samples(self, loss: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class FittedOnePass:
    """The one-pass curve of a table without a computable reference: A / n^B + C on its K = 1 rows."""

    fit: FitResult

    def fresh_samples(self, loss: np.ndarray) -> np.ndarray:
        p = self.fit.params
        return np.where(np.isnan(loss), np.nan, inverse_power_law(loss, p["A"], p["B"], p["C"]))


def fit_one_pass(table: pd.DataFrame, *, samples: str = "unique_tokens", epochs: str = "epochs",
                 loss: str = "val_loss", objective: Objective = Objective(), bootstrap: int = 0,
                 seed: int = 0) -> FitResult:
    """Fit L(1, N) = A / N^B + C to the lowest one-epoch loss at each N."""
    require_columns(table, samples, epochs, loss)
    one = table[numeric_column(table, epochs) == 1]
    one = one.groupby(samples, sort=True)[loss].min().reset_index()
    if len(one) < 3:
        raise FitInputError(
            f"the reuse rate needs one-pass rows ({epochs} == 1) at 3 or more values of "
            f"{samples!r} to fit the fresh-data curve; found {len(one)}"
        )
    return fit_power_law(one, samples, loss, objective=objective, bootstrap=bootstrap, seed=seed)


class GaussianProblem(Protocol):
    """The runs' linear-regression problem (`trainers.linreg.OnePassProblem`)."""

    h: np.ndarray
    signal: np.ndarray
    noise: float
    batch_size: int


def one_pass_reference(rows: pd.DataFrame, problem: GaussianProblem | None = None, *,
                       samples: str = "unique_tokens", epochs: str = "epochs",
                       loss: str = "val_loss") -> tuple[OnePassReference, dict]:
    """The reference for `rows`, and a description of it (for fits.json and the report).

    Exact (`one_pass.tuned_one_pass`) when the runs' Gaussian `problem` is known and the rows have
    an lr column: the one-pass risk at sample counts up to twice the largest N x K, lr tuned per
    count on the ladder of the rows' lrs. Otherwise the power law fitted to the one-epoch rows.
    """
    if problem is not None and "lr" in rows.columns:
        largest = float((numeric_column(rows, samples) * numeric_column(rows, epochs)).max())
        curve = tuned_one_pass(problem.h, problem.signal, problem.noise, np.unique(rows["lr"]),
                               sample_grid(2 * largest, batch_size=problem.batch_size), batch_size=problem.batch_size)
        return curve, {"kind": "exact", "what": "one-pass SGD on fresh samples: the expected risk computed "
                       "exactly, the lr tuned per sample count on the runs' lr ladder",
                       "largest_samples": int(curve.samples[-1]), "ladder": [float(v) for v in curve.ladder]}
    fit = fit_one_pass(rows, samples=samples, epochs=epochs, loss=loss)
    return FittedOnePass(fit), {"kind": "fitted", "what": "A / N^B + C fitted to the one-epoch rows, extrapolated",
                                "params": {k: float(v) for k, v in fit.params.items()}}


# ---------------------------------------------------------------------------------------------
# From results to per-epoch rows


def epoch_rows(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (trial, epoch k) whose loss is the k-epoch result, with the run's columns.

    A run with a constant schedule and no warmup (read from `config_json`) gives one row per curve
    row at a whole epoch, `epochs` = that epoch; a DIVERGED one also gives an infinite loss at each
    epoch after its last good one (that lr is no candidate there). Other COMPLETED runs give their
    run row; FAILED runs nothing.
    """
    require_columns(runs, "trial_id", "status", "epochs", "val_loss")
    constant = runs.apply(_constant_schedule, axis=1) if "config_json" in runs.columns else pd.Series(False, index=runs.index)
    done = runs["status"] == "COMPLETED"
    whole = runs[done & ~constant]
    per_epoch = runs[constant & runs["status"].isin(["COMPLETED", "DIVERGED"])]
    if per_epoch.empty or curves.empty:
        return whole.reset_index(drop=True)
    points = curves.loc[curves["trial_id"].isin(per_epoch["trial_id"]), ["trial_id", "epoch", "val_loss"]]
    points = points[points["epoch"] == np.round(points["epoch"])]
    base = per_epoch.drop(columns=["epochs", "val_loss"])
    rows = points.rename(columns={"epoch": "epochs"}).merge(base, on="trial_id")
    rows = pd.concat([rows, _after_divergence(per_epoch, points)], ignore_index=True)
    rows["epochs"] = rows["epochs"].astype(np.int64)
    return pd.concat([whole, rows], ignore_index=True) if len(whole) else rows


def _constant_schedule(run: pd.Series) -> bool:
    try:
        train = json.loads(run["config_json"]).get("train", {})
    except (TypeError, ValueError, AttributeError):
        return False
    return train.get("schedule") == "constant" and float(train.get("warmup_fraction", 1)) == 0


def _after_divergence(runs: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """Infinite-loss rows for the epochs a DIVERGED run did not finish."""
    diverged = runs[runs["status"] == "DIVERGED"]
    last = points.groupby("trial_id")["epoch"].max()
    extra = []
    for _, run in diverged.iterrows():
        good = int(last.get(run["trial_id"], 0))
        for k in range(good + 1, int(run["epochs"]) + 1):
            extra.append({**run.drop(["epochs", "val_loss"]).to_dict(), "epochs": k, "val_loss": np.inf})
    return pd.DataFrame(extra)


# ---------------------------------------------------------------------------------------------
# The E(K, N) table


@dataclass(frozen=True)
class KStarLaw:
    """K*(N) at one eps fitted by one law: "log" K* = A ln N + B, "power" K* = a N^b."""

    eps: float
    law: str
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    samples: tuple[float, ...]  # the N whose K* is bracketed (the points fitted)
    observed: tuple[float, ...]
    fitted: tuple[float, ...]
    objective: float  # sum of squared residuals, in K (log) or ln K (power)

    @property
    def residuals(self) -> tuple[float, ...]:
        return tuple(o - f for o, f in zip(self.observed, self.fitted))

    def to_dict(self, samples: str = "unique_tokens") -> dict:
        return {
            "law": "K* = A ln N + B" if self.law == "log" else "K* = a N^b",
            "eps": self.eps, "params": dict(self.params), "ci": {k: list(v) for k, v in self.ci.items()},
            "objective": self.objective, "n_points": len(self.samples), "converged": True,
            "residuals": [{samples: n, "k_star": o, "fitted": f, "residual": o - f}
                          for n, o, f in zip(self.samples, self.observed, self.fitted)],
        }


@dataclass(frozen=True)
class ReuseAnalysis:
    table: pd.DataFrame  # per (N, K): lr, loss, effective_samples, effective_reuse (+ _lo, _hi), ...
    thresholds: pd.DataFrame  # per (N, eps): k_star (+ _lo, _hi), censored
    laws: tuple[KStarLaw, ...]  # per eps with >= 2 bracketed K*: the log and the power law
    r_star: pd.DataFrame  # per N: r_star (+ _lo, _hi), at_bound
    notes: tuple[str, ...] = field(default=())
    n_bootstrap: int = 0
    level: float = 0.95


def reuse_analysis(rows: pd.DataFrame, reference: OnePassReference, *, samples: str = "unique_tokens",
                   epochs: str = "epochs", loss: str = "val_loss", seed: str = "seed", eps=EPS,
                   bootstrap: int = 1000, rng_seed: int = 0, level: float = 0.95) -> ReuseAnalysis:
    """E(K, N), K*(N) at each eps with both laws, and R* per N, from per-(N, K, lr, seed) losses."""
    if bootstrap < 0 or not 0 < level < 1:
        raise FitInputError(f"bootstrap must be >= 0 and level in (0, 1) (got {bootstrap}, {level})")
    for e in eps:
        if not 0 < e < 1:
            raise FitInputError(f"eps must be in (0, 1), got {e}")
    cube = _Cube.of(rows, samples=samples, epochs=epochs, loss=loss, seed=seed)
    if cube.epochs.size < 2:
        raise FitInputError(f"the reuse rate compares epoch counts: {epochs!r} has one value ({cube.epochs[0]:g})")
    notes = [] if cube.seeds.size > 1 or not bootstrap else ["one seed: no bootstrap intervals"]
    bootstrap = bootstrap if cube.seeds.size > 1 else 0
    weights = _seed_weights(cube.seeds.size, bootstrap, rng_seed)
    best, which = cube.tuned(weights)  # [N, K, 1 + B], the best setting's index at the point estimate
    fresh = reference.fresh_samples(best)
    reuse = fresh / cube.samples[:, None, None]
    table = cube.table(best[..., 0], which, fresh[..., 0], reuse, level, samples=samples, epochs=epochs, loss=loss)
    k_star = {e: _k_star(reuse, cube.epochs, e) for e in eps}
    thresholds = _thresholds(k_star, cube.samples, level, samples)
    laws = []
    for e, (values, censored) in k_star.items():
        keep = censored[:, 0] == ""
        if keep.sum() < 2:
            notes.append(f"K* at eps {e:g} is bracketed at {int(keep.sum())} value(s) of {samples}; a law needs 2")
            continue
        laws += [_fit_law(e, kind, cube.samples[keep], values[keep], level) for kind in ("log", "power")]
    return ReuseAnalysis(table=table, thresholds=thresholds, laws=tuple(laws),
                         r_star=_r_star(reuse, cube.epochs, cube.samples, level, samples),
                         notes=tuple(notes), n_bootstrap=bootstrap, level=level)


@dataclass(frozen=True)
class _Cube:
    """Losses on the grid [N, K, setting, seed] (NaN: not run; inf: diverged)."""

    samples: np.ndarray
    epochs: np.ndarray
    settings: pd.DataFrame  # one row per tuned setting (lr, weight_decay), in cube order
    seeds: np.ndarray
    loss: np.ndarray

    @classmethod
    def of(cls, rows: pd.DataFrame, *, samples: str, epochs: str, loss: str, seed: str) -> _Cube:
        require_columns(rows, samples, epochs, loss)
        positive_column(rows, samples)
        positive_column(rows, epochs)
        values = pd.to_numeric(rows[loss], errors="coerce").to_numpy(float)
        if np.isnan(values).any() or (values <= 0).any():
            raise FitInputError(f"column {loss!r} has missing or non-positive values; drop those rows first")
        tuned = [c for c in TUNED if c in rows.columns]
        frame = rows.assign(_seed=rows[seed] if seed in rows.columns else 0, _setting=0, _loss=values)
        if tuned:
            settings = frame[tuned].drop_duplicates().sort_values(tuned).reset_index(drop=True)
            frame = frame.drop(columns="_setting").merge(settings.reset_index(names="_setting"), on=tuned)
        else:
            settings = pd.DataFrame(index=[0])
        axes = [np.unique(frame[c].to_numpy()) for c in (samples, epochs, "_setting", "_seed")]
        index = tuple(np.searchsorted(a, frame[c].to_numpy()) for a, c in zip(axes, (samples, epochs, "_setting", "_seed")))
        cube = np.full([a.size for a in axes], np.inf)
        np.minimum.at(cube, index, frame["_loss"].to_numpy())  # rows sharing a cell (an axis not tuned here): the lowest
        measured = np.zeros(cube.shape, dtype=bool)
        measured[index] = True
        return cls(axes[0], axes[1], settings, axes[3], np.where(measured, cube, np.nan))

    def tuned(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The lowest seed-mean loss per (N, K) under each weighting of the seeds [1 + B, seeds]."""
        loss = self.loss
        present = np.isfinite(loss) | np.isinf(loss)
        finite = np.where(np.isfinite(loss), loss, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (finite @ weights.T) / (present.astype(float) @ weights.T)  # [N, K, setting, 1 + B]
            mean = np.where(np.isinf(loss).astype(float) @ weights.T > 0, np.inf, mean)
        mean = np.where(np.isnan(mean), np.inf, mean)
        best = mean.min(axis=2)
        which = mean[..., 0].argmin(axis=2)
        return np.where(np.isinf(best), np.nan, best), which

    def table(self, best, which, fresh, reuse, level, *, samples, epochs, loss) -> pd.DataFrame:
        n, k = np.meshgrid(self.samples, self.epochs, indexing="ij")
        out = pd.DataFrame({samples: n.ravel(), epochs: k.ravel()})
        chosen = self.settings.iloc[which.ravel()].reset_index(drop=True)
        out = pd.concat([out, chosen], axis=1)
        seeds = np.isfinite(self.loss[np.arange(n.shape[0])[:, None], np.arange(n.shape[1])[None, :], which]).sum(-1)
        lo, hi = _interval(reuse, level)
        out = out.assign(**{loss: best.ravel(), "seeds": seeds.ravel(), "effective_samples": fresh.ravel(),
                            "effective_reuse": reuse[..., 0].ravel(), "effective_reuse_lo": lo.ravel(),
                            "effective_reuse_hi": hi.ravel()})
        out["reuse_efficiency"] = out["effective_reuse"] / out[epochs]
        if "lr" in self.settings.columns:
            out["lr_at_edge"] = self._lr_at_edge(out, samples)
        return out[np.isfinite(out[loss])].reset_index(drop=True)

    def _lr_at_edge(self, out: pd.DataFrame, samples: str) -> np.ndarray:
        """Whether the chosen lr is the largest or smallest tried at that N (the optimum may lie outside)."""
        tried = {}
        for i, n in enumerate(self.samples):
            run = np.isfinite(self.loss[i]).any(axis=(0, 2)) | np.isinf(self.loss[i]).any(axis=(0, 2))
            lrs = self.settings["lr"].to_numpy()[run]
            tried[n] = (lrs.min(), lrs.max()) if lrs.size else (np.nan, np.nan)
        edges = np.array([tried[n] for n in out[samples]])
        return (out["lr"].to_numpy() <= edges[:, 0]) | (out["lr"].to_numpy() >= edges[:, 1])


def _seed_weights(n_seeds: int, bootstrap: int, rng_seed: int) -> np.ndarray:
    """[1 + B, seeds]: every seed once (the estimate), then B multinomial resamples of the seeds."""
    counts = np.random.default_rng(rng_seed).multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=bootstrap)
    return np.vstack([np.ones(n_seeds), counts]).astype(float)


def _interval(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the replicates (the last axis, after the estimate)."""
    if values.shape[-1] < 3:
        nan = np.full(values.shape[:-1], np.nan)
        return nan, nan
    lo, hi = percentile_ci(np.moveaxis(values[..., 1:], -1, 0), level)
    return lo, hi


# ---------------------------------------------------------------------------------------------
# K*(N) and its laws; R* per N


def _k_star(reuse: np.ndarray, epochs: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """K* [N, 1 + B] where E/K first falls below 1 - eps (log-K interpolation), and its censoring."""
    ratio = reuse / epochs[None, :, None]
    level = 1 - eps
    below = ratio < level  # NaN (a loss beyond the reference) counts as not below
    first = below.argmax(axis=1)
    crossed = below.any(axis=1)
    j = np.clip(first, 1, epochs.size - 1)
    q0 = np.take_along_axis(ratio, (j - 1)[:, None], 1)[:, 0]
    q1 = np.take_along_axis(ratio, j[:, None], 1)[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.nan_to_num(np.clip((q0 - level) / (q0 - q1), 0, 1), nan=0.0)
    log_k = np.log(epochs)
    inside = np.exp(log_k[j - 1] + frac * (log_k[j] - log_k[j - 1]))
    k_star = np.where(~crossed, epochs[-1], np.where(first == 0, epochs[0], inside))
    censored = np.where(~crossed, "above", np.where(first == 0, "below", ""))
    return k_star, censored


def _thresholds(k_star: dict, samples: np.ndarray, level: float, name: str) -> pd.DataFrame:
    frames = []
    for eps, (values, censored) in k_star.items():
        lo, hi = _interval(values, level)
        frames.append(pd.DataFrame({name: samples, "eps": eps, "k_star": values[:, 0], "k_star_lo": lo,
                                    "k_star_hi": hi, "censored": censored[:, 0]}))
    return pd.concat(frames, ignore_index=True)


def _fit_law(eps: float, law: str, samples: np.ndarray, k_star: np.ndarray, level: float) -> KStarLaw:
    """Least squares of K* (log law) or ln K* (power law) on ln N, for the estimate and each replicate."""
    design = np.column_stack([np.log(samples), np.ones(samples.size)])
    y = k_star if law == "log" else np.log(k_star)
    slope, intercept = np.linalg.pinv(design) @ y  # each [1 + B]
    fitted = slope[0] * design[:, 0] + intercept[0]
    if law == "log":
        draws = {"A": slope, "B": intercept}
        fitted_k = fitted
    else:
        draws = {"a": np.exp(intercept), "b": slope}
        fitted_k = np.exp(fitted)
    lo, hi = _interval(np.vstack(list(draws.values())), level)
    ci = {} if np.isnan(lo).all() else {name: (float(l), float(h)) for name, l, h in zip(draws, lo, hi)}
    return KStarLaw(eps=eps, law=law, params={name: float(d[0]) for name, d in draws.items()}, ci=ci,
                    samples=tuple(map(float, samples)), observed=tuple(map(float, k_star[:, 0])),
                    fitted=tuple(map(float, fitted_k)), objective=float(((y[:, 0] - fitted) ** 2).sum()))


def muennighoff_reuse(epochs: np.ndarray, r_star: np.ndarray) -> np.ndarray:
    """E(K) = 1 + R* (1 - exp(-(K - 1) / R*)): Muennighoff et al.'s effective data over unique data."""
    return 1 + r_star * -np.expm1(-(epochs - 1) / r_star)


def _r_star(reuse: np.ndarray, epochs: np.ndarray, samples: np.ndarray, level: float, name: str) -> pd.DataFrame:
    """R* per N and replicate: least squares on log E by golden-section search over log R*."""
    log_e = np.log(np.where(reuse > 0, reuse, np.nan))  # [N, K, 1 + B]
    usable = np.isfinite(log_e)
    k = epochs[None, :, None]

    def sse(u: np.ndarray) -> np.ndarray:  # u = ln R*, [N, 1 + B]
        model = np.log(muennighoff_reuse(k, np.exp(u)[:, None, :]))
        return np.where(usable, (log_e - model) ** 2, 0.0).sum(axis=1)

    lo, hi = np.full(log_e.shape[::2], np.log(R_STAR_RANGE[0])), np.full(log_e.shape[::2], np.log(R_STAR_RANGE[1]))
    golden = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        left = sse(a) < sse(b)
        hi, lo = np.where(left, b, hi), np.where(left, lo, a)
    r = np.exp((lo + hi) / 2)
    r = np.where(usable.sum(axis=1) >= 2, r, np.nan)
    r_lo, r_hi = _interval(r, level)
    return pd.DataFrame({name: samples, "r_star": r[:, 0], "r_star_lo": r_lo, "r_star_hi": r_hi,
                         "at_bound": r[:, 0] >= 0.99 * R_STAR_RANGE[1]})

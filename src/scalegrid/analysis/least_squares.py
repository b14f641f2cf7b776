"""Fitting core shared by every law: objectives, a batched L-BFGS over many starts, bootstrap.

Every law in `scalegrid.analysis` is a `Model`: a function from an internal parameter vector
theta to the log of the predicted loss at each of n points, with its analytic gradient. A fit
minimises, over theta,

    huber (default):  sum_i w_i Huber_delta(log L_hat_i(theta) - log L_i)   delta = 1e-3
    lsq:              sum_i w_i (L_hat_i(theta) - L_i)^2

(Hoffmann et al. 2022, Besiroglu et al. 2024: Huber on log residuals; plain least squares on the
loss is what Marin's data-efficiency plots use). Weights are 1, or bootstrap resampling counts.

How a fit runs (`fit_model`):
1. All starts of the grid at once: `lbfgs_batched` runs L-BFGS on an (S starts x P params) array,
   one numpy evaluation of the objective and its gradient for every active start per step, each
   start stopping by SciPy L-BFGS-B's default rules (max |gradient| <= 1e-5, or relative decrease
   <= 2.2e-9), the optimiser of Besiroglu et al.'s replication.
2. The best start is polished by the same L-BFGS at tight tolerances relative to its objective
   (see `polish`); the result reports whether that optimiser converged.
3. Bootstrap (optional): B resamples of the rows, drawn as multinomial counts, refitted together
   as one batch warm-started at the fit; percentile intervals of the public parameters. Where a
   point is the mean of several seeds (`replicates`), each resample also redraws that point's
   seeds, so the intervals include the seed noise.

Memory is bounded whatever the number of points n: starts, polishes and bootstrap refits run in
chunks of at most MAX_ELEMENTS // n problems (each problem holds a few arrays of n floats), so a
fit holds about MAX_ELEMENTS floats per array at once (~0.5 GB in all at the default), however
many starts or resamples it runs. A table of fewer problems than a chunk is fitted in one batch,
exactly as before.

A law is fitted only where the points identify it: more points (and distinct x) than free
parameters. A fit through exactly as many points as parameters passes through all of them, and
its bootstrap "interval" has zero width; it is refused (`check_fit_args`). An interval of zero
width that remains (points exactly on the law) is left out of `ci` and named in `zero_width`.
`degeneracy` says why a fit that converged still says nothing (an exponent that may be 0, an
asymptote at its bound or far below the data); `FitResult.flags` holds those reasons.

Worked example (what `laws.fit_power_law` does for one column):

    >>> import numpy as np
    >>> from scalegrid.analysis.laws import PowerLawModel
    >>> x = np.array([1e6, 1e7, 1e8, 1e9, 1e10])
    >>> y = 400 * x**-0.3 + 1.8
    >>> model = PowerLawModel.from_columns([x])  # log L = LSE(a - B (log x - mu), c)
    >>> res = fit_model(model, y, model.default_starts(y), law="power-law", bootstrap=200)
    >>> {k: round(v, 6) for k, v in res.params.items()}, res.converged
    ({'A': 400.0, 'B': 0.3, 'C': 1.8}, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scalegrid.analysis.lbfgs import BatchFun, BatchResult, FitInputError, Model, Objective, ObjectiveKind, lbfgs_batched

# ---------------------------------------------------------------------------------------------
# Fit results


@dataclass(frozen=True)
class FitResult:
    """One fitted law: public parameters, percentile bootstrap intervals and optimiser report.

    `ci[name]` is (lo, hi) at `ci_level` (empty without bootstrap); `samples` holds the bootstrap
    refits' public parameters (B, len(params)) in the order of `params`, for derived quantities.
    """

    law: str
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    objective: float
    n_points: int
    converged: bool
    objective_kind: ObjectiveKind = "huber"
    ci_level: float = 0.95
    n_starts: int = 1
    n_bootstrap: int = 0
    n_bootstrap_failed: int = 0
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)
    n_params: int = 0  # the law's free parameters (the points must outnumber them)
    flags: tuple[str, ...] = ()  # why the fit is degenerate (`degeneracy`); empty: it is not
    zero_width: tuple[str, ...] = ()  # parameters whose bootstrap interval had zero width (left out of ci)

    @property
    def degenerate(self) -> bool:
        """The fit converged to something the points do not support: never a headline."""
        return bool(self.flags)

    def to_dict(self) -> dict:
        """The JSON shape of `scalegrid fit --json` (without the group)."""
        return {
            "params": {k: float(v) for k, v in self.params.items()},
            "ci": {k: [float(lo), float(hi)] for k, (lo, hi) in self.ci.items()},
            "objective": float(self.objective),
            "n_points": int(self.n_points),
            "n_params": int(self.n_params),
            "converged": bool(self.converged),
            "degenerate": self.degenerate,
            "flags": list(self.flags),
            "zero_width": list(self.zero_width),
        }

    def sample(self, name: str) -> np.ndarray:
        """The bootstrap draws of one parameter (empty without bootstrap)."""
        if self.samples is None:
            return np.empty(0)
        return self.samples[:, list(self.params).index(name)]


def percentile_ci(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13), ignoring failed refits."""
    tail = 50.0 * (1.0 - level)
    lo, hi = np.nanpercentile(samples, [tail, 100.0 - tail], axis=0)
    return lo, hi


ZERO_WIDTH = 1e-6  # an interval narrower than this, relative to its value, reads as no interval at all


def interval_table(
    names: Sequence[str], values: Sequence[float], samples: np.ndarray, level: float
) -> tuple[dict[str, tuple[float, float]], tuple[str, ...]]:
    """Percentile intervals by name, less the zero-width ones (returned apart): a zero-width
    interval says the points lie on the law exactly, not that the parameter is known exactly."""
    lo, hi = percentile_ci(samples, level)
    ci, zero = {}, []
    for name, value, a, b in zip(names, values, lo, hi):
        if np.isfinite(a) and np.isfinite(b) and b - a <= ZERO_WIDTH * max(abs(value), 1e-300):
            zero.append(name)
        else:
            ci[name] = (float(a), float(b))
    return ci, tuple(zero)


AT_BOUND = 1e-6  # an asymptote below this fraction of the lowest loss has run to its bound, 0
FAR_BELOW = 5.0  # ... one further below the lowest loss than this many spans of the losses is extrapolation


def degeneracy(
    result: FitResult, y: np.ndarray, *, exponents: Sequence[str], asymptote: str | None
) -> tuple[str, ...]:
    """Why a fit says nothing even though it converged, one phrase per reason (empty: it is sound).

    - an exponent <= 0, or whose interval includes 0: the loss does not (surely) fall with x;
    - the asymptote at its bound 0 (the fit wants no floor: log C ran to -inf), or below the lowest
      loss by more than FAR_BELOW times the span of the losses (the points do not reach it);
    - the optimiser did not meet its stopping rule, or a parameter ran to infinity.
    """
    flags = []
    if not result.converged:
        flags.append("the optimiser did not meet its stopping rule")
    if not all(np.isfinite(v) for v in result.params.values()):
        flags.append("a parameter ran to infinity")
    for name in exponents:
        value = result.params[name]
        lo = result.ci.get(name, (np.nan, np.nan))[0]
        if not value > 0:
            flags.append(f"exponent {name} = {value:.3g} is not positive")
        elif np.isfinite(lo) and lo <= 0:
            flags.append(f"the interval of exponent {name} includes 0")
    if asymptote is not None:
        floor, lowest, span = result.params[asymptote], float(np.min(y)), float(np.ptp(y))
        if floor <= AT_BOUND * lowest:
            flags.append(f"asymptote {asymptote} = {floor:.3g} sits at its bound 0")
        elif lowest - floor > FAR_BELOW * span:
            flags.append(f"asymptote {asymptote} = {floor:.4g} lies far below every measured loss "
                         f"(lowest {lowest:.4g}, span {span:.3g})")
    return tuple(flags)


def perfect_fit(n_points: int) -> float:
    """An objective this small is a perfect fit: RMS residual <= 1e-10 (log loss or loss)."""
    return 1e-20 * n_points


def check_fit_args(n_points: int, n_params: int, bootstrap: int, level: float) -> None:
    if n_points <= n_params:
        raise FitInputError(
            f"{n_points} points cannot identify {n_params} free parameters (a law through them fits "
            f"exactly and its intervals have zero width): give at least {n_params + 1} rows "
            "(check filters such as --drop-highest-loss)"
        )
    if bootstrap < 0:
        raise FitInputError(f"bootstrap must be >= 0, got {bootstrap}")
    if not 0 < level < 1:
        raise FitInputError(f"confidence level must be in (0, 1), got {level}")


def check_spread(values: np.ndarray, column: str, law: str, needed: int = 3, n_params: int | None = None) -> None:
    """A law in x is determined only by enough distinct x: rows that share one x fit any curve
    through them, and a fit would "converge" with intervals of zero width."""
    distinct = np.unique(values).size
    if distinct < needed:
        why = (f"{n_params} free parameters need at least {needed} to be identified" if n_params
               else f"the law needs at least {needed} to be determined")
        raise FitInputError(
            f"{law}: column {column!r} has {distinct} distinct value{'' if distinct == 1 else 's'}; "
            f"{why} (give rows at more values of {column})"
        )


MAX_ELEMENTS = 4_000_000  # problems x points evaluated at once (per array of floats: 32 MB)


def chunk_size(n_points: int) -> int:
    """How many problems (starts, resamples) of `n_points` points are evaluated together."""
    return max(1, MAX_ELEMENTS // max(1, n_points))


def chunked_lbfgs(fun: BatchFun, x0: np.ndarray, n_points: int, **options) -> BatchResult:
    """`lbfgs_batched` over the rows of x0 in chunks of `chunk_size(n_points)`: the problems are
    independent, so the result is the one batch's, with memory bounded."""
    size = chunk_size(n_points)
    if x0.shape[0] <= size:
        return lbfgs_batched(fun, x0, **options)
    floor = np.broadcast_to(np.asarray(options.pop("f_floor", 0.0), dtype=float), (x0.shape[0],))
    parts = []
    for lo in range(0, x0.shape[0], size):
        def part(x: np.ndarray, rows: np.ndarray, lo: int = lo) -> tuple[np.ndarray, np.ndarray]:
            return fun(x, rows + lo)
        parts.append(lbfgs_batched(part, x0[lo:lo + size], f_floor=floor[lo:lo + size], **options))
    return BatchResult(*(np.concatenate([getattr(r, name) for r in parts]) for name in ("x", "fun", "converged", "n_iter")))


def evaluate(fun: BatchFun, x: np.ndarray, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """`fun` at every row of x, in chunks of `chunk_size(n_points)`."""
    size = chunk_size(n_points)
    parts = [fun(x[lo:lo + size], np.arange(lo, min(lo + size, x.shape[0]))) for lo in range(0, x.shape[0], size)]
    return np.concatenate([f for f, _ in parts]), np.concatenate([g for _, g in parts])


def fit_model(
    model: Model,
    y: np.ndarray,
    starts: np.ndarray,
    *,
    law: str,
    objective: Objective = Objective(),
    bootstrap: int = 0,
    seed: int = 0,
    level: float = 0.95,
    n_polish: int = 1,
    max_iter: int = 1000,
    replicates: Sequence[np.ndarray] | None = None,
) -> FitResult:
    """Fit `model` to losses `y` from every row of `starts` (internal coordinates); see module doc.

    The best `n_polish` starts after the batched phase are polished at tight tolerances and the
    lowest objective wins. With `bootstrap` > 0, B resampled refits give percentile intervals;
    `replicates[i]` (the seed losses whose mean is y[i]) are redrawn in every resample.
    """
    y = np.asarray(y, dtype=float)
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    n_params = starts.shape[1]
    check_fit_args(y.size, n_params, bootstrap, level)
    fun = objective.batch_fun(model, y)
    batch = chunked_lbfgs(fun, starts, y.size, max_iter=max_iter)
    finite = np.flatnonzero(np.isfinite(batch.fun))
    if finite.size == 0:
        raise FitInputError(f"{law}: no start gave a finite objective; check the data for outliers")
    best = finite[np.argsort(batch.fun[finite], kind="stable")[: max(1, n_polish)]]
    polished = polish(fun, batch.x[best], f_floor=perfect_fit(y.size), n_points=y.size)
    worse = polished.fun > batch.fun[best]  # never let polishing make a start worse
    x = np.where(worse[:, None], batch.x[best], polished.x)
    f = np.where(worse, batch.fun[best], polished.fun)
    ok = np.where(worse, batch.converged[best], polished.converged)
    i = int(np.argmin(f))
    best_x, best_f, converged = x[i], float(f[i]), bool(ok[i])

    public = model.to_public(best_x[None, :])[0]
    params = dict(zip(model.names, map(float, public)))
    ci: dict[str, tuple[float, float]] = {}
    zero_width: tuple[str, ...] = ()
    samples = None
    n_failed = 0
    if bootstrap > 0:
        samples, n_failed = bootstrap_refits(
            model, y, best_x, objective=objective, n_boot=bootstrap, seed=seed, replicates=replicates
        )
        ci, zero_width = interval_table(model.names, public, samples, level)
    return FitResult(
        law=law,
        params=params,
        ci=ci,
        objective=best_f,
        n_points=int(y.size),
        converged=converged,
        objective_kind=objective.kind,
        ci_level=level,
        n_starts=int(starts.shape[0]),
        n_bootstrap=int(bootstrap),
        n_bootstrap_failed=int(n_failed),
        samples=samples,
        n_params=int(n_params),
        zero_width=zero_width,
    )


def polish(
    fun: BatchFun,
    x0: np.ndarray,
    *,
    max_iter: int = 2000,
    gtol: float = 1e-9,
    ftol: float = 1e-13,
    f_floor: float = 0.0,
    n_points: int = 1,
) -> BatchResult:
    """Refine starts (k, P) at tight tolerances, relative to each start's objective (in chunks
    bounded by `n_points`, the points each problem holds).

    Each problem's objective is divided by its value at x0, so "relative decrease <= ftol" and
    "max |gradient| <= gtol" mean the same for a Huber sum of 1e-5 as for one of 10. (SciPy's
    L-BFGS-B would do the same job, but it calls multi-threaded BLAS on tiny matrices, which on
    a busy machine costs milliseconds per iteration; this stays in the batched numpy code.)
    A line search that fails where the relative gradient is already <= 1e-6 has reached the
    optimum to float precision and counts as converged, and so does an objective <= f_floor
    (a perfect fit: with zero residuals L-BFGS only converges linearly and never meets the
    relative rules).
    """
    f0, _ = evaluate(fun, x0, n_points)
    scale = np.where(np.isfinite(f0) & (f0 > 0), f0, 1.0)

    def relative(x: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, g = fun(x, r)
        return f / scale[r], g / scale[r, None]

    res = chunked_lbfgs(relative, x0, n_points, max_iter=max_iter, gtol=gtol, ftol=ftol, f_floor=f_floor / scale)
    f, g = evaluate(relative, res.x, n_points)
    converged = res.converged | (np.isfinite(f) & (np.abs(g).max(axis=1) <= 1e-6))
    converged |= f * scale <= f_floor
    return BatchResult(x=res.x, fun=f * scale, converged=converged, n_iter=res.n_iter)


def bootstrap_refits(
    model: Model,
    y: np.ndarray,
    theta_hat: np.ndarray,
    *,
    objective: Objective,
    n_boot: int,
    seed: int,
    max_iter: int = 1000,
    replicates: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, int]:
    """B refits on rows resampled with replacement, all in one batch, each warm-started at the fit.

    Resampling is drawn as multinomial counts (B, n), which weight the objective exactly as a
    resampled table would; with `replicates`, each refit also sees every point's seeds redrawn
    (`seed_resampled`). The resamples are drawn and refitted `chunk_size(n)` at a time (one chunk
    for the tables a report fits), so B x n floats are never held at once. Returns the public
    parameters (B, P), NaN where a refit failed, and the number of failures.
    """
    rng = np.random.default_rng(seed)
    n = y.size
    samples, fun_values = [], []
    for lo in range(0, n_boot, chunk_size(n)):
        k = min(chunk_size(n), n_boot - lo)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=k).astype(float)
        resampled = y if replicates is None else seed_resampled(replicates, k, rng)
        fun = objective.batch_fun(model, resampled, weights=counts)
        x0 = np.repeat(theta_hat[None, :], k, axis=0)
        # Intervals need parameters to ~1e-5, not to float precision: looser than the main fit.
        res = polish(fun, x0, max_iter=max_iter, gtol=1e-7, ftol=1e-10, f_floor=perfect_fit(n), n_points=n)
        samples.append(model.to_public(res.x))
        fun_values.append(res.fun)
    samples, values = np.concatenate(samples), np.concatenate(fun_values)
    bad = ~np.isfinite(values) | ~np.isfinite(samples).all(axis=1)
    samples[bad] = np.nan
    return samples, int(bad.sum())


def seed_resampled(replicates: Sequence[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(B, n): in each of B draws, every point's mean over its seeds resampled with replacement
    (a point with one seed keeps its value: its noise is not measured)."""
    out = np.empty((n_boot, len(replicates)))
    for i, seeds in enumerate(replicates):
        seeds = np.asarray(seeds, dtype=float)
        picks = rng.integers(0, seeds.size, size=(n_boot, seeds.size))
        out[:, i] = seeds[picks].mean(axis=1)
    return out


def params_table(results: Sequence[tuple[Mapping[str, object], FitResult]]) -> list[dict[str, object]]:
    """Flatten (group, FitResult) pairs into records: group keys, params, `<p>_lo`/`<p>_hi`, report."""
    records = []
    for group, res in results:
        rec: dict[str, object] = dict(group)
        for name, value in res.params.items():
            rec[name] = value
            lo, hi = res.ci.get(name, (np.nan, np.nan))
            rec[f"{name}_lo"], rec[f"{name}_hi"] = lo, hi
        rec.update(objective=res.objective, n_points=res.n_points, converged=res.converged,
                   degenerate=res.degenerate, flags=list(res.flags))
        records.append(rec)
    return records

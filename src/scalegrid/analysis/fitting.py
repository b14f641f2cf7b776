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
   as one batch warm-started at the fit; percentile intervals of the public parameters.

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

ObjectiveKind = Literal["huber", "lsq"]
VJP = Callable[[np.ndarray], np.ndarray]
BatchFun = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

# SciPy L-BFGS-B defaults (factr 1e7 * machine eps, pgtol 1e-5): what the published fits stopped at.
SCIPY_FTOL = 1e7 * np.finfo(float).eps
SCIPY_GTOL = 1e-5


class FitInputError(ValueError):
    """The table cannot be fitted; the message names the column or problem and how to fix it."""


class Model(Protocol):
    """A law as the optimiser sees it (internal parameters theta, shape (S, P))."""

    names: tuple[str, ...]  # public parameter names, in the order of `to_public`'s columns

    def log_predict(self, theta: np.ndarray) -> tuple[np.ndarray, VJP]:
        """log L_hat at every point, shape (S, n), and v -> sum_i v_si d log L_hat_si / d theta_s."""
        ...

    def to_public(self, theta: np.ndarray) -> np.ndarray:
        """Internal (S, P) -> public parameters (S, len(names)), row by row."""
        ...


# ---------------------------------------------------------------------------------------------
# Objectives


def huber(residual: np.ndarray, delta: float) -> np.ndarray:
    """Huber_delta(r) = r^2 / 2 if |r| <= delta else delta (|r| - delta / 2) (Huber 1964)."""
    size = np.abs(residual)
    return np.where(size <= delta, 0.5 * residual * residual, delta * (size - 0.5 * delta))


def huber_grad(residual: np.ndarray, delta: float) -> np.ndarray:
    """d Huber_delta / dr = clip(r, -delta, delta)."""
    return np.clip(residual, -delta, delta)


@dataclass(frozen=True, kw_only=True)
class Objective:
    """What is minimised: Huber on log residuals (default) or least squares on the loss."""

    kind: ObjectiveKind = "huber"
    delta: float = 1e-3

    def __post_init__(self) -> None:
        if self.kind not in ("huber", "lsq"):
            raise FitInputError(f"objective must be 'huber' or 'lsq', not {self.kind!r}")
        if not self.delta > 0:
            raise FitInputError(f"Huber delta must be > 0, got {self.delta}")

    def batch_fun(self, model: Model, y: np.ndarray, weights: np.ndarray | None = None) -> BatchFun:
        """f(theta, rows) -> (objective (k,), gradient (k, P)) for the starts `rows` of a batch.

        `weights` is None (every point weight 1) or one row of weights per start (bootstrap)."""
        y = np.asarray(y, dtype=float)
        log_y = np.log(y)

        def fun(theta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            w = 1.0 if weights is None else weights[rows]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                log_pred, vjp = model.log_predict(theta)
                if self.kind == "huber":
                    r = log_pred - log_y
                    value = (w * huber(r, self.delta)).sum(axis=1)
                    grad = vjp(w * huber_grad(r, self.delta))
                else:
                    pred = np.exp(log_pred)
                    r = pred - y
                    value = (w * r * r).sum(axis=1)
                    grad = vjp(2.0 * w * r * pred)
            bad = ~np.isfinite(value) | ~np.isfinite(grad).all(axis=1)
            value[bad] = np.inf  # outside the law's domain: the line search steps back
            grad[bad] = 0.0
            return value, grad

        return fun


# ---------------------------------------------------------------------------------------------
# Batched L-BFGS


@dataclass(frozen=True)
class BatchResult:
    x: np.ndarray  # (S, P) final points
    fun: np.ndarray  # (S,) final objective values
    converged: np.ndarray  # (S,) bool: stopped by the gradient or the relative-decrease rule
    n_iter: np.ndarray  # (S,) iterations taken


def lbfgs_batched(
    fun: BatchFun,
    x0: np.ndarray,
    *,
    max_iter: int = 1000,
    history: int = 10,
    gtol: float = SCIPY_GTOL,
    ftol: float = SCIPY_FTOL,
    f_floor: float | np.ndarray = 0.0,
    max_line_evals: int = 30,
) -> BatchResult:
    """Minimise S independent problems at once with L-BFGS (Nocedal & Wright 2006, Alg. 7.4/7.5).

    `fun(x, rows)` evaluates the problems `rows` at points x (len(rows), P). Each start keeps its
    own curvature pairs; a weak-Wolfe line search (`_line_search`) runs on all starts that still
    need a step. A start stops when max |g| <= gtol, or when
    (f_old - f_new) / max(|f_old|, |f_new|, 1) <= ftol (SciPy L-BFGS-B's rules), or when
    f <= f_floor (a perfect fit, per start or for all), or when its line search fails (not
    converged). Points where `fun` is not finite are rejected by the line search.
    """
    f_floor = np.broadcast_to(np.asarray(f_floor, dtype=float), (np.shape(x0)[0],))
    x = np.array(x0, dtype=float, copy=True)
    n_starts, n_params = x.shape
    f, g = fun(x, np.arange(n_starts))
    memory = _Memory.empty(history, n_starts, n_params)
    n_iter = np.zeros(n_starts, dtype=int)
    converged = np.isfinite(f) & ((np.abs(g).max(axis=1) <= gtol) | (f <= f_floor))
    active = np.isfinite(f) & ~converged

    for _ in range(max_iter):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        d, slope = memory.direction(g[rows], rows)
        step, f_new, g_new, ok = _line_search(fun, x, f, rows, d, slope, max_line_evals)
        n_iter[rows] += 1
        active[rows[~ok]] = False  # no acceptable step: stop where it is (not converged)

        moved = rows[ok]
        s = step[ok]
        y = g_new[ok] - g[moved]
        f_old = f[moved]
        x[moved] += s
        f[moved] = f_new[ok]
        g[moved] = g_new[ok]
        memory.remember(moved, s, y)

        small_grad = np.abs(g[moved]).max(axis=1) <= gtol
        small_decrease = (f_old - f[moved]) <= ftol * np.maximum(
            np.maximum(np.abs(f_old), np.abs(f[moved])), 1.0
        )
        done = small_grad | small_decrease | (f[moved] <= f_floor[moved])
        converged[moved[done]] = True
        active[moved[done]] = False

    return BatchResult(x=x, fun=f, converged=converged, n_iter=n_iter)


@dataclass
class _Memory:
    """Each start's curvature pairs, slot-major so that one slot of many starts is contiguous; the
    newest pair is in the last slot, rho = 1/s'y is 0 in empty slots, n_pairs counts the filled ones."""

    s: np.ndarray  # (history, S, P)
    y: np.ndarray  # (history, S, P)
    rho: np.ndarray  # (history, S)
    n_pairs: np.ndarray  # (S,)

    @classmethod
    def empty(cls, history: int, n_starts: int, n_params: int) -> _Memory:
        return cls(np.zeros((history, n_starts, n_params)), np.zeros((history, n_starts, n_params)),
                   np.zeros((history, n_starts)), np.zeros(n_starts, dtype=int))

    def direction(self, gk: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(search direction, its slope) per row: -H g, or steepest descent where H g is not downhill."""
        history = len(self.rho)
        used = int(self.n_pairs[rows].max())  # older slots are empty for every row: skip them
        d = -_two_loop(gk, self.s[history - used:, rows], self.y[history - used:, rows], self.rho[history - used:, rows])
        slope = np.einsum("kp,kp->k", d, gk)
        uphill = ~(slope < 0)  # memory gave a non-descent direction: restart from steepest descent
        if uphill.any():
            restart = rows[uphill]
            self.rho[:, restart] = 0.0
            self.n_pairs[restart] = 0
            d[uphill] = -gk[uphill] / np.maximum(1.0, np.linalg.norm(gk[uphill], axis=1))[:, None]
            slope[uphill] = np.einsum("kp,kp->k", d[uphill], gk[uphill])
        return d, slope

    def remember(self, moved: np.ndarray, s: np.ndarray, y: np.ndarray) -> None:
        """Keep a step's pair only if s'y > 0 clearly (the cosine of s and y above 1e-10):
        scale-free, so stiff problems (curvature 1e13) keep their pairs too."""
        sy = np.einsum("kp,kp->k", s, y)
        keep = sy > 1e-10 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1)
        upd = moved[keep]
        if not upd.size:
            return
        for hist in (self.s, self.y, self.rho):
            hist[:, upd] = np.roll(hist[:, upd], -1, axis=0)
        self.s[-1, upd] = s[keep]
        self.y[-1, upd] = y[keep]
        self.rho[-1, upd] = 1.0 / sy[keep]
        self.n_pairs[upd] = np.minimum(self.n_pairs[upd] + 1, len(self.rho))


def _two_loop(g: np.ndarray, s: np.ndarray, y: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """H g for each row by the L-BFGS two-loop recursion (Nocedal & Wright Alg. 7.4).

    s, y: (used slots, k, P), newest last; rho: (used slots, k), 0 in a row's empty slots.
    """
    q = g.copy()
    m = rho.shape[0]
    alpha = np.empty_like(rho)
    for i in range(m - 1, -1, -1):
        alpha[i] = rho[i] * np.einsum("kp,kp->k", s[i], q)
        q -= alpha[i, :, None] * y[i]
    if m:
        yy = np.einsum("kp,kp->k", y[-1], y[-1])
        has_pair = (rho[-1] > 0) & (yy > 0)
        # gamma = s'y / y'y (Nocedal & Wright eq. 7.20); a row without pairs: unit-length step
        gamma = np.where(has_pair, 1.0 / np.where(has_pair, rho[-1] * yy, 1.0),
                         1.0 / np.maximum(1.0, np.linalg.norm(g, axis=1)))
    else:
        gamma = 1.0 / np.maximum(1.0, np.linalg.norm(g, axis=1))
    r = gamma[:, None] * q
    for i in range(m):
        beta = rho[i] * np.einsum("kp,kp->k", y[i], r)
        r += s[i] * (alpha[i] - beta)[:, None]
    return r


def _line_search(
    fun: BatchFun,
    x: np.ndarray,
    f: np.ndarray,
    rows: np.ndarray,
    direction: np.ndarray,
    slope: np.ndarray,
    max_evals: int,
    c1: float = 1e-4,
    c2: float = 0.9,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weak-Wolfe bisection/expansion line search on every row at once (Lewis & Overton 2013).

    Start at t = 1; a step without sufficient decrease (Armijo, c1) shrinks t (quadratic
    interpolation, then bisection of the bracket), a step whose slope is still steep
    (curvature, c2) doubles t or bisects upwards. Wolfe steps keep
    s'y > 0, so every update is a valid curvature pair. If the budget runs out, the last step
    with sufficient decrease is taken. Returns (step, f, g, ok) per row.
    """
    k = rows.size
    t = np.ones(k)
    lo = np.zeros(k)
    hi = np.full(k, np.inf)
    step = np.zeros_like(direction)
    f_new = np.full(k, np.inf)
    g_new = np.zeros_like(direction)
    ok = np.zeros(k, dtype=bool)  # a step with sufficient decrease is stored
    pending = np.arange(k)
    f0 = f[rows]
    for _ in range(max_evals):
        trial = t[pending, None] * direction[pending]
        ft, gt = fun(x[rows[pending]] + trial, rows[pending])
        armijo = ft <= f0[pending] + c1 * t[pending] * slope[pending]
        curv = (gt * direction[pending]).sum(axis=1) >= c2 * slope[pending]
        good = pending[armijo]
        step[good], f_new[good], g_new[good] = trial[armijo], ft[armijo], gt[armijo]
        ok[good] = True
        wolfe = armijo & curv
        too_far = pending[~armijo]
        too_near = pending[armijo & ~curv]
        hi[too_far] = t[too_far]
        lo[too_near] = t[too_near]
        # Shrinking from t without any good step yet: the minimiser of the quadratic through
        # f0, slope and f(t), kept within [t/100, t/2] (t/10 where f(t) is not finite). Halving
        # alone cannot reach the tiny steps of a badly scaled first iteration within budget.
        tf, fail, sl = t[too_far], ft[~armijo], slope[too_far]
        curvature = fail - f0[too_far] - sl * tf
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            quad = np.clip(-sl * tf * tf / (2.0 * curvature), 0.01 * tf, 0.5 * tf)
        quad = np.where(np.isfinite(fail) & (curvature > 0), quad, 0.1 * tf)
        t[too_far] = np.where(lo[too_far] > 0, 0.5 * (lo[too_far] + hi[too_far]), quad)
        t[too_near] = np.where(np.isinf(hi[too_near]), 2.0 * lo[too_near],
                               0.5 * (lo[too_near] + hi[too_near]))
        pending = pending[~wolfe]
        if pending.size == 0:
            break
    return step, f_new, g_new, ok


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

    def to_dict(self) -> dict:
        """The JSON shape of `scalegrid fit --json` (without the group)."""
        return {
            "params": {k: float(v) for k, v in self.params.items()},
            "ci": {k: [float(lo), float(hi)] for k, (lo, hi) in self.ci.items()},
            "objective": float(self.objective),
            "n_points": int(self.n_points),
            "converged": bool(self.converged),
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


def perfect_fit(n_points: int) -> float:
    """An objective this small is a perfect fit: RMS residual <= 1e-10 (log loss or loss)."""
    return 1e-20 * n_points


def check_fit_args(n_points: int, n_params: int, bootstrap: int, level: float) -> None:
    if n_points < n_params:
        raise FitInputError(
            f"{n_points} points cannot determine {n_params} parameters: "
            f"give at least {n_params} rows (check filters such as --drop-highest-loss)"
        )
    if bootstrap < 0:
        raise FitInputError(f"bootstrap must be >= 0, got {bootstrap}")
    if not 0 < level < 1:
        raise FitInputError(f"confidence level must be in (0, 1), got {level}")


def check_spread(values: np.ndarray, column: str, law: str, needed: int = 3) -> None:
    """A law in x is determined only by enough distinct x: rows that share one x fit any curve
    through them, and a fit would "converge" with intervals of zero width."""
    distinct = np.unique(values).size
    if distinct < needed:
        raise FitInputError(
            f"{law}: column {column!r} has {distinct} distinct value{'' if distinct == 1 else 's'}; "
            f"the law needs at least {needed} to be determined (give rows at more values of {column})"
        )


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
) -> FitResult:
    """Fit `model` to losses `y` from every row of `starts` (internal coordinates); see module doc.

    The best `n_polish` starts after the batched phase are polished at tight tolerances and the
    lowest objective wins. With `bootstrap` > 0, B resampled refits give percentile intervals.
    """
    y = np.asarray(y, dtype=float)
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    n_params = starts.shape[1]
    check_fit_args(y.size, n_params, bootstrap, level)
    fun = objective.batch_fun(model, y)
    batch = lbfgs_batched(fun, starts, max_iter=max_iter)
    finite = np.flatnonzero(np.isfinite(batch.fun))
    if finite.size == 0:
        raise FitInputError(f"{law}: no start gave a finite objective; check the data for outliers")
    best = finite[np.argsort(batch.fun[finite], kind="stable")[: max(1, n_polish)]]
    polished = polish(fun, batch.x[best], f_floor=perfect_fit(y.size))
    worse = polished.fun > batch.fun[best]  # never let polishing make a start worse
    x = np.where(worse[:, None], batch.x[best], polished.x)
    f = np.where(worse, batch.fun[best], polished.fun)
    ok = np.where(worse, batch.converged[best], polished.converged)
    i = int(np.argmin(f))
    best_x, best_f, converged = x[i], float(f[i]), bool(ok[i])

    public = model.to_public(best_x[None, :])[0]
    params = dict(zip(model.names, map(float, public)))
    ci: dict[str, tuple[float, float]] = {}
    samples = None
    n_failed = 0
    if bootstrap > 0:
        samples, n_failed = bootstrap_refits(
            model, y, best_x, objective=objective, n_boot=bootstrap, seed=seed
        )
        lo, hi = percentile_ci(samples, level)
        ci = {name: (float(a), float(b)) for name, a, b in zip(model.names, lo, hi)}
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
    )


def polish(
    fun: BatchFun,
    x0: np.ndarray,
    *,
    max_iter: int = 2000,
    gtol: float = 1e-9,
    ftol: float = 1e-13,
    f_floor: float = 0.0,
) -> BatchResult:
    """Refine starts (k, P) at tight tolerances, relative to each start's objective.

    Each problem's objective is divided by its value at x0, so "relative decrease <= ftol" and
    "max |gradient| <= gtol" mean the same for a Huber sum of 1e-5 as for one of 10. (SciPy's
    L-BFGS-B would do the same job, but it calls multi-threaded BLAS on tiny matrices, which on
    a busy machine costs milliseconds per iteration; this stays in the batched numpy code.)
    A line search that fails where the relative gradient is already <= 1e-6 has reached the
    optimum to float precision and counts as converged, and so does an objective <= f_floor
    (a perfect fit: with zero residuals L-BFGS only converges linearly and never meets the
    relative rules).
    """
    rows = np.arange(x0.shape[0])
    f0, _ = fun(x0, rows)
    scale = np.where(np.isfinite(f0) & (f0 > 0), f0, 1.0)

    def relative(x: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, g = fun(x, r)
        return f / scale[r], g / scale[r, None]

    res = lbfgs_batched(relative, x0, max_iter=max_iter, gtol=gtol, ftol=ftol,
                        f_floor=f_floor / scale)
    f, g = relative(res.x, rows)
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
) -> tuple[np.ndarray, int]:
    """B refits on rows resampled with replacement, all in one batch, each warm-started at the fit.

    Resampling is drawn as multinomial counts (B, n), which weight the objective exactly as a
    resampled table would. Returns the public parameters (B, P), NaN where a refit failed, and
    the number of failures.
    """
    rng = np.random.default_rng(seed)
    n = y.size
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    fun = objective.batch_fun(model, y, weights=counts)
    x0 = np.repeat(theta_hat[None, :], n_boot, axis=0)
    # Intervals need parameters to ~1e-5, not to float precision: looser than the main fit.
    res = polish(fun, x0, max_iter=max_iter, gtol=1e-7, ftol=1e-10, f_floor=perfect_fit(n))
    samples = model.to_public(res.x)
    bad = ~np.isfinite(res.fun) | ~np.isfinite(samples).all(axis=1)
    samples[bad] = np.nan
    return samples, int(bad.sum())


def params_table(results: Sequence[tuple[Mapping[str, object], FitResult]]) -> list[dict[str, object]]:
    """Flatten (group, FitResult) pairs into records: group keys, params, `<p>_lo`/`<p>_hi`, report."""
    records = []
    for group, res in results:
        rec: dict[str, object] = dict(group)
        for name, value in res.params.items():
            rec[name] = value
            lo, hi = res.ci.get(name, (np.nan, np.nan))
            rec[f"{name}_lo"], rec[f"{name}_hi"] = lo, hi
        rec.update(objective=res.objective, n_points=res.n_points, converged=res.converged)
        records.append(rec)
    return records

"""A batched L-BFGS over many starts at once, and the objectives it minimises (`least_squares.py`
runs it: multi-start fit, polish, bootstrap refits).

    huber (default):  sum_i w_i Huber_delta(log L_hat_i(theta) - log L_i)   delta = 1e-3
    lsq:              sum_i w_i (L_hat_i(theta) - L_i)^2

`lbfgs_batched` runs L-BFGS on an (S starts x P params) array: one numpy evaluation of the
objective and its gradient for every active start per step, each start stopping by SciPy
L-BFGS-B's default rules (max |gradient| <= 1e-5, or relative decrease <= 2.2e-9).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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

        `weights` is None (every point weight 1) or one row of weights per start (bootstrap);
        `y` is the losses (n,), or one row of losses per start (a bootstrap over seeds, (S, n))."""
        y_all = np.asarray(y, dtype=float)
        log_y_all = np.log(y_all)

        def fun(theta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            w = 1.0 if weights is None else weights[rows]
            y, log_y = (y_all, log_y_all) if y_all.ndim == 1 else (y_all[rows], log_y_all[rows])
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

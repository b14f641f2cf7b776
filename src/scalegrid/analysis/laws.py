"""Saturating power laws: L(x) = A / x^B + C and its additive multi-variable forms.

    L(x_1, ..., x_k) = C + sum_j A_j / x_j^B_j

is fitted in the log-sum-exp form of Hoffmann et al. (2022, App. D.2) and Besiroglu et al. (2024):

    log L = LSE(a_1 - B_1 u_1, ..., a_k - B_k u_k, c),   u_j = log x_j - mu_j,

with A_j = exp(a_j + B_j mu_j) and C = exp(c), so every term stays positive and the loss is
positive. Centring log x at its mean mu_j only conditions the problem (the intercept and the slope
of each term become nearly uncorrelated); it changes no fitted value. Chinchilla's
L(N, D) = E + A/N^alpha + B/D^beta is the two-variable case (see `chinchilla.py`), the ensemble law
L(K) = A/K^B + C the one-variable case in member count K.

Default starts (`PowerLawModel.default_starts`) are data-driven: exponents B_j on a grid, the
asymptote C at fractions of min(L), and A_j set so that each term carries an equal share of the
median excess loss (L - C) -- so every start is already the right order of magnitude.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from scalegrid.analysis.lbfgs import VJP, FitInputError, Objective
from scalegrid.analysis.least_squares import (
    FitResult,
    check_fit_args,
    check_spread,
    degeneracy,
    fit_model,
    interval_table,
)
from scalegrid.analysis.tables import numeric_column, positive_column

DEFAULT_EXPONENTS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)
DEFAULT_FLOOR_FRACTIONS = (0.05, 0.3, 0.6, 0.8, 0.9, 0.97)


def power_law(x: np.ndarray | float, A: float, B: float, C: float) -> np.ndarray:
    """L(x) = A / x^B + C."""
    return A * np.power(np.asarray(x, dtype=float), -B) + C


def inverse_power_law(loss: np.ndarray | float, A: float, B: float, C: float) -> np.ndarray:
    """The x at which A / x^B + C equals `loss`: x = (A / (loss - C))^(1/B); inf where loss <= C."""
    loss = np.asarray(loss, dtype=float)
    excess = loss - C
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.power(A / excess, 1.0 / B)
    return np.where(excess > 0, x, np.inf)


@dataclass(frozen=True)
class PowerLawModel:
    """log L = LSE(a_j - b_j u_j for each variable j, c); theta = (a_1, b_1, ..., a_k, b_k, c)."""

    log_x: np.ndarray  # (k, n): log x_j - mu_j
    centres: np.ndarray  # (k,): mu_j
    names: tuple[str, ...]  # public names in to_public order: A_1, B_1, ..., A_k, B_k, C

    @classmethod
    def from_columns(
        cls, xs: Sequence[np.ndarray], labels: Sequence[str] | None = None
    ) -> "PowerLawModel":
        logs = np.log(np.vstack([np.asarray(x, dtype=float) for x in xs]))
        centres = logs.mean(axis=1)
        if labels is None or len(xs) == 1:
            names = ("A", "B", "C") if len(xs) == 1 else tuple(
                n for j in range(len(xs)) for n in (f"A_{j}", f"B_{j}")
            ) + ("C",)
        else:
            names = tuple(n for lab in labels for n in (f"A_{lab}", f"B_{lab}")) + ("C",)
        return cls(log_x=logs - centres[:, None], centres=centres, names=names)

    @property
    def n_terms(self) -> int:
        return self.log_x.shape[0]

    def log_predict(self, theta: np.ndarray) -> tuple[np.ndarray, VJP]:
        k = self.n_terms
        terms = [theta[:, 2 * j, None] - theta[:, 2 * j + 1, None] * self.log_x[j] for j in range(k)]
        terms.append(np.broadcast_to(theta[:, 2 * k, None], terms[0].shape))
        top = np.maximum.reduce(terms)
        expd = [np.exp(t - top) for t in terms]
        total = np.add.reduce(expd)
        log_pred = top + np.log(total)
        share = [e / total for e in expd]  # softmax weights: d log L / d (term j)

        def vjp(v: np.ndarray) -> np.ndarray:
            grad = np.empty((v.shape[0], 2 * k + 1))
            for j in range(k):
                vw = v * share[j]
                grad[:, 2 * j] = vw.sum(axis=1)
                grad[:, 2 * j + 1] = -(vw * self.log_x[j]).sum(axis=1)  # no BLAS: see polish()
            grad[:, 2 * k] = (v * share[k]).sum(axis=1)
            return grad

        return log_pred, vjp

    def to_public(self, theta: np.ndarray) -> np.ndarray:
        out = np.empty_like(theta)
        k = self.n_terms
        with np.errstate(over="ignore"):  # a runaway bootstrap refit becomes inf, then NaN
            for j in range(k):
                b = theta[:, 2 * j + 1]
                out[:, 2 * j] = np.exp(theta[:, 2 * j] + b * self.centres[j])
                out[:, 2 * j + 1] = b
            out[:, 2 * k] = np.exp(theta[:, 2 * k])
        return out

    def to_internal(
        self, log_coef: np.ndarray, exponents: np.ndarray, log_floor: np.ndarray
    ) -> np.ndarray:
        """Starts given as raw (log A_j, B_j) per term (S, k) and log C (S,) -> internal theta."""
        log_coef = np.atleast_2d(log_coef)
        exponents = np.atleast_2d(exponents)
        theta = np.empty((log_coef.shape[0], 2 * self.n_terms + 1))
        for j in range(self.n_terms):
            theta[:, 2 * j] = log_coef[:, j] - exponents[:, j] * self.centres[j]
            theta[:, 2 * j + 1] = exponents[:, j]
        theta[:, -1] = np.asarray(log_floor, dtype=float)
        return theta

    def default_starts(
        self,
        y: np.ndarray,
        exponents: Sequence[float] = DEFAULT_EXPONENTS,
        floor_fractions: Sequence[float] = DEFAULT_FLOOR_FRACTIONS,
    ) -> np.ndarray:
        """Grid over exponents (one per term) x asymptote fractions of min(y), A from the data."""
        y = np.asarray(y, dtype=float)
        k = self.n_terms
        starts = []
        for bs in itertools.product(exponents, repeat=k):
            for frac in floor_fractions:
                floor = frac * y.min()
                excess = (y - floor) / k
                # A_j x_j^-B_j ~ excess  =>  a_j (centred) = median(log excess + B_j u_j)
                row = []
                for j, b in enumerate(bs):
                    row += [float(np.median(np.log(excess) + b * self.log_x[j])), b]
                row.append(np.log(floor))
                starts.append(row)
        return np.array(starts)


def fit_power_law(
    df: pd.DataFrame,
    x: str | Sequence[str],
    y: str,
    *,
    objective: Objective = Objective(),
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    starts: np.ndarray | None = None,
    replicates: str | None = None,
) -> FitResult:
    """Fit L = C + sum_j A_j / x_j^B_j to column `y` against column(s) `x`.

    One x: parameters A, B, C (L(x) = A / x^B + C). Several: A_<col>, B_<col> per column and C.
    Huber (delta 1e-3) on log residuals by default, `Objective(kind="lsq")` for least squares.
    `starts` (internal coordinates) overrides the default grid. `replicates`: a column holding
    each row's seed losses (y is their mean): the bootstrap redraws them (`seeds.seed_points`).

    The law has 2k + 1 free parameters; it is fitted only on more distinct points than that (one x:
    4 distinct values at least), and the result's `flags` say when it is degenerate (an exponent
    that may be 0, an asymptote at 0 or far below the data: `least_squares.degeneracy`).
    """
    xs = [x] if isinstance(x, str) else list(x)
    if not xs:
        raise FitInputError("power law needs at least one x column (--x)")
    x_values = [positive_column(df, col) for col in xs]
    y_values = positive_column(df, y)
    order = np.lexsort((y_values, *reversed(x_values)))  # a fit of a set of points: the table's order is no input
    x_values, y_values, df = [v[order] for v in x_values], y_values[order], df.iloc[order]
    n_params = 2 * len(xs) + 1
    check_fit_args(y_values.size, n_params, bootstrap, level)
    for col, values in zip(xs, x_values):  # one x: every parameter needs its own distinct value, and one more
        check_spread(values, col, "power-law", needed=n_params + 1 if len(xs) == 1 else 3, n_params=n_params)
    model = PowerLawModel.from_columns(x_values, labels=xs)
    if starts is None:
        starts = model.default_starts(y_values)
    result = fit_model(
        model, y_values, starts, law="power-law", objective=objective,
        bootstrap=bootstrap, seed=seed, level=level, replicates=seed_column(df, replicates, y_values),
    )
    exponents = [name for name in model.names if name.startswith("B")]
    return replace(result, flags=degeneracy(result, y_values, exponents=exponents, asymptote="C"))


def fit_log_linear(
    df: pd.DataFrame,
    x: str,
    y: str,
    *,
    log_y: bool = False,
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> FitResult:
    """Least-squares line y = A log x + B (natural log), or log y = A log x + B with `log_y`.

    Closed form (normal equations); bootstrap refits are solved together as one batch. With
    `log_y`, the law is y = exp(B) x^A: the usual fit of an optimal hyperparameter against size.
    """
    u = np.log(positive_column(df, x))
    v = np.log(positive_column(df, y)) if log_y else numeric_column(df, y)
    check_fit_args(u.size, 2, bootstrap, level)
    check_spread(u, x, "a line in log x", needed=3, n_params=2)  # through two points any line is exact
    design = np.column_stack([u, np.ones_like(u)])
    coef, *_ = np.linalg.lstsq(design, v, rcond=None)
    sse = float(((design @ coef - v) ** 2).sum())
    ci: dict[str, tuple[float, float]] = {}
    zero_width: tuple[str, ...] = ()
    samples = None
    n_failed = 0
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(u.size, np.full(u.size, 1.0 / u.size), size=bootstrap).astype(float)
        # weighted normal equations per replicate: (X' W X) beta = X' W v
        xtwx = np.einsum("bn,ni,nj->bij", counts, design, design)
        xtwv = np.einsum("bn,ni,n->bi", counts, design, v)
        det = np.linalg.det(xtwx)
        singular = np.abs(det) <= 1e-12 * np.abs(xtwx).max(axis=(1, 2)) ** 2
        xtwx[singular] = np.eye(2)
        samples = np.linalg.solve(xtwx, xtwv[..., None])[..., 0]
        samples[singular] = np.nan  # a resample with one distinct x has no slope
        n_failed = int(singular.sum())
        ci, zero_width = interval_table(("A", "B"), coef, samples, level)
    return FitResult(
        law="log-linear",
        params={"A": float(coef[0]), "B": float(coef[1])},
        ci=ci,
        objective=sse,
        n_points=int(u.size),
        converged=True,
        objective_kind="lsq",
        ci_level=level,
        n_bootstrap=bootstrap,
        n_bootstrap_failed=n_failed,
        samples=samples,
        n_params=2,
        zero_width=zero_width,
    )


def seed_column(df: pd.DataFrame, column: str | None, means: np.ndarray) -> list[np.ndarray] | None:
    """Each row's seed losses from `column` (None: no such column asked for), checked against the
    row's mean so a fit never redraws seeds that are not the ones it fitted."""
    if column is None:
        return None
    if column not in df.columns:
        raise FitInputError(f"no column {column!r} of seed losses")
    seeds = [np.atleast_1d(np.asarray(v, dtype=float)) for v in df[column]]
    for i, (values, mean) in enumerate(zip(seeds, means)):
        if not values.size or not np.isclose(values.mean(), mean, rtol=1e-9, atol=0):
            raise FitInputError(f"row {i}: the seed losses in {column!r} do not average to its loss {mean:g}")
    return seeds

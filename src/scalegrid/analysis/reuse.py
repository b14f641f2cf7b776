"""Multi-epoch reuse: how many fresh samples K epochs over N samples are worth, and K*(N).

Yan, Wen, Li, Luo, Chen & Lyu, "Larger Datasets Can Be Repeated More: A Theoretical Analysis of
Multi-Epoch Scaling in Linear Regression" (ICLR 2026), as presented in Lyu's slides (seeds/003):

    E(K, N) = (1/N) min{ N' : L(1, N') <= L(K, N) }      effective reuse rate
    K*(N)   = the largest K with E(K, N) >= (1 - eps) K   end of the effective-reuse regime
    K*(N)   = A log N + B                                 (natural log; their LLM experiments)

L(K, N) is the loss after K epochs over N samples with the other hyperparameters tuned (the
table's best loss per (N, K): "optimal tuning of LR"). The one-pass curve L(1, N') is the power
law A1 / N'^B1 + C1 fitted to the K = 1 rows, so N' = (A1 / (L - C1))^(1/B1), extrapolated beyond
the largest N where needed; a loss below C1 is worth infinitely many fresh samples.

Muennighoff et al. (2023) model the same quantity as N'/N = 1 + R*(1 - exp(-(K-1)/R*)),
independent of N; Lyu's point is that it is not: larger N can be repeated more.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from scalegrid.analysis.fitting import FitInputError, FitResult, Objective
from scalegrid.analysis.laws import fit_log_linear, fit_power_law, inverse_power_law
from scalegrid.analysis.tables import numeric_column, positive_column, require_columns


def best_per_cell(table: pd.DataFrame, *, samples: str, epochs: str, loss: str) -> pd.DataFrame:
    """The lowest loss per (samples, epochs): the loss with every other axis tuned."""
    require_columns(table, samples, epochs, loss)
    positive_column(table, samples)
    positive_column(table, epochs)
    positive_column(table, loss)
    cells = table.groupby([samples, epochs], sort=True)[loss].min().reset_index()
    return cells


def fit_one_pass(
    table: pd.DataFrame,
    *,
    samples: str = "unique_tokens",
    epochs: str = "epochs",
    loss: str = "val_loss",
    objective: Objective = Objective(),
    bootstrap: int = 0,
    seed: int = 0,
) -> FitResult:
    """Fit the one-pass curve L(1, N) = A / N^B + C on the rows with one epoch."""
    cells = best_per_cell(table, samples=samples, epochs=epochs, loss=loss)
    one = cells[cells[epochs] == 1]
    if len(one) < 3:
        raise FitInputError(
            f"the reuse rate needs one-pass rows ({epochs} == 1) at 3 or more values of "
            f"{samples!r} to fit the fresh-data curve; found {len(one)}"
        )
    return fit_power_law(one, samples, loss, objective=objective, bootstrap=bootstrap, seed=seed)


def effective_reuse(
    table: pd.DataFrame,
    *,
    samples: str = "unique_tokens",
    epochs: str = "epochs",
    loss: str = "val_loss",
    one_pass: FitResult | None = None,
) -> pd.DataFrame:
    """E(K, N) for every (N, K) cell: columns samples, epochs, loss, `effective_samples` (N'),
    `effective_reuse` (N'/N). `one_pass` (a fit of L(1, N)) is fitted from the table if absent."""
    cells = best_per_cell(table, samples=samples, epochs=epochs, loss=loss)
    if one_pass is None:
        one_pass = fit_one_pass(table, samples=samples, epochs=epochs, loss=loss)
    p = one_pass.params
    fresh = inverse_power_law(cells[loss].to_numpy(float), p["A"], p["B"], p["C"])
    cells["effective_samples"] = fresh
    cells["effective_reuse"] = fresh / cells[samples].to_numpy(float)
    return cells


def reuse_threshold(
    reuse: pd.DataFrame, *, eps: float = 0.05, samples: str = "unique_tokens", epochs: str = "epochs"
) -> pd.DataFrame:
    """K*(N): the largest K in the table with E(K, N) >= (1 - eps) K, per N.

    Columns samples, `k_star` (NaN if no K qualifies), `max_epochs` (largest K tried) and
    `censored` (K* is the largest K tried, so the true K* may be larger).
    """
    if not 0 <= eps < 1:
        raise FitInputError(f"eps must be in [0, 1), got {eps}")
    require_columns(reuse, samples, epochs, "effective_reuse")
    rows = []
    for n, cell in reuse.groupby(samples, sort=True):
        k = cell[epochs].to_numpy(float)
        ok = cell["effective_reuse"].to_numpy(float) >= (1.0 - eps) * k
        k_star = float(k[ok].max()) if ok.any() else np.nan
        rows.append({samples: n, "k_star": k_star, "max_epochs": float(k.max()),
                     "censored": bool(ok.any() and k_star == k.max())})
    return pd.DataFrame(rows)


def fit_reuse_law(
    thresholds: pd.DataFrame,
    *,
    samples: str = "unique_tokens",
    k_star: str = "k_star",
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> FitResult:
    """Least-squares K*(N) = A log N + B over the rows of `thresholds` (bootstrap over rows)."""
    numeric_column(thresholds, k_star)
    result = fit_log_linear(thresholds, samples, k_star, bootstrap=bootstrap, seed=seed, level=level)
    return replace(result, law="reuse")


def fit_reuse(
    table: pd.DataFrame,
    *,
    samples: str = "unique_tokens",
    epochs: str = "epochs",
    loss: str = "val_loss",
    eps: float = 0.05,
    include_censored: bool = False,
    objective: Objective = Objective(),
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> FitResult:
    """From a loss table over (samples N, epochs K) to the fit K*(N) = A log N + B.

    One-pass curve -> E(K, N) -> K*(N) per N -> line in log N. Censored K* (the largest K tried
    still reuses effectively) are left out unless `include_censored`; the bootstrap resamples the
    (N, K*) points, taking the one-pass curve as known.
    """
    one_pass = fit_one_pass(table, samples=samples, epochs=epochs, loss=loss, objective=objective)
    reuse = effective_reuse(table, samples=samples, epochs=epochs, loss=loss, one_pass=one_pass)
    thresholds = reuse_threshold(reuse, eps=eps, samples=samples, epochs=epochs)
    usable = thresholds[np.isfinite(thresholds["k_star"])]
    if not include_censored:
        usable = usable[~usable["censored"]]
    if len(usable) < 2:
        raise FitInputError(
            f"K*(N) is known at {len(usable)} values of {samples!r} (K* must be below the largest "
            f"epoch count tried); add more epochs or dataset sizes, or raise eps (now {eps})"
        )
    return fit_reuse_law(usable, samples=samples, bootstrap=bootstrap, seed=seed, level=level)

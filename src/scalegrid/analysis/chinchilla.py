"""Chinchilla's parametric law L(N, D) = E + A / N^alpha + B / D^beta, fitted as published.

Hoffmann et al. (2022), approach 3, as replicated by Besiroglu et al. (2024, "Chinchilla Scaling:
A replication attempt"): minimise

    sum_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i ),   delta = 1e-3,

with A = e^a, B = e^b, E = e^e, by L-BFGS from Hoffmann's grid of initial values
alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25} (4,500 starts),
keeping the best. N is parameters, D training tokens (D = FLOPs / 6N when only FLOPs are known).

On the 240 points of Besiroglu et al. (Epoch AI's extraction of Hoffmann's Figure 4, the 5
highest losses dropped) this gives A 477.9, B 2143, E 1.817, alpha 0.3473, beta 0.3672 -- their
"best grid fit"; their published bootstrap-mean estimates are A 482.0, B 2085.4, E 1.8169,
alpha 0.3478, beta 0.3658.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pandas as pd

from scalegrid.analysis.lbfgs import Objective
from scalegrid.analysis.least_squares import FitResult, check_fit_args, check_spread, degeneracy, fit_model
from scalegrid.analysis.laws import PowerLawModel
from scalegrid.analysis.tables import positive_column

# Hoffmann et al. (2022) grid of initial values, as in Besiroglu et al. (2024).
HOFFMANN_GRID = {
    "alpha": np.arange(0.0, 2.5, 0.5),
    "beta": np.arange(0.0, 2.5, 0.5),
    "e": np.arange(-1.0, 1.5, 0.5),
    "a": np.arange(0.0, 30.0, 5.0),
    "b": np.arange(0.0, 30.0, 5.0),
}
PARAM_ORDER = ("A", "B", "E", "alpha", "beta")
FLOPS_PER_PARAM_TOKEN = 6.0  # C = 6 N D (Kaplan et al. 2020)


def chinchilla_loss(
    params: np.ndarray | float, tokens: np.ndarray | float,
    *, A: float, B: float, E: float, alpha: float, beta: float,
) -> np.ndarray:
    """L(N, D) = E + A / N^alpha + B / D^beta."""
    n = np.asarray(params, dtype=float)
    d = np.asarray(tokens, dtype=float)
    return E + A * n**-alpha + B * d**-beta


def tokens_from_flops(flops: np.ndarray, params: np.ndarray) -> np.ndarray:
    """D = C / (6 N)."""
    return np.asarray(flops, dtype=float) / (FLOPS_PER_PARAM_TOKEN * np.asarray(params, dtype=float))


def hoffmann_starts(model: PowerLawModel) -> np.ndarray:
    """Hoffmann's 4,500 initial values in the model's internal (centred) coordinates."""
    grid = np.array(list(itertools.product(*HOFFMANN_GRID.values())))
    alpha, beta, e, a, b = grid.T
    return model.to_internal(np.column_stack([a, b]), np.column_stack([alpha, beta]), e)


def starts_from_params(model: PowerLawModel, fitted: dict[str, float]) -> np.ndarray:
    """One start at known public parameters A, B, E, alpha, beta (e.g. a previous fit)."""
    return model.to_internal(
        np.log([[fitted["A"], fitted["B"]]]), np.array([[fitted["alpha"], fitted["beta"]]]),
        np.log([fitted["E"]]),
    )


def chinchilla_model(params: np.ndarray, tokens: np.ndarray) -> PowerLawModel:
    """The two-term power law in (N, D), named as Hoffmann et al. name its parameters."""
    model = PowerLawModel.from_columns([params, tokens])
    return PowerLawModel(
        log_x=model.log_x, centres=model.centres, names=("A", "alpha", "B", "beta", "E")
    )


def fit_chinchilla(
    df: pd.DataFrame,
    *,
    params: str = "params",
    tokens: str | None = "tokens",
    flops: str | None = None,
    loss: str = "val_loss",
    objective: Objective = Objective(),
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    starts: np.ndarray | None = None,
) -> FitResult:
    """Fit E + A/N^alpha + B/D^beta on columns `params` (N), `tokens` (D) or `flops`, `loss`.

    With `flops` given (and `tokens` None) D = FLOPs / 6N. Parameters A, B, E, alpha, beta.
    `starts` (internal coordinates, see `hoffmann_starts`) overrides Hoffmann's grid.
    """
    n = positive_column(df, params)
    if flops is not None:
        d = tokens_from_flops(positive_column(df, flops), n)
    else:
        d = positive_column(df, tokens or "tokens")
    y = positive_column(df, loss)
    check_fit_args(y.size, len(PARAM_ORDER), bootstrap, level)
    check_spread(n, params, "chinchilla")
    check_spread(d, tokens or flops or "tokens", "chinchilla")
    model = chinchilla_model(n, d)
    if starts is None:
        starts = hoffmann_starts(model)
    result = fit_model(
        model, y, starts, law="chinchilla", objective=objective,
        bootstrap=bootstrap, seed=seed, level=level,
    )
    result = replace(result, flags=degeneracy(result, y, exponents=("alpha", "beta"), asymptote="E"))
    return reorder(result, PARAM_ORDER)


def reorder(result: FitResult, order: tuple[str, ...]) -> FitResult:
    """The same fit with its parameters (and bootstrap columns) in `order`."""
    names = list(result.params)
    idx = [names.index(k) for k in order]
    samples = None if result.samples is None else result.samples[:, idx]
    return replace(
        result,
        params={k: result.params[k] for k in order},
        ci={k: result.ci[k] for k in order if k in result.ci},
        samples=samples,
    )

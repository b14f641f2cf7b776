"""Scaling-law analysis: pure functions of pandas DataFrames (no Ray, torch, plotting or I/O).

    fitting           objectives (Huber on log residuals, least squares), batched L-BFGS, bootstrap
    laws              L(x) = A / x^B + C and its additive multi-variable forms; lines in log x
    chinchilla        L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann 2022, Besiroglu 2024)
    data_constrained  effective data and parameters, R*_D and R*_N (Muennighoff et al. 2023)
    reuse             effective reuse E(K, N), K*(N) and its laws, R* per N (Lyu et al., seeds/003)
    one_pass          the exact expected risk of one-pass SGD on Gaussian linear regression
    recipes           the recipes of "Pre-training under infinite compute" (seeds/002)
    seeds             a point's seeds as a mean and a spread; orderings beyond the seed noise

Every fit returns a `FitResult`: parameters, percentile bootstrap intervals, the objective, the
number of points and whether the optimiser converged. Bad input raises `FitInputError`, whose
message names the column or problem.
"""

from scalegrid.analysis.chinchilla import chinchilla_loss, fit_chinchilla, tokens_from_flops
from scalegrid.analysis.data_constrained import (
    MUENNIGHOFF2023_BASE,
    MUENNIGHOFF2023_R_STAR,
    BaseLaw,
    data_constrained_loss,
    effective,
    fit_data_constrained,
)
from scalegrid.analysis.lbfgs import FitInputError, Objective, huber
from scalegrid.analysis.least_squares import FitResult
from scalegrid.analysis.laws import fit_log_linear, fit_power_law, inverse_power_law, power_law
from scalegrid.analysis.recipes import (
    best_runs,
    data_efficiency,
    data_scaling,
    distillation,
    distillation_retention,
    ensemble_gains,
    ensemble_scaling,
    joint_scaling,
    local_optimality,
    local_optimality_neighbours,
    optimal_hparam_scaling,
    param_scaling,
)
from scalegrid.analysis.one_pass import TunedOnePass, one_pass_risk, sample_grid, tuned_one_pass
from scalegrid.analysis.reuse import (
    EPS,
    FittedOnePass,
    KStarLaw,
    ReuseAnalysis,
    epoch_rows,
    fit_one_pass,
    muennighoff_reuse,
    one_pass_reference,
    reuse_analysis,
)
from scalegrid.analysis.seeds import compare, orderings, pooled_sd, seed_points
from scalegrid.analysis.tables import by_size, completed, drop_highest, models_by_size

__all__ = [
    "BaseLaw",
    "EPS",
    "FitInputError",
    "FitResult",
    "FittedOnePass",
    "KStarLaw",
    "MUENNIGHOFF2023_BASE",
    "MUENNIGHOFF2023_R_STAR",
    "Objective",
    "ReuseAnalysis",
    "TunedOnePass",
    "best_runs",
    "by_size",
    "chinchilla_loss",
    "compare",
    "completed",
    "data_constrained_loss",
    "data_efficiency",
    "data_scaling",
    "distillation",
    "distillation_retention",
    "drop_highest",
    "effective",
    "ensemble_gains",
    "ensemble_scaling",
    "epoch_rows",
    "fit_chinchilla",
    "fit_data_constrained",
    "fit_log_linear",
    "fit_one_pass",
    "fit_power_law",
    "huber",
    "inverse_power_law",
    "joint_scaling",
    "local_optimality",
    "local_optimality_neighbours",
    "models_by_size",
    "muennighoff_reuse",
    "one_pass_reference",
    "one_pass_risk",
    "optimal_hparam_scaling",
    "orderings",
    "param_scaling",
    "pooled_sd",
    "power_law",
    "reuse_analysis",
    "sample_grid",
    "seed_points",
    "tokens_from_flops",
    "tuned_one_pass",
]

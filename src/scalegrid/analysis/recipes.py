"""The recipes of "Pre-training under infinite compute" (Kim, Kotha, Liang & Hashimoto 2025;
seeds/002) as functions of a runs table (docs/results.md columns), one function per recipe.

    best_runs            best run per (model, unique_tokens) over epochs, lr, weight decay, seed
    local_optimality     is each chosen point no worse than its grid neighbours? which are missing?
    param_scaling        per token budget: L(N) = A / N^B + C over the best runs; C = asymptote
    ensemble_scaling     per (model, token budget): L(K) = A / K^B + C over member count K
    joint_scaling        per token budget: power law in N over the ensemble asymptotes; its C is
                         the joint (parameters x members) asymptote
    data_scaling         L_inf(D) = A / D^B + C over a recipe's asymptotes per token budget D
    data_efficiency      how many times more unique data the baseline needs for the same loss
    distillation         retention (L_single - L_student) / (L_single - L_teacher)
    optimal_hparam_scaling   optimal weight decay (or epochs) against N: h* = k N^gamma

Only rows whose `status` is COMPLETED count (when the table has a status column). Fits return
DataFrames with one row per group: the group's columns, each parameter with `<p>_lo`, `<p>_hi`
(percentile bootstrap), `objective`, `n_points`, `converged`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from scalegrid.analysis.least_squares import FitInputError, FitResult, Objective, params_table, percentile_ci
from scalegrid.analysis.laws import fit_log_linear, fit_power_law, inverse_power_law, power_law
from scalegrid.analysis.tables import by_size, completed, groups, of_stage, per_group, require_columns

SIZE_AND_DATA = ("model", "unique_tokens")
HPARAM_AXES = ("epochs", "lr", "weight_decay")
LOSS = "val_loss"


def best_runs(
    runs: pd.DataFrame,
    *,
    by: Sequence[str] = SIZE_AND_DATA,
    loss: str = LOSS,
    stage: str | None = "train",
) -> pd.DataFrame:
    """The lowest-loss COMPLETED row per group `by` (over every other axis), smallest model first
    (by `params`), then sorted by `by`."""
    rows = of_stage(completed(runs), stage)
    require_columns(rows, *by, loss)
    # a table concatenated from per-trial files repeats index labels: pick rows by position
    rows = rows[np.isfinite(pd.to_numeric(rows[loss], errors="coerce"))].reset_index(drop=True)
    if rows.empty:
        raise FitInputError(f"no COMPLETED rows with a finite {loss!r} to choose from")
    best = rows.loc[rows.groupby(list(by), sort=True)[loss].idxmin()]
    return by_size(best.sort_values(list(by)), *by).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Locally-optimal certificate


def local_optimality_neighbours(
    runs: pd.DataFrame,
    *,
    by: Sequence[str] = SIZE_AND_DATA,
    axes: Sequence[str] = HPARAM_AXES,
    loss: str = LOSS,
    stage: str | None = "train",
    chosen: pd.DataFrame | None = None,
    grid: Mapping[str, Sequence[float]] | None = None,
) -> pd.DataFrame:
    """Each chosen point against its neighbours one grid step away along each axis.

    The grid of an axis is `grid[axis]` or every value the table has on it; a neighbour holds
    every other axis at the chosen value. One row per (group, axis, side): the group's columns,
    `axis`, `side` (-1 / +1), `value`, `neighbour_value` (NaN at the grid's edge), `loss`,
    `neighbour_loss` (the best run there; NaN if none) and `status`: "no_worse" (the neighbour's
    loss is >= the chosen loss), "better", "missing" (on the grid, not run) or "edge".
    `chosen` defaults to `best_runs`.
    """
    rows = of_stage(completed(runs), stage)
    require_columns(rows, *by, *axes, loss)
    if chosen is None:
        chosen = best_runs(runs, by=by, loss=loss, stage=stage)
    grids = {
        a: np.unique(np.asarray(grid[a] if grid and a in grid else rows[a].dropna(), dtype=float))
        for a in axes
    }
    records = []
    for key, group_rows in groups(rows, by):
        mask = np.ones(len(chosen), dtype=bool)
        for col, val in key.items():
            mask &= (chosen[col] == val).to_numpy()
        if not mask.any():
            continue
        point = chosen[mask].iloc[0]
        for axis in axes:
            values = grids[axis]
            here = float(point[axis])
            idx = int(np.argmin(np.abs(values - here)))
            for side in (-1, +1):
                j = idx + side
                rec = {**key, "axis": axis, "side": side, "value": here,
                       "loss": float(point[loss])}
                if not 0 <= j < len(values):
                    records.append({**rec, "neighbour_value": np.nan, "neighbour_loss": np.nan,
                                    "status": "edge"})
                    continue
                at = np.isclose(group_rows[axis].to_numpy(float), values[j], rtol=1e-9, atol=0)
                for other in axes:
                    if other != axis:
                        at &= np.isclose(group_rows[other].to_numpy(float), float(point[other]),
                                         rtol=1e-9, atol=0)
                there = group_rows.loc[at, loss].astype(float)
                n_loss = float(there.min()) if len(there) else np.nan
                status = ("missing" if np.isnan(n_loss)
                          else "no_worse" if n_loss >= rec["loss"] else "better")
                records.append({**rec, "neighbour_value": float(values[j]),
                                "neighbour_loss": n_loss, "status": status})
    return pd.DataFrame(records)


def local_optimality(
    runs: pd.DataFrame,
    *,
    by: Sequence[str] = SIZE_AND_DATA,
    axes: Sequence[str] = HPARAM_AXES,
    loss: str = LOSS,
    stage: str | None = "train",
    chosen: pd.DataFrame | None = None,
    grid: Mapping[str, Sequence[float]] | None = None,
) -> pd.DataFrame:
    """The locally-optimal certificate per group (the paper's check of its tuned recipes).

    Columns: the group's, the chosen point's `axes` and `loss`, `no_worse` (no neighbour that
    was run is better), `better` and `missing` (lists like "lr=0.003", "epochs+ (edge)"),
    `certified` (no_worse and nothing missing: every neighbour was run and none is better).
    """
    detail = local_optimality_neighbours(
        runs, by=by, axes=axes, loss=loss, stage=stage, chosen=chosen, grid=grid
    )
    if chosen is None:
        chosen = best_runs(runs, by=by, loss=loss, stage=stage)
    out = []
    for _, point in chosen.iterrows():
        key = {col: point[col] for col in by}
        mask = np.ones(len(detail), dtype=bool)
        for col, val in key.items():
            mask &= (detail[col] == val).to_numpy()
        mine = detail[mask]
        better = [f"{r.axis}={r.neighbour_value:g}" for r in mine.itertuples() if r.status == "better"]
        missing = [
            f"{r.axis}{'+' if r.side > 0 else '-'} (edge)" if r.status == "edge"
            else f"{r.axis}={r.neighbour_value:g}"
            for r in mine.itertuples() if r.status in ("missing", "edge")
        ]
        out.append({**key, **{a: point[a] for a in axes}, "loss": float(point[loss]),
                    "no_worse": not better, "better": better, "missing": missing,
                    "certified": not better and not missing})
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------
# Asymptotes: parameters, ensembles, joint


def _fits_frame(results: Sequence[tuple[Mapping[str, object], FitResult]]) -> pd.DataFrame:
    return pd.DataFrame(params_table(results))


def param_scaling(
    best: pd.DataFrame,
    *,
    by: Sequence[str] = ("unique_tokens",),
    params: str = "params",
    loss: str = LOSS,
    objective: Objective = Objective(),
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per token budget, L(N) = A / N^B + C over the best run of each size; C is the asymptote
    (the loss of the recipe at infinite parameters). Pass `best_runs(...)`."""
    results = per_group(
        best, by,
        lambda rows: fit_power_law(rows, params, loss, objective=objective,
                                   bootstrap=bootstrap, seed=seed, level=level),
    )
    return _fits_frame(results)


def ensemble_scaling(
    runs: pd.DataFrame,
    *,
    by: Sequence[str] = SIZE_AND_DATA,
    members: str = "members",
    params: str = "params",
    loss: str = LOSS,
    objective: Objective = Objective(),
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per (model, token budget), L(K) = A / K^B + C over member count K; C is the ensemble
    asymptote (infinitely many members).

    Uses COMPLETED rows of the `train` (K = 1 when `members` is empty) and `ensemble` stages, the
    lowest loss per K. The output keeps `params` (the group's model size) for `joint_scaling`.
    """
    rows = of_stage(completed(runs), ("train", "ensemble")).copy()
    require_columns(rows, *by, members, loss)
    rows[members] = pd.to_numeric(rows[members], errors="coerce").fillna(1.0)
    rows = rows[np.isfinite(pd.to_numeric(rows[loss], errors="coerce"))]
    keep = [*by, members] + ([params] if params in rows.columns else [])
    agg = {loss: "min", **({params: "first"} if params in rows.columns else {})}
    per_k = rows.groupby([*by, members], sort=True).agg(agg).reset_index()[[*keep, loss]]
    results = per_group(
        per_k, by,
        lambda r: fit_power_law(r, members, loss, objective=objective,
                                bootstrap=bootstrap, seed=seed, level=level),
    )
    frame = _fits_frame(results)
    if params in per_k.columns:
        sizes = per_k.groupby(list(by), sort=True)[params].first().reset_index()
        frame = frame.merge(sizes, on=list(by), how="left")
    return frame


def joint_scaling(
    ensemble_fits: pd.DataFrame,
    *,
    by: Sequence[str] = ("unique_tokens",),
    params: str = "params",
    asymptote: str = "C",
    objective: Objective = Objective(),
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per token budget, the power law in N over the ensemble asymptotes C_ens(N) of
    `ensemble_scaling`: C_ens(N) = A / N^B + C. C is the joint asymptote (members -> inf, then
    parameters -> inf), the paper's best recipe."""
    results = per_group(
        ensemble_fits, by,
        lambda rows: fit_power_law(rows, params, asymptote, objective=objective,
                                   bootstrap=bootstrap, seed=seed, level=level),
    )
    return _fits_frame(results)


# ---------------------------------------------------------------------------------------------
# Data scaling and data efficiency


def data_scaling(
    asymptotes: pd.DataFrame,
    *,
    unique_tokens: str = "unique_tokens",
    asymptote: str = "C",
    objective: Objective = Objective(),
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> FitResult:
    """L_inf(D) = A / D^B + C over one recipe's asymptotes per token budget D (the output of
    `param_scaling` or `joint_scaling`): the recipe's data scaling law."""
    return fit_power_law(asymptotes, unique_tokens, asymptote, objective=objective,
                         bootstrap=bootstrap, seed=seed, level=level)


def data_efficiency(
    recipe: FitResult,
    baseline: FitResult,
    unique_tokens: Sequence[float] | float,
    *,
    level: float = 0.95,
) -> pd.DataFrame:
    """How many times more unique data the baseline needs to match the recipe's loss.

    At budget D the recipe reaches L = A_r / D^B_r + C_r; the baseline reaches it at
    D_base = (A_b / (L - C_b))^(1/B_b) (inf if L <= C_b), and multiplier = D_base / D (the
    paper: 5.17x at 200M tokens). Intervals pair the two fits' bootstrap draws.
    Columns: unique_tokens, loss, baseline_tokens, multiplier, multiplier_lo, multiplier_hi.
    """
    d = np.atleast_1d(np.asarray(unique_tokens, dtype=float))
    r, b = recipe.params, baseline.params
    loss = power_law(d, r["A"], r["B"], r["C"])
    d_base = inverse_power_law(loss, b["A"], b["B"], b["C"])
    lo = hi = np.full(d.shape, np.nan)
    if recipe.samples is not None and baseline.samples is not None:
        m = min(len(recipe.samples), len(baseline.samples))
        rs = {k: recipe.sample(k)[:m, None] for k in ("A", "B", "C")}
        bs = {k: baseline.sample(k)[:m, None] for k in ("A", "B", "C")}
        draws_loss = power_law(d[None, :], rs["A"], rs["B"], rs["C"])
        draws = inverse_power_law(draws_loss, bs["A"], bs["B"], bs["C"]) / d[None, :]
        lo, hi = percentile_ci(draws, level)
    return pd.DataFrame({
        "unique_tokens": d, "loss": loss, "baseline_tokens": d_base, "multiplier": d_base / d,
        "multiplier_lo": lo, "multiplier_hi": hi,
    })


# ---------------------------------------------------------------------------------------------
# Distillation


def distillation_retention(
    loss_single: np.ndarray | float, loss_teacher: np.ndarray | float, loss_student: np.ndarray | float
) -> np.ndarray:
    """(L_single - L_student) / (L_single - L_teacher): the share of the teacher's gain over a
    single model of the student's size that the student keeps (the paper: 83%)."""
    single = np.asarray(loss_single, dtype=float)
    gain = single - np.asarray(loss_teacher, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (single - np.asarray(loss_student, dtype=float)) / gain


def distillation(
    runs: pd.DataFrame,
    *,
    by: Sequence[str] = SIZE_AND_DATA,
    members: str = "members",
    loss: str = LOSS,
) -> pd.DataFrame:
    """Retention of every COMPLETED `distill` row.

    For a student of model m at budget D: L_single is the best `train` run of m at D; L_teacher
    is the `ensemble` run of m at D with the student's `members` (the teacher's size) when that
    column is set, else the best ensemble of m at D. Columns: the group's, members, loss_single,
    loss_teacher, loss_student, retention.
    """
    rows = completed(runs)
    require_columns(rows, "stage", *by, loss)
    single = best_runs(rows, by=by, loss=loss, stage="train")
    ens = of_stage(rows, "ensemble")
    out = []
    for _, student in of_stage(rows, "distill").iterrows():
        key = {col: student[col] for col in by}

        def matches(frame: pd.DataFrame) -> np.ndarray:
            m = np.ones(len(frame), dtype=bool)
            for col, val in key.items():
                m &= (frame[col] == val).to_numpy()
            return m

        l_single = single.loc[matches(single), loss]
        teachers = ens[matches(ens)]
        k = student.get(members, np.nan)
        if members in teachers.columns and pd.notna(k) and (teachers[members] == k).any():
            teachers = teachers[teachers[members] == k]
        if l_single.empty or teachers.empty:
            continue  # no single-model or ensemble reference for this student
        ls, lt, lst = float(l_single.iloc[0]), float(teachers[loss].min()), float(student[loss])
        out.append({**key, members: k, "loss_single": ls, "loss_teacher": lt, "loss_student": lst,
                    "retention": float(distillation_retention(ls, lt, lst))})
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------
# Optimal hyperparameters against size


def optimal_hparam_scaling(
    best: pd.DataFrame,
    *,
    hparam: str = "weight_decay",
    params: str = "params",
    by: Sequence[str] = ("unique_tokens",),
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per token budget, the optimal `hparam` (weight decay, epochs, ...) of the best runs
    against N: log h* = gamma log N + log k, i.e. h* = k N^gamma (least squares in log-log).
    Columns: the group's, `exponent` (gamma), `coefficient` (k), each with _lo/_hi, n_points."""
    results = per_group(
        best, by,
        lambda rows: fit_log_linear(rows, params, hparam, log_y=True,
                                    bootstrap=bootstrap, seed=seed, level=level),
    )
    records = []
    for key, res in results:
        ci_a = res.ci.get("A", (np.nan, np.nan))
        ci_b = res.ci.get("B", (np.nan, np.nan))
        records.append({
            **key,
            "exponent": res.params["A"], "exponent_lo": ci_a[0], "exponent_hi": ci_a[1],
            "coefficient": float(np.exp(res.params["B"])),
            "coefficient_lo": float(np.exp(ci_b[0])), "coefficient_hi": float(np.exp(ci_b[1])),
            "objective": res.objective, "n_points": res.n_points, "converged": res.converged,
        })
    return pd.DataFrame(records)

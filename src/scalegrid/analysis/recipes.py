"""The recipes of "Pre-training under infinite compute" (Kim, Kotha, Liang & Hashimoto 2025;
seeds/002) as functions of a runs table (docs/results.md columns), one function per recipe.

    best_runs            best point per (model, unique_tokens) over epochs, lr, weight decay: seed means
    local_optimality     is each chosen point no worse than its grid neighbours? which are missing?
    param_scaling        per token budget: L(N) = A / N^B + C over the best runs; C = asymptote
    ensemble_scaling     per (model, token budget): L(K) = A / K^B + C over member count K
    joint_scaling        per token budget: power law in N over the ensemble asymptotes; its C is
                         the joint (parameters x members) asymptote
    data_scaling         L_inf(D) = A / D^B + C over a recipe's asymptotes per token budget D
    data_efficiency      how many times more unique data the baseline needs for the same loss
    distillation         retention (L_single - L_student) / (L_single - L_teacher)
    ensemble_gains       the ensemble against its own members alone: beyond the seed noise or not
    optimal_hparam_scaling   optimal weight decay (or epochs) against N: h* = k N^gamma

Only rows whose `status` is COMPLETED count (when the table has a status column). Fits return
DataFrames with one row per group: the group's columns, each parameter with `<p>_lo`, `<p>_hi`
(percentile bootstrap), `objective`, `n_points`, `converged`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from scalegrid.analysis.least_squares import FitInputError, FitResult, Objective, params_table, percentile_ci
from scalegrid.analysis.laws import fit_log_linear, fit_power_law, inverse_power_law, power_law
from scalegrid.analysis.seeds import compare, pooled_sd, seed_points
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
    """The best point per group `by` (over every other axis), smallest model first (by `params`),
    then sorted by `by`: the point of lowest mean `loss` over its seeds (`seeds.seed_points`: a
    grid's seed axis, extra ensemble members and confirmation seeds of the same configuration), as
    the row of its first seed with `loss` the mean, `<loss>_sd`, `seeds` and `seed_losses`. One
    seed per point: the lowest-loss row."""
    rows = single_model_rows(completed(runs), stage)
    require_columns(rows, *by, loss)
    points = seed_points(rows, loss=loss)  # by position: a table of per-trial files repeats index labels
    if points.empty:
        raise FitInputError(f"no COMPLETED rows with a finite {loss!r} to choose from")
    best = points.loc[points.groupby(list(by), sort=True)[loss].idxmin()]
    return by_size(best.sort_values(list(by)), *by).reset_index(drop=True)


def single_model_rows(rows: pd.DataFrame, stage: str | None) -> pd.DataFrame:
    """Rows of `stage`; for `train`, the extra ensemble members too: at their grid point they are
    more seeds of the same single model (`seed_points` leaves out the members of a scaled recipe)."""
    if stage != "train" or "stage" not in rows.columns:
        return of_stage(rows, stage)
    return rows[rows["stage"] == "train"]


# ---------------------------------------------------------------------------------------------
# Locally-optimal certificate

Move = tuple[tuple[str, int], ...]  # a neighbour: (axis, -1 | +1) for each axis it moves along, in axis order


def neighbourhood_moves(
    axes: Sequence[str], coupled: Sequence[Sequence[str]] = (), full: bool = False, radius: int = 1,
) -> tuple[Move, ...]:
    """The moves to a point's neighbours on ladders of `axes`: one step down and up along each axis;
    for each `coupled` pair the four diagonal steps too (a valley that runs diagonally, as lr and
    epochs make one: more epochs want a smaller lr, is invisible to one axis at a time); with `full`
    every combination of -1, 0, +1 but all 0: the 3^d - 1 points around it. `radius` 2 adds, on each
    coupled pair, the ring two steps out (16 points: a valley whose slope is not one ladder step per
    step, e.g. lr ladder steps of 3x against epochs steps of 2x, and a second dip along it)."""
    axes = list(axes)
    if full:
        steps = itertools.product((-1, 0, 1), repeat=len(axes))
        moves = [tuple((a, s) for a, s in zip(axes, step) if s) for step in steps if any(step)]
        moves.sort(key=lambda m: (len(m), [axes.index(a) for a, _ in m], [s for _, s in m]))
    else:
        moves = [((a, side),) for a in axes for side in (-1, 1)]
    for pair in coupled:
        first, second = sorted(pair, key=axes.index)
        if not full:
            moves += [((first, s1), (second, s2)) for s1 in (-1, 1) for s2 in (-1, 1)]
        if radius > 1:
            ring = [(i, j) for i in range(-2, 3) for j in range(-2, 3) if max(abs(i), abs(j)) == 2]
            moves += [tuple((a, s) for a, s in ((first, i), (second, j)) if s) for i, j in ring]
    return tuple(dict.fromkeys(moves))  # in order, once each


def neighbourhood_words(
    axes: Sequence[str], coupled: Sequence[Sequence[str]] = (), full: bool = False, radius: int = 1,
) -> str:
    """The neighbourhood in words: 'each axis ±1 and the lr × epochs diagonals (10 neighbours)'."""
    n = len(neighbourhood_moves(axes, coupled, full, radius))
    ring = "".join(f", and the ring two steps out on {' × '.join(pair)}" for pair in coupled) if radius > 1 else ""
    if full:
        return f"every point around it, 3^{len(axes)} - 1{ring} ({n} neighbours)"
    diagonals = "".join(f" and the {' × '.join(pair)} diagonals" for pair in coupled)
    return f"each axis ±1{diagonals}{ring} ({n} neighbours)"


def neighbour_status(centre_loss: float, neighbour_loss: float, margin: float = 0.0) -> str:
    """A run neighbour against the centre: "better" (lower by more than `margin`, the seed noise of
    the two), "within_noise" (lower, but by no more than the margin) or "no_worse"."""
    if neighbour_loss < centre_loss - margin:
        return "better"
    return "within_noise" if neighbour_loss < centre_loss else "no_worse"



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
    rows = single_model_rows(completed(runs), stage)
    require_columns(rows, *by, *axes, loss)
    rows = seed_points(rows, loss=loss)  # a neighbour's loss: its mean over seeds
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
                status = "missing" if np.isnan(n_loss) else neighbour_status(rec["loss"], n_loss)
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
    """Per token budget, L(N) = A / N^B + C over the best point of each size; C is the asymptote
    (the loss of the recipe at infinite parameters). Pass `best_runs(...)`: where a point has
    several seeds the law is fitted to their mean and every bootstrap resample redraws them, so
    the intervals include the seed noise. A degenerate law says so in `degenerate` and `flags`."""
    replicates = "seed_losses" if "seed_losses" in best.columns else None
    results = per_group(
        best, by,
        lambda rows: fit_power_law(rows, params, loss, objective=objective, bootstrap=bootstrap, seed=seed,
                                   level=level, replicates=replicates),
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
    """Retention of every COMPLETED `distill` row, and whether the student beats a single model
    beyond the seed noise.

    For a student of model m at budget D: L_single is the best `train` point of m at D (the mean
    of its seeds); L_teacher is the `ensemble` run of m at D with the student's `members` (the
    teacher's size) when that column is set, else the best ensemble of m at D. Columns: the
    group's, members, loss_single, single_seeds, loss_teacher, loss_student, retention, and
    `student_vs_single` / `teacher_vs_single`: `seeds.compare` of each against the single model's
    seeds (lower | higher | within noise | noise unknown).
    """
    rows = completed(runs)
    require_columns(rows, "stage", *by, loss)
    single = best_runs(rows, by=by, loss=loss, stage="train")
    noise = pooled_sd(seed_points(single_model_rows(rows, "train"), loss=loss), loss=loss)
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
        seeds = single.loc[matches(single), "seed_losses"].iloc[0]
        out.append({**key, members: k, "loss_single": ls, "single_seeds": len(seeds), "loss_teacher": lt,
                    "loss_student": lst, "retention": float(distillation_retention(ls, lt, lst)),
                    "student_vs_single": compare([lst], seeds, noise).verdict,
                    "teacher_vs_single": compare([lt], seeds, noise).verdict})
    return pd.DataFrame(out)


def ensemble_gains(runs: pd.DataFrame, *, by: Sequence[str] = SIZE_AND_DATA, loss: str = LOSS) -> pd.DataFrame:
    """Does the ensemble beat one model beyond the seed noise? Per group, the ensemble row with the
    most members K against the losses of those very members alone (each is a seed of the single
    model): columns the group's, `members` (K), `loss_ensemble`, `loss_single` (the members' mean),
    `single_sd`, `difference` (ensemble - single), `stderr` and `verdict` (`seeds.compare`)."""
    rows = completed(runs)
    require_columns(rows, "stage", *by, loss)
    ens = of_stage(rows, "ensemble")
    if ens.empty or "member_trial_ids" not in ens.columns:
        return pd.DataFrame(columns=[*by, "members", "loss_ensemble", "loss_single", "single_sd", "difference",
                                     "stderr", "verdict"])
    train = rows[rows["stage"] == "train"].drop_duplicates("trial_id").set_index("trial_id")[loss]
    noise = pooled_sd(seed_points(single_model_rows(rows, "train"), loss=loss), loss=loss)
    out = []
    for key, group in groups(ens, by):
        group = group.reset_index(drop=True)  # per-trial files repeat index labels
        largest = group.loc[pd.to_numeric(group["members"], errors="coerce").idxmax()]
        ids = [t for t in (largest["member_trial_ids"] if largest["member_trial_ids"] is not None else []) if t in train.index]
        if not ids:
            continue
        singles = train.loc[ids].to_numpy(dtype=float)
        c = compare([float(largest[loss])], singles, noise)
        out.append({**key, "members": int(largest["members"]), "loss_ensemble": float(largest[loss]),
                    "loss_single": float(singles.mean()), "single_sd": float(np.std(singles, ddof=1)) if singles.size > 1 else np.nan,
                    "difference": c.difference, "stderr": c.stderr, "verdict": c.verdict})
    return pd.DataFrame(out, columns=[*by, "members", "loss_ensemble", "loss_single", "single_sd", "difference",
                                      "stderr", "verdict"])


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

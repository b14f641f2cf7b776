"""The analysis results several sections show, computed once per report (`Context.once`).

The single-model laws in parameters (sections 2, 5 and 6), the ensemble and joint laws (5 and 6)
and the optimal-hyper-parameter laws (3 and 4) all come from here, so a section never fits what
another already has. The ensemble laws are the slowest fits: `start_ensemble_fits` sends them to
the worker processes (`report/parallel.py`) before the first section is made.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from scalegrid.analysis.least_squares import FitInputError
from scalegrid.analysis.recipes import (
    best_runs,
    ensemble_scaling,
    joint_scaling,
    optimal_hparam_scaling,
    param_scaling,
)
from scalegrid.analysis.seeds import pooled_sd, seed_points
from scalegrid.report.parallel import split_by
from scalegrid.report.sections.common import (
    LINE_POINTS,
    MIN_POINTS,
    Context,
    NoRows,
    describe_keys,
    enough_points,
    sound,
)


def best_train(ctx: Context) -> pd.DataFrame:
    """best_runs per (model, unique_tokens), with `params` (sections 2-4, and the laws in parameters)."""
    return ctx.once("best", lambda: best_runs(ctx.inputs.runs))


def seed_spread(ctx: Context) -> float:
    """The seed noise of single models: the spread of the training points with two seeds or more,
    pooled (NaN: no point has two seeds); what an ordering between points must exceed."""
    return ctx.once("seed_spread", lambda: pooled_sd(seed_points(ctx.inputs.stage("train"))))


def param_fits(ctx: Context) -> tuple[pd.DataFrame, list[str]]:
    """param_scaling per token budget over the budgets with >= 3 sizes; and why budgets were left out."""
    return ctx.once("param_fits", lambda: _law_per_budget(
        ctx, best_train(ctx), param_scaling,
        f"no token budget has best runs at {MIN_POINTS} or more model sizes; A / N^B + C has three free "
        f"parameters, so three sizes fit it exactly and say nothing: it needs {MIN_POINTS} sizes per budget",
    ))


def _law_per_budget(
    ctx: Context, rows: pd.DataFrame, fit: Callable[..., pd.DataFrame], no_budget: str
) -> tuple[pd.DataFrame, list[str]]:
    """`fit` (a law in parameters) per token budget of `rows`, over the budgets with >= 3 sizes;
    and why budgets were left out. `no_budget`: the reason when no budget has enough sizes."""
    usable, dropped = enough_points(rows, ["unique_tokens"], "params")
    if usable.empty:
        raise NoRows(no_budget)
    fits, failed = fit_by_group(fit, usable, ["unique_tokens"], ctx.fit_kwargs)
    return fits, [f"{describe_keys([k])}: fewer than {MIN_POINTS} sizes (the law has three free parameters)"
                  for k in dropped] + failed


def fit_by_group(
    fit: Callable[..., pd.DataFrame], frame: pd.DataFrame, by: list[str], kwargs: dict
) -> tuple[pd.DataFrame, list[str]]:
    """One call of the recipe `fit` on every group; if the analysis refuses one group, each group
    on its own, so one bad group costs only itself. Returns the fits and why groups were left out."""
    try:
        return fit(frame, **kwargs), []
    except FitInputError as err:
        if frame.groupby(by).ngroups <= 1:
            raise NoRows(str(err)) from None
    frames, failed = [], []
    for _, rows in frame.groupby(by, sort=True):
        try:
            frames.append(fit(rows, **kwargs))
        except FitInputError as err:
            failed.append(str(err))
    if not frames:
        raise NoRows(f"no group could be fitted ({failed[0]})")
    return pd.concat(frames, ignore_index=True), failed


def single_and_ensemble_runs(ctx: Context) -> pd.DataFrame:
    """The usable single-model and ensemble rows, with `members` K (1 for a single model)."""
    rows = ctx.inputs.completed
    rows = rows[rows["stage"].fillna("train").isin(["train", "ensemble"])].copy()
    member = pd.to_numeric(rows["member"], errors="coerce").fillna(0) if "member" in rows else 0
    rows = rows[(rows["stage"] != "train") | (member == 0)]  # a lucky extra member is no single model's K = 1
    rows["members"] = pd.to_numeric(rows["members"], errors="coerce").fillna(1)
    return rows


def ensemble_inputs(ctx: Context) -> tuple[pd.DataFrame, list[str]]:
    """The rows ensemble_scaling fits: (model, budget) pairs with an ensemble and >= 3 member
    counts (K = 1 from the train stage); and the pairs dropped for too few."""
    if ctx.inputs.stage("ensemble").empty:
        raise NoRows("no ensemble runs (stage `ensemble`, `members` = K) in the store")
    rows = single_and_ensemble_runs(ctx)
    with_ens = rows[rows["stage"] == "ensemble"][["model", "unique_tokens"]].drop_duplicates()
    rows = rows.merge(with_ens, on=["model", "unique_tokens"])
    usable, dropped = enough_points(rows, ["model", "unique_tokens"], "members")
    if usable.empty:
        raise NoRows(f"no (model, token budget) has {MIN_POINTS} or more member counts K (K = 1: its best single run)")
    return usable, [f"{describe_keys([k])}: fewer than {MIN_POINTS} member counts" for k in dropped]


def start_ensemble_fits(ctx: Context) -> None:
    """Send the ensemble laws (one fit per size and budget: the slowest part) to the workers now,
    sliced by token budget, so they are fitted while the first sections draw."""
    if "ensemble_futures" in ctx.cache or ctx.workers is None or ctx.workers.workers == 0:
        return
    try:
        usable, dropped = ensemble_inputs(ctx)
    except NoRows:
        return
    slices = split_by(usable, "unique_tokens", ctx.workers.workers)
    futures = [ctx.workers.submit("ensemble_scaling", rows, **ctx.fit_kwargs) for rows in slices]
    ctx.cache["ensemble_futures"] = (futures, slices, dropped)


def ensemble_fits(ctx: Context) -> tuple[pd.DataFrame, list[str]]:
    """ensemble_scaling per (model, token budget); the same rows whether sliced or not."""

    def make():
        start_ensemble_fits(ctx)
        by = ["model", "unique_tokens"]
        if "ensemble_futures" not in ctx.cache:  # no workers: one call here
            usable, dropped = ensemble_inputs(ctx)
            fits, failed = fit_by_group(ensemble_scaling, usable, by, ctx.fit_kwargs)
            return fits, dropped + failed
        futures, slices, dropped = ctx.cache["ensemble_futures"]
        frames, failed = [], []
        for future, rows in zip(futures, slices):
            try:
                frames.append(future.result())
            except FitInputError:  # a group the analysis refuses: fit this slice group by group
                try:
                    fits, why = fit_by_group(ensemble_scaling, rows, by, ctx.fit_kwargs)
                    frames.append(fits)
                    failed += why
                except NoRows as err:
                    failed.append(str(err))
        if not frames:
            raise NoRows(f"no ensemble law could be fitted ({failed[0]})")
        fits = pd.concat(frames, ignore_index=True).sort_values(by, kind="stable")
        return fits.reset_index(drop=True), dropped + failed

    return ctx.once("ensemble_fits", make)


def joint_fits(ctx: Context) -> tuple[pd.DataFrame, list[str]]:
    """joint_scaling per token budget: a law in parameters over the ensemble asymptotes C(N)."""

    def make():
        ens, _ = ensemble_fits(ctx)
        ens = sound(ens)  # a degenerate law's asymptote is no finding to fit over
        return _law_per_budget(
            ctx, ens, joint_scaling,
            f"the joint asymptote needs ensemble laws at {MIN_POINTS} or more sizes of one token budget",
        )

    return ctx.once("joint_fits", make)


def hparam_law(ctx: Context, hparam: str) -> pd.DataFrame:
    """optimal_hparam_scaling of `hparam` over the best runs, per token budget (>= 3 sizes)."""

    def make():
        best = best_train(ctx)
        usable, _ = enough_points(best, ["unique_tokens"], "params", n=LINE_POINTS)
        if usable.empty:  # a line through two points has no error to speak of
            raise NoRows(f"a trend in size needs best runs at {LINE_POINTS} or more sizes of one token budget")
        return optimal_hparam_scaling(usable, hparam=hparam, **ctx.fit_kwargs)

    return ctx.once(f"hparam_law:{hparam}", make)

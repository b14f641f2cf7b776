"""Section 4: loss against weight decay and learning rate, the locally-optimal hyper-parameters
per size with their certificates, and the optimal weight decay and epochs against size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalegrid.analysis.laws import power_law
from scalegrid.analysis.recipes import local_optimality, local_optimality_neighbours
from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt
from scalegrid.report.sections.common import (
    AXIS_NAMES,
    AXIS_SHORT,
    Context,
    NoRows,
    budget_colors,
    budget_label,
    hparam_law_table,
    loss_panels,
    lowest_loss_per,
    panel_budgets,
    part,
    records,
    size_colors,
    size_label,
    train_rows,
)
from scalegrid.report.sections.shared_fits import best_train, hparam_law

LOSS_AXES = {"weight_decay": "weight decay", "lr": "peak learning rate"}  # a loss figure each, if varied
TREND_AXES = {"weight_decay": "optimal weight decay", "epochs": "optimal epochs"}  # optimum against size
TREND_FIGURE = "Figure of the optimal hyper-parameters against parameters"


@dataclass(frozen=True)
class LocalOptimality:
    certificates: pd.DataFrame  # local_optimality: per chosen (model, budget), certified or not and why
    neighbours: pd.DataFrame  # local_optimality_neighbours: each neighbour, run or not, better or not
    at_chosen: pd.DataFrame  # the certificates with the chosen run's params, epochs, lr and weight decay
    axes: tuple[str, ...]  # the axes checked: those the grid varies
    fixed: tuple[str, ...]  # the axes with one value, so not checked


@dataclass(frozen=True)
class OptimalTrend:
    hparam: str  # weight_decay or epochs
    law: pd.DataFrame  # optimal_hparam_scaling per token budget, indexed by it (empty: not fitted)
    grid: tuple  # the values the grid tried


@dataclass(frozen=True)
class HyperparameterNumbers:
    best: pd.DataFrame  # best_runs: the best run per (model, token budget)
    loss_by_axis: dict[str, pd.DataFrame]  # axis -> lowest loss per (size, budget, value), for the axes varied
    sizes: tuple  # every model size trained
    budgets_shown: tuple  # the token budgets with a panel
    local_optimality: LocalOptimality | None  # None: not made (see notes)
    weight_decay_law: pd.DataFrame | None  # optimal_hparam_scaling(hparam="weight_decay"); None: see notes
    trends: tuple[OptimalTrend, ...]  # none with one model size, or when neither axis varies
    notes: tuple[str, ...]


def section_hyperparameters(ctx: Context, s: Section) -> None:
    numbers = hyperparameter_numbers(ctx)
    figure_notes = draw_hyperparameters(ctx, s, numbers)
    write_hyperparameters(ctx, s, numbers, figure_notes)


def hyperparameter_numbers(ctx: Context) -> HyperparameterNumbers:
    rows = train_rows(ctx)
    if rows.empty:
        raise NoRows("no COMPLETED training runs yet")
    varied = [a for a in LOSS_AXES if rows[a].nunique() > 1]
    if not varied:
        raise NoRows("the grid has one weight decay and one learning rate; nothing to compare")
    best = best_train(ctx)
    notes = []
    budgets, note = panel_budgets(rows["unique_tokens"])
    if note:
        notes.append(f"Figures: {note}.")
    certificates = weight_decay_law = None
    with part(notes, "Locally-optimal hyper-parameters"):
        certificates = _local_optimality(ctx, rows, best)
    with part(notes, "Optimal weight decay against parameters"):
        weight_decay_law = hparam_law(ctx, "weight_decay")
    return HyperparameterNumbers(
        best=best, loss_by_axis={axis: lowest_loss_per(rows, axis) for axis in varied},
        sizes=tuple(sorted(set(rows["params"]))), budgets_shown=tuple(budgets), local_optimality=certificates,
        weight_decay_law=weight_decay_law, trends=_optimal_trends(ctx, rows, best), notes=tuple(notes),
    )


def _local_optimality(ctx: Context, rows: pd.DataFrame, best: pd.DataFrame) -> LocalOptimality:
    # only the axes the grid varies: an axis with one value has no neighbours to run
    axes = [a for a in ("epochs", "lr", "weight_decay") if rows[a].nunique() > 1]
    cert = local_optimality(ctx.inputs.runs, axes=axes)
    detail = local_optimality_neighbours(ctx.inputs.runs, axes=axes)
    chosen = best.set_index(["model", "unique_tokens"])  # the point each certificate is about
    at_chosen = cert.assign(**{col: [chosen[col].get((m, d), np.nan) for m, d in zip(cert["model"], cert["unique_tokens"])]
                               for col in ("params", "epochs", "lr", "weight_decay")})
    return LocalOptimality(certificates=cert, neighbours=detail, at_chosen=at_chosen, axes=tuple(axes),
                           fixed=tuple(a for a in ("epochs", "lr", "weight_decay") if a not in axes))


def _optimal_trends(ctx: Context, rows: pd.DataFrame, best: pd.DataFrame) -> tuple[OptimalTrend, ...]:
    """The weight decay and epochs of each size's best run against size, with their laws."""
    shown = [h for h in TREND_AXES if rows[h].nunique() > 1]
    if not shown or best["params"].nunique() < 2:
        return ()  # one size says nothing about a trend in size
    trends = []
    for h in shown:
        try:
            law = hparam_law(ctx, h).set_index("unique_tokens")
        except Exception:  # noqa: BLE001 - points without a fit still say something
            law = pd.DataFrame()
        trends.append(OptimalTrend(hparam=h, law=law, grid=tuple(sorted(rows[h].dropna().unique()))))
    return tuple(trends)


def draw_hyperparameters(ctx: Context, s: Section, numbers: HyperparameterNumbers) -> list[str]:
    """Loss against each varied axis, and the optimal values against size; returns the notes on
    a figure that could not be drawn."""
    sizes = size_colors(numbers.sizes)
    for axis, cells in numbers.loss_by_axis.items():
        label = LOSS_AXES[axis]
        fig, axes = loss_panels(ctx, cells, axis, numbers.budgets_shown, sizes)
        for ax in axes:
            F.log_x_axis(ax, cells[axis], label)
            ax.xaxis.set_major_formatter(F.plain_formatter())
        F.legend_outside(fig, axes)
        s.figures.append(F.save(
            fig, ctx.out_dir, f"loss_vs_{axis}", f"Loss against {label}",
            f"One panel per token budget; each point is the best run at that {label} (over the other axes).",
        ))
    notes: list[str] = []
    if numbers.trends:
        with part(notes, TREND_FIGURE):
            _draw_optimal_trends(ctx, s, numbers.best, numbers.trends)
    return notes


def _draw_optimal_trends(ctx: Context, s: Section, best: pd.DataFrame, trends: tuple[OptimalTrend, ...]) -> None:
    colors = budget_colors(best["unique_tokens"])
    budgets = sorted(colors)
    fig, axes = F.new_figure(len(trends), width=4.6 * len(trends) + 1.6, height=3.6)
    xs = F.dense_log(best["params"].min(), best["params"].max())
    for ax, trend in zip(axes, trends):
        h, label = trend.hparam, TREND_AXES[trend.hparam]
        for d, rows in best.groupby("unique_tokens"):
            nudge = 1 + 0.04 * (budgets.index(d) - (len(budgets) - 1) / 2)  # coinciding grid values stay visible
            ax.plot(rows["params"], rows[h] * nudge, "o", color=colors[d], label=budget_label(d))
            if d in trend.law.index:
                r = trend.law.loc[d]  # h* = k N^gamma, drawn as A / N^B + C with A = k, B = -gamma, C = 0
                F.fit_line(ax, xs, power_law(xs, float(r["coefficient"]), -float(r["exponent"]), 0.0), colors[d])
        F.log_x_axis(ax, best["params"], "parameters N")
        ax.set_yscale("log")
        ax.set_yticks(trend.grid)
        ax.yaxis.set_major_formatter(F.plain_formatter())
        ax.yaxis.set_minor_formatter(F.NullFormatter())
        ax.set_ylim(trend.grid[0] / 1.4, trend.grid[-1] * 1.4)
        ax.set_ylabel(f"{label} (grid values)")
        ax.set_title(f"{label.capitalize()} against parameters")
    F.legend_outside(fig, axes[:1], extra=F.style_keys(fit=r"fit $k N^{\gamma}$", asymptote=None))
    s.figures.append(F.save(
        fig, ctx.out_dir, "optimal_hyperparameters", "Optimal weight decay and epochs against parameters",
        "The weight decay and epoch count of each size's best run per token budget (points nudged apart "
        "vertically where budgets agree); dashed: the fitted k N^γ.",
    ))


def write_hyperparameters(ctx: Context, s: Section, numbers: HyperparameterNumbers, figure_notes: list[str]) -> None:
    s.notes.extend([*numbers.notes, *figure_notes])
    found = numbers.local_optimality
    if found is not None:
        s.fits["local_optimality"] = records(found.certificates)
        s.fits["local_optimality_neighbours"] = records(found.neighbours)
        s.tables.append(_local_optimality_table(found))
        n_cert = int(found.at_chosen["certified"].sum())
        s.headline.append(f"Locally optimal: {n_cert} of {len(found.at_chosen)} chosen (size, budget) points certified")
    if numbers.weight_decay_law is not None:
        s.fits["optimal_weight_decay_scaling"] = records(numbers.weight_decay_law)
        s.tables.append(hparam_law_table(numbers.weight_decay_law, "weight_decay", ctx))


def _local_optimality_table(found: LocalOptimality) -> Table:
    rows = []
    for _, c in found.at_chosen.sort_values(["unique_tokens", "params"]).iterrows():
        verdict = "certified" if c["certified"] else ("better neighbour" if c["better"] else "incomplete")
        rows.append([
            size_label(c["params"]), budget_label(c["unique_tokens"]), fmt(c["epochs"]),
            f"{c['lr']:g}", f"{c['weight_decay']:g}", fmt(c["loss"]), verdict,
            _neighbours_run(found.neighbours, c) or "none", ", ".join(c["better"]) or "-", ", ".join(c["missing"]) or "-",
        ])
    fixed = [AXIS_SHORT.get(a, a) for a in found.fixed]
    return Table(
        "Locally-optimal hyper-parameters per size",
        ["size", "token budget", "epochs", "lr", "weight decay", "loss", "certificate",
         "neighbours run", "better", "not run"],
        rows,
        note="A point is certified when every neighbour one grid step away along "
             + ", ".join(AXIS_NAMES[a] for a in found.axes) + " (the others held fixed) was run and none is better "
             "(the paper's check)." + (f" Not checked, the grid has one value: {', '.join(fixed)}." if fixed else ""),
    )


def _neighbours_run(neighbours: pd.DataFrame, cert: pd.Series) -> str:
    """The neighbours of a certificate's point that were run, per axis: 'wd 0.4/1.6; lr 0.001'."""
    mine = neighbours[(neighbours["model"] == cert["model"]) & (neighbours["unique_tokens"] == cert["unique_tokens"])]
    checked = []
    for axis, rows_a in mine.groupby("axis", sort=False):
        ran = [f"{v:g}" for v, st in zip(rows_a["neighbour_value"], rows_a["status"]) if st in ("no_worse", "better")]
        if ran:
            checked.append(f"{AXIS_SHORT.get(axis, axis)} {'/'.join(ran)}")
    return "; ".join(checked)

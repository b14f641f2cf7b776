"""Section 3: loss against epochs per (size, token budget): where repeating the data stops helping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalegrid.report import figures as F
from scalegrid.report.document import Section, fmt
from scalegrid.report.sections.common import (
    Context,
    NoRows,
    hparam_law_table,
    loss_panels,
    lowest_loss_per,
    panel_budgets,
    part,
    records,
    size_by_budget_table,
    size_colors,
    train_rows,
)
from scalegrid.report.sections.shared_fits import best_train, hparam_law


@dataclass(frozen=True)
class EpochsNumbers:
    best: pd.DataFrame  # best_runs: the best run per (model, token budget)
    cells: pd.DataFrame  # the lowest loss per (size, budget, epochs)
    first_epochs: float  # the smallest epoch count tried
    loss_at_first_epochs: pd.Series  # the lowest loss there, per (size, budget)
    sizes: tuple  # every model size trained
    budgets_shown: tuple  # the token budgets with a panel
    law: pd.DataFrame | None  # optimal_hparam_scaling(hparam="epochs"); None: not fitted (see notes)
    notes: tuple[str, ...]


def section_epochs(ctx: Context, s: Section) -> None:
    numbers = epochs_numbers(ctx)
    draw_epochs(ctx, s, numbers)
    write_epochs(ctx, s, numbers)


def epochs_numbers(ctx: Context) -> EpochsNumbers:
    rows = train_rows(ctx)
    if rows.empty:
        raise NoRows("no COMPLETED training runs yet")
    if rows["epochs"].nunique() < 2:
        raise NoRows(f"every run has {rows['epochs'].iloc[0]} epochs; the grid needs two or more epoch counts")
    best = best_train(ctx)
    notes = []
    budgets, note = panel_budgets(rows["unique_tokens"])
    if note:
        notes.append(f"Figure: {note}.")
    cells = lowest_loss_per(rows, "epochs")
    first_k = cells["epochs"].min()
    law = None
    with part(notes, "Optimal epochs against parameters"):
        law = hparam_law(ctx, "epochs")
    return EpochsNumbers(
        best=best, cells=cells, first_epochs=first_k,
        loss_at_first_epochs=cells[cells["epochs"] == first_k].set_index(["params", "unique_tokens"])["val_loss"],
        sizes=tuple(sorted(set(rows["params"]))), budgets_shown=tuple(budgets), law=law, notes=tuple(notes),
    )


def draw_epochs(ctx: Context, s: Section, numbers: EpochsNumbers) -> None:
    """One panel per token budget: loss against epochs per size, the size's best run starred."""
    from matplotlib.lines import Line2D

    best, cells = numbers.best, numbers.cells
    sizes = size_colors(numbers.sizes)

    def star_best_run(ax, n: float, d: float) -> None:
        at = best[(best["params"] == n) & (best["unique_tokens"] == d)]
        if len(at):
            ax.plot(at["epochs"], at["val_loss"], marker="*", markersize=12, color=sizes[n],
                    markeredgecolor="black", markeredgewidth=0.6, linestyle="none", zorder=4)

    fig, axes = loss_panels(ctx, cells, "epochs", numbers.budgets_shown, sizes, mark=star_best_run)
    for ax in axes:
        F.log2_x_axis(ax, cells["epochs"], "epochs over the unique tokens")
    star = Line2D([], [], marker="*", markersize=10, color="#888888", markeredgecolor="black",
                  markeredgewidth=0.6, linestyle="none", label="best run of the size")
    F.legend_outside(fig, axes, extra=[star])
    s.figures.append(F.save(
        fig, ctx.out_dir, "epochs", "Loss against epochs",
        "One panel per token budget; each line is one model size, each point the best run at that epoch "
        "count (over learning rate and weight decay). The star marks the size's best run: beyond it, "
        "repeating the data stops helping.",
    ))


def write_epochs(ctx: Context, s: Section, numbers: EpochsNumbers) -> None:
    best = numbers.best

    def best_epochs(n: float, d: float, run: pd.Series) -> str:
        gain = numbers.loss_at_first_epochs.get((n, d), np.nan) - float(run["val_loss"])
        return f"{fmt(run['epochs'])} ep ({fmt(-gain, 3) if np.isfinite(gain) else 'n/a'})"

    s.notes.extend(numbers.notes)
    s.tables.append(size_by_budget_table(
        best, "Where repetition stops helping: best epochs per size and token budget", best_epochs,
        note=f"Each cell: the epoch count of the best run (best_runs) and, in brackets, its loss minus the best loss "
             f"at {fmt(numbers.first_epochs)} epoch(s). A best at the largest epoch count tried means more epochs "
             "might still help.",
    ))
    s.fits["best_epochs"] = records(best[[c for c in ("model", "params", "unique_tokens", "epochs", "val_loss") if c in best]])
    if numbers.law is not None:
        s.fits["optimal_epochs_scaling"] = records(numbers.law)
        s.tables.append(hparam_law_table(numbers.law, "epochs", ctx))

"""Section 3: loss against epochs per (size, token budget): where repeating the data stops helping."""

from __future__ import annotations

import numpy as np

from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt
from scalegrid.report.sections.common import (
    NoRows,
    Context,
    part,
    size_label,
    budget_label,
    loss_label,
    records,
    train_rows,
    size_colors,
    panel_budgets,
    hparam_law_table,
)
from scalegrid.report.sections.shared_fits import best_train, hparam_law


def section_epochs(ctx: Context, s: Section) -> None:
    rows = train_rows(ctx)
    if rows.empty:
        raise NoRows("no COMPLETED training runs yet")
    if rows["epochs"].nunique() < 2:
        raise NoRows(f"every run has {rows['epochs'].iloc[0]} epochs; the grid needs two or more epoch counts")
    best = best_train(ctx)
    budgets, note = panel_budgets(rows["unique_tokens"])
    if note:
        s.notes.append(f"Figure: {note}.")
    sizes = size_colors(rows["params"])
    # measured points: the lowest loss per (size, budget, epochs) over lr, weight decay and seed
    cells = rows.groupby(["params", "unique_tokens", "epochs"], sort=True)["val_loss"].min().reset_index()
    fig, axes = F.new_panels(len(budgets))
    for ax, d in zip(axes, budgets):
        for n, line in cells[cells["unique_tokens"] == d].groupby("params"):
            ax.plot(line["epochs"], line["val_loss"], "o-", color=sizes[n], label=size_label(n), markersize=4)
            at = best[(best["params"] == n) & (best["unique_tokens"] == d)]
            if len(at):
                ax.plot(at["epochs"], at["val_loss"], marker="*", markersize=12, color=sizes[n],
                        markeredgecolor="black", markeredgewidth=0.6, linestyle="none", zorder=4)
        F.log2_x_axis(ax, cells["epochs"], "epochs over the unique tokens")
        ax.set_ylabel(loss_label(ctx))
        ax.set_title(budget_label(d))
    from matplotlib.lines import Line2D

    star = Line2D([], [], marker="*", markersize=10, color="#888888", markeredgecolor="black",
                  markeredgewidth=0.6, linestyle="none", label="best run of the size")
    F.legend_outside(fig, axes, extra=[star])
    s.figures.append(F.save(
        fig, ctx.out_dir, "epochs", "Loss against epochs",
        "One panel per token budget; each line is one model size, each point the best run at that epoch "
        "count (over learning rate and weight decay). The star marks the size's best run: beyond it, "
        "repeating the data stops helping.",
    ))

    first_k = cells["epochs"].min()
    one_epoch = cells[cells["epochs"] == first_k].set_index(["params", "unique_tokens"])["val_loss"]
    budgets_all = sorted(best["unique_tokens"].unique())
    table_rows = []
    for n, rows_n in best.groupby("params", sort=True):
        at = rows_n.set_index("unique_tokens")
        row = [size_label(n)]
        for d in budgets_all:
            if d not in at.index:
                row.append("-")
                continue
            b = at.loc[d]
            gain = one_epoch.get((n, d), np.nan) - float(b["val_loss"])
            row.append(f"{fmt(b['epochs'])} ep ({fmt(-gain, 3) if np.isfinite(gain) else 'n/a'})")
        table_rows.append(row)
    s.tables.append(Table(
        "Where repetition stops helping: best epochs per size and token budget",
        ["size"] + [budget_label(d) for d in budgets_all], table_rows,
        note=f"Each cell: the epoch count of the best run (best_runs) and, in brackets, its loss minus the best loss "
             f"at {fmt(first_k)} epoch(s). A best at the largest epoch count tried means more epochs might still help.",
    ))
    s.fits["best_epochs"] = records(best[[c for c in ("model", "params", "unique_tokens", "epochs", "val_loss") if c in best]])
    with part(s, "Optimal epochs against parameters"):
        law = hparam_law(ctx, "epochs")
        s.fits["optimal_epochs_scaling"] = records(law)
        s.tables.append(hparam_law_table(law, "epochs", ctx))

"""Section 2: loss against parameters per token budget, L(N) = A / N^B + C and its asymptote."""

from __future__ import annotations

import pandas as pd

from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt, fmt_ci
from scalegrid.report.sections.common import (
    MIN_POINTS,
    NoRows,
    Context,
    size_label,
    budget_label,
    loss_label,
    records,
    ci_of,
    train_rows,
    eval_power_law,
    budget_colors,
    ci_note,
)
from scalegrid.report.sections.shared_fits import best_train, param_fits


def section_params(ctx: Context, s: Section) -> None:
    if train_rows(ctx).empty:
        raise NoRows("no COMPLETED training runs yet")
    best = best_train(ctx)
    s.fits["best_runs"] = records(best[_best_columns(best)])
    if best["params"].nunique() < 2:
        raise NoRows(f"every run has one model size ({F.human(best['params'].iloc[0])} parameters)")
    try:
        fits, dropped = param_fits(ctx)
    except NoRows as err:  # the measured points are still worth a figure
        fits, dropped = pd.DataFrame(columns=["unique_tokens", "A", "B", "C"]), []
        s.notes.append(f"Power laws not fitted: {err}.")
    s.fits["power_laws"] = records(fits)
    if dropped:
        s.notes.append(f"Not fitted: {'; '.join(dropped)}.")

    colors = budget_colors(best["unique_tokens"])
    fig, (ax,) = F.new_figure(width=7.2, height=4.4)
    lo, hi = best["params"].min(), best["params"].max()
    xs = F.dense_log(lo / 1.3, hi, extend=4.0)
    fitted = fits.set_index("unique_tokens") if len(fits) else pd.DataFrame()
    for d, rows in best.groupby("unique_tokens"):
        c = colors[d]
        rows = rows.sort_values("params")
        if d in fitted.index:
            ax.plot(rows["params"], rows["val_loss"], "o", color=c, label=budget_label(d), zorder=3)
            row = fitted.loc[d]
            F.fit_line(ax, xs, eval_power_law(xs, row), c)
            F.asymptote(ax, float(row["C"]), c, annotate=f"{float(row['C']):.3f}")
        else:  # no law for this budget: the measured points, joined
            ax.plot(rows["params"], rows["val_loss"], "o-", color=c, label=budget_label(d), zorder=3, linewidth=1.0)
    hidden = F.focus_ylim(ax, best["val_loss"], fits["C"] if len(fits) else [])
    if hidden:
        s.notes.append(f"Figure: {len(hidden)} asymptote(s) far below the measured losses are off the axis; see the table.")
    F.log_x_axis(ax, best["params"] if not len(fits) else None, "parameters N")
    ax.set_ylabel(loss_label(ctx))
    if len(fits):
        ax.set_title(r"Best run per size and token budget, with $L(N) = A/N^{B} + C$")
        keys = F.style_keys(fit=r"fit $A/N^{B} + C$", asymptote=r"asymptote $C$ ($N \to \infty$)")
        caption = ("Each point is the best run (over epochs, learning rate and weight decay) of one model size at "
                   "one token budget; dashed: the power law fitted per budget; dotted: its asymptote, the loss at "
                   "infinite parameters, with its value at the right.")
    else:
        ax.set_title("Best run per size and token budget")
        keys = []
        caption = ("Each point is the best run (over epochs, learning rate and weight decay) of one model size at "
                   f"one token budget. No power law: that needs {MIN_POINTS} or more sizes per budget.")
    F.legend_below(fig, ax, extra=keys, ncols=3)
    s.figures.append(F.save(fig, ctx.out_dir, "params_scaling", "Loss against parameters", caption))

    table_rows = []
    for _, row in fits.iterrows():
        table_rows.append([
            budget_label(row["unique_tokens"]), fmt_ci(row["C"], ci_of(row, "C")),
            fmt_ci(row["B"], ci_of(row, "B"), 3), fmt_ci(row["A"], ci_of(row, "A"), 3),
            fmt(row["n_points"]), fmt(bool(row["converged"])),
        ])
    if table_rows:
        s.tables.append(Table(
            "Power law in parameters per token budget",
            ["token budget", "asymptote C", "exponent B", "coefficient A", "sizes", "converged"],
            table_rows, note=ci_note(ctx),
        ))
    budgets_all = sorted(best["unique_tokens"].unique())
    grid_rows = []
    for n, rows_n in best.groupby("params", sort=True):
        at = rows_n.set_index("unique_tokens")
        grid_rows.append([size_label(n)] + [
            f"{fmt(at.loc[d, 'val_loss'])} ({fmt(at.loc[d, 'epochs'])} ep, wd {at.loc[d, 'weight_decay']:g}, "
            f"lr {at.loc[d, 'lr']:g})" if d in at.index else "-" for d in budgets_all
        ])
    s.tables.append(Table(
        "Best run per size and token budget", ["size"] + [budget_label(d) for d in budgets_all], grid_rows,
        note="Loss of the best run (best_runs) and its epochs, weight decay and learning rate.",
    ))
    if len(fits):
        first = fits.sort_values("unique_tokens").iloc[0]
        s.headline.append(
            f"Single-model asymptote at {budget_label(first['unique_tokens'])}: "
            f"{fmt_ci(first['C'], ci_of(first, 'C'))} (loss as parameters → ∞)"
        )
    s.paragraphs.append(
        "For each token budget the best run of each model size is taken over every other axis of the grid, "
        "and L(N) = A / N^B + C is fitted to those points (Huber loss on log residuals). The asymptote C "
        "is the best loss this recipe can reach with this much unique data, whatever the size."
    )


def _best_columns(best: pd.DataFrame) -> list[str]:
    wanted = ["model", "params", "unique_tokens", "epochs", "lr", "weight_decay", "seed", "val_loss", "trial_id"]
    return [c for c in wanted if c in best.columns]

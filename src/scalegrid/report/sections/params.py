"""Section 2: loss against parameters per token budget, L(N) = A / N^B + C and its asymptote."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt, fmt_ci
from scalegrid.report.sections.common import (
    MIN_POINTS,
    Context,
    NoRows,
    budget_colors,
    budget_label,
    ci_note,
    ci_of,
    eval_power_law,
    loss_label,
    records,
    size_by_budget_table,
    train_rows,
)
from scalegrid.report.sections.shared_fits import best_train, param_fits

BEST_COLUMNS = ("model", "params", "unique_tokens", "epochs", "lr", "weight_decay", "seed", "val_loss", "trial_id")


@dataclass(frozen=True)
class ParamsNumbers:
    best: pd.DataFrame  # best_runs: the best run per (model, token budget)
    laws: pd.DataFrame  # param_scaling per token budget; no rows when none could be fitted
    notes: tuple[str, ...]  # which laws are missing and why


def section_params(ctx: Context, s: Section) -> None:
    numbers = params_numbers(ctx)
    figure_notes = draw_params(ctx, s, numbers)
    write_params(ctx, s, numbers, figure_notes)


def params_numbers(ctx: Context) -> ParamsNumbers:
    if train_rows(ctx).empty:
        raise NoRows("no COMPLETED training runs yet")
    best = best_train(ctx)
    if best["params"].nunique() < 2:
        raise NoRows(f"every run has one model size ({F.human(best['params'].iloc[0])} parameters)",
                     fits={"best_runs": _best_run_records(best)})
    notes = []
    try:
        laws, dropped = param_fits(ctx)
    except NoRows as err:  # the measured points are still worth a figure
        laws, dropped = pd.DataFrame(columns=["unique_tokens", "A", "B", "C"]), []
        notes.append(f"Power laws not fitted: {err}.")
    if dropped:
        notes.append(f"Not fitted: {'; '.join(dropped)}.")
    return ParamsNumbers(best=best, laws=laws, notes=tuple(notes))


def _best_run_records(best: pd.DataFrame) -> list[dict]:
    return records(best[[c for c in BEST_COLUMNS if c in best.columns]])


def draw_params(ctx: Context, s: Section, numbers: ParamsNumbers) -> list[str]:
    """The best runs against size per budget, with each budget's law; returns the figure's notes."""
    best, laws = numbers.best, numbers.laws
    colors = budget_colors(best["unique_tokens"])
    fig, (ax,) = F.new_figure(width=7.2, height=4.4)
    lo, hi = best["params"].min(), best["params"].max()
    xs = F.dense_log(lo / 1.3, hi, extend=4.0)
    fitted = laws.set_index("unique_tokens") if len(laws) else pd.DataFrame()
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
    hidden = F.focus_ylim(ax, best["val_loss"], laws["C"] if len(laws) else [])
    F.log_x_axis(ax, best["params"] if not len(laws) else None, "parameters N")
    ax.set_ylabel(loss_label(ctx))
    if len(laws):
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
    if hidden:
        return [f"Figure: {len(hidden)} asymptote(s) far below the measured losses are off the axis; see the table."]
    return []


def write_params(ctx: Context, s: Section, numbers: ParamsNumbers, figure_notes: list[str]) -> None:
    best, laws = numbers.best, numbers.laws
    s.fits["best_runs"] = _best_run_records(best)
    s.fits["power_laws"] = records(laws)
    s.notes.extend([*numbers.notes, *figure_notes])
    if len(laws):
        s.tables.append(Table(
            "Power law in parameters per token budget",
            ["token budget", "asymptote C", "exponent B", "coefficient A", "sizes", "converged"],
            [[budget_label(row["unique_tokens"]), fmt_ci(row["C"], ci_of(row, "C")),
              fmt_ci(row["B"], ci_of(row, "B"), 3), fmt_ci(row["A"], ci_of(row, "A"), 3),
              fmt(row["n_points"]), fmt(bool(row["converged"]))] for _, row in laws.iterrows()],
            note=ci_note(ctx),
        ))
    s.tables.append(size_by_budget_table(
        best, "Best run per size and token budget",
        lambda n, d, run: f"{fmt(run['val_loss'])} ({fmt(run['epochs'])} ep, wd {run['weight_decay']:g}, lr {run['lr']:g})",
        note="Loss of the best run (best_runs) and its epochs, weight decay and learning rate.",
    ))
    if len(laws):
        first = laws.sort_values("unique_tokens").iloc[0]
        s.headline.append(
            f"Single-model asymptote at {budget_label(first['unique_tokens'])}: "
            f"{fmt_ci(first['C'], ci_of(first, 'C'))} (loss as parameters → ∞)"
        )
    s.paragraphs.append(
        "For each token budget the best run of each model size is taken over every other axis of the grid, "
        "and L(N) = A / N^B + C is fitted to those points (Huber loss on log residuals). The asymptote C "
        "is the best loss this recipe can reach with this much unique data, whatever the size."
    )

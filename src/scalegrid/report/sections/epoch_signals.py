"""Section 3b: epochs decided while training (seeds/000): what repetition does to the gradients epoch
by epoch, what the models memorise, and where each adaptive run stopped against the fixed grid.

Three parts, each shown where the store has its inputs (a part without them is a note):

    diagnostics    per size and token budget, v_e, c_e, the gradient SNR and the validation curve's
                   curvature against epochs (`train.diagnostics: true`), one fixed run each
    memorisation   memorised_train against memorised_val per epoch count (`train.memorisation_samples`)
    adaptive       each adaptive run (`epochs: {max, stop}`) against the fixed epoch counts of its
                   point: where it stopped, the tokens it saved, the loss it lost
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalegrid.analysis.epochs import LOSS_TOLERANCE, TOKEN_SHARE, adaptive_against_fixed, epoch_diagnostics, memorisation_by_epochs
from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt
from scalegrid.report.sections.common import Context, NoRows, budget_label, part, records, size_colors, size_label

PANELS = (  # column, y label, log y
    ("grad_norm", "v_e: mean probe gradient norm", True),
    ("grad_cosine", "c_e: cosine with the previous epoch's", False),
    ("grad_snr", "gradient SNR of one batch", True),
    ("val_curvature", "curvature of the validation curve", False),
)
BUDGET_STYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class EpochSignals:
    diagnostics: pd.DataFrame | None  # epoch_diagnostics(); None: not measured (see notes)
    memorisation: pd.DataFrame | None  # memorisation_by_epochs()
    adaptive: pd.DataFrame | None  # adaptive_against_fixed()
    notes: tuple[str, ...] = field(default=())


def section_epoch_signals(ctx: Context, s: Section) -> None:
    numbers = epoch_signals_numbers(ctx)
    draw_epoch_signals(ctx, s, numbers)
    write_epoch_signals(s, numbers)


def epoch_signals_numbers(ctx: Context) -> EpochSignals:
    runs, notes = ctx.inputs.all_runs, []
    if ctx.inputs.stage("train").empty:
        raise NoRows("no COMPLETED training runs yet")
    found: dict[str, pd.DataFrame | None] = {"diagnostics": None, "memorisation": None, "adaptive": None}
    with part(notes, "Per-epoch diagnostics"):
        if "grad_norm" not in ctx.inputs.curves:
            raise NoRows("no run measured them (train.diagnostics: true)")
        found["diagnostics"] = epoch_diagnostics(runs, ctx.inputs.curves)
    with part(notes, "Memorisation"):
        if "memorised_train" not in runs:
            raise NoRows("no run measured it (train.memorisation_samples > 0)")
        found["memorisation"] = memorisation_by_epochs(runs)
    with part(notes, "Adaptive epochs"):
        table = adaptive_against_fixed(runs)
        if table.empty:
            raise NoRows("no adaptive run (epochs: {max: N, stop: {...}}) in the store")
        found["adaptive"] = table
    if all(v is None for v in found.values()):
        raise NoRows("no per-epoch diagnostics, memorisation or adaptive runs in the store", notes=notes)
    return EpochSignals(**found, notes=tuple(notes))


def draw_epoch_signals(ctx: Context, s: Section, numbers: EpochSignals) -> None:
    if numbers.diagnostics is not None:
        draw_diagnostics(ctx, s, numbers.diagnostics)
    if numbers.memorisation is not None:
        draw_memorisation(ctx, s, numbers.memorisation)
    if numbers.adaptive is not None and (numbers.adaptive["fixed_runs"] > 0).any():
        draw_adaptive(ctx, s, numbers.adaptive[numbers.adaptive["fixed_runs"] > 0])


def draw_diagnostics(ctx: Context, s: Section, table: pd.DataFrame) -> None:
    """One panel per statistic against epochs: a colour per size, a line style per token budget;
    a hollow marker at each curve's best epoch count."""
    sizes = size_colors(table["params"])
    styles = dict(zip(sorted(table["unique_tokens"].unique()), BUDGET_STYLES * 4))
    fig, axes = F.new_panels(len(PANELS), max_cols=2)
    for ax, (column, label, log_y) in zip(axes, PANELS):
        for (n, d), rows in table.groupby(["params", "unique_tokens"], sort=True):
            values = pd.to_numeric(rows[column], errors="coerce")
            ok = np.isfinite(values) & ((values > 0) if log_y else True)
            ax.plot(rows["epoch"][ok], values[ok], styles[d], color=sizes[n], marker="o", markersize=2.5,
                    label=f"{size_label(n)}, {budget_label(d)}")
            at_best = rows[(rows["epoch"] == rows["best_epochs"]) & ok]
            ax.plot(at_best["epoch"], pd.to_numeric(at_best[column]), "o", markersize=7, markerfacecolor="none",
                    color=sizes[n])
        if log_y:
            ax.set_yscale("log")
        if column == "val_curvature":
            ax.axhline(0, color="#999999", linewidth=0.8)
        F.log2_x_axis(ax, table["epoch"], "epoch")
        ax.set_ylabel(label, fontsize=8.5)
    F.legend_outside(fig, axes)
    s.figures.append(F.save(
        fig, ctx.out_dir, "epoch_diagnostics", "Gradient statistics against epochs",
        "Per size (colour) and token budget (line style), the epoch-end statistics of the fixed run with "
        "the most epochs at the point of the best run: the norm of the mean probe gradient v_e, its cosine "
        "with the previous epoch's c_e, the SNR of one batch's gradient and the second difference of the "
        "validation losses (negative where the curve turns up). A ring marks the best run's epoch count.",
    ))


def draw_memorisation(ctx: Context, s: Section, table: pd.DataFrame) -> None:
    """memorised_train (solid) and memorised_val (dashed) against epochs, one panel per budget."""
    sizes = size_colors(table["params"])
    budgets = sorted(table["unique_tokens"].unique())
    fig, axes = F.new_panels(len(budgets))
    for ax, d in zip(axes, budgets):
        for n, rows in table[table["unique_tokens"] == d].groupby("params", sort=True):
            ax.plot(rows["epochs"], rows["memorised_train"], "o-", color=sizes[n], markersize=4, label=size_label(n))
            ax.plot(rows["epochs"], rows["memorised_val"], "s--", color=sizes[n], markersize=3.5)
        F.log2_x_axis(ax, table["epochs"], "epochs")
        ax.set_ylabel("generated n-grams found in the training data")
        ax.set_title(budget_label(d))
    F.legend_outside(fig, axes)
    s.figures.append(F.save(
        fig, ctx.out_dir, "memorisation", "Memorisation against epochs",
        "The share of the n-grams a model generates that occur in its training data, after prompts from "
        "training sequences (solid) and from validation sequences (dashed), for the best run at each epoch "
        "count. The gap between them is what the model recalls from the training data beyond what it "
        "produces for text it has not seen.",
    ))


RULE_MARKERS = {"val_curve": "D", "grad_stats": "^"}


def draw_adaptive(ctx: Context, s: Section, table: pd.DataFrame) -> None:
    """Per point with adaptive runs: the fixed runs' loss against epochs, and each adaptive run at
    the epochs its tokens make (stable phase and decay), marked by rule."""
    points = list(table.groupby(["params", "unique_tokens", "lr", "weight_decay", "seed"], sort=True))
    fig, axes = F.new_panels(len(points))
    for ax, ((n, d, lr, wd, seed), rows) in zip(axes, points):
        first = rows.iloc[0]
        ax.plot(first["fixed_epochs"], first["fixed_losses"], "o-", color="#555555", markersize=4, label="fixed epochs")
        for _, r in rows.iterrows():
            label = f"{r['rule']}" + (f", patience {r['patience']}" if r["patience"] else "")
            ax.plot(r["tokens_seen"] / d, r["val_loss"], RULE_MARKERS.get(r["rule"], "s"), markersize=8, label=label)
        F.log2_x_axis(ax, first["fixed_epochs"], "epochs (an adaptive run: its tokens / unique tokens)")
        ax.set_ylabel("validation loss")
        ax.set_title(f"{size_label(n)}, {budget_label(d)}\nlr {fmt(lr, 3)}, wd {fmt(wd, 3)}, seed {seed}", fontsize=9)
    F.legend_outside(fig, axes)
    s.figures.append(F.save(
        fig, ctx.out_dir, "adaptive_epochs", "Adaptive epochs against the fixed grid",
        "Each panel: one point's fixed epoch counts (grey) and its adaptive runs, placed at the epochs their "
        "tokens make (the stable phase up to the stop plus the decay).",
    ))


def write_epoch_signals(s: Section, numbers: EpochSignals) -> None:
    s.notes.extend(numbers.notes)
    if numbers.diagnostics is not None:
        s.fits["epoch_diagnostics"] = records(numbers.diagnostics.drop(columns=["trial_id"], errors="ignore"))
    if numbers.memorisation is not None:
        s.fits["memorisation"] = records(numbers.memorisation)
    if numbers.adaptive is not None:
        write_adaptive(s, numbers.adaptive)


def write_adaptive(s: Section, table: pd.DataFrame) -> None:
    """The adaptive runs against the fixed grid: a table and a headline of how many met the goal."""
    s.fits["adaptive_against_fixed"] = records(table)

    def stopped(r: pd.Series) -> str:
        return f"after {fmt(int(r['stopped_epoch']))}" if np.isfinite(r["stopped_epoch"]) else f"never ({fmt(r['max_epochs'])})"

    rows = [
        [f"{size_label(r['params'])}, {budget_label(r['unique_tokens'])}", f"{r['rule']} γ {fmt(r['gamma'], 3)}"
         + (f", patience {r['patience']}" if r["patience"] else ""), stopped(r),
         f"{fmt(r['best_epochs'])} ({fmt(r['best_loss'])})", fmt(r["val_loss"]),
         _percent(r["loss_lost"], signed=True), _percent(r["token_share"]), _percent(1 - r["token_share"]),
         fmt(r["meets_goal"])]
        for _, r in table.iterrows()
    ]
    s.tables.append(Table(
        "Adaptive epochs against the fixed grid",
        ["size, budget", "rule", "stopped", "best fixed epochs (loss)", "adaptive loss", "loss lost",
         "tokens / longest fixed", "tokens saved", "goal met"],
        rows,
        note=f"Each adaptive run against the fixed runs of its point (the same size, budget, lr, weight decay, seed and "
             f"schedule). Loss lost: its loss over the best fixed epoch count's, minus 1. Tokens: its tokens over the "
             f"longest fixed run's. The goal: within {LOSS_TOLERANCE:.0%} of the best fixed loss on at most "
             f"{TOKEN_SHARE:.0%} of the longest fixed run's tokens.",
    ))
    compared = table[table["fixed_runs"] > 0]
    if len(compared):
        met = int(compared["meets_goal"].sum())
        s.headline.append(f"Adaptive epochs: {met} of {len(compared)} adaptive runs stopped within {LOSS_TOLERANCE:.0%} of the "
                          f"best fixed epoch count's loss on at most {TOKEN_SHARE:.0%} of the longest fixed run's tokens")


def _percent(value: float, *, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value * 100:+.1f}%" if signed else f"{value * 100:.0f}%"

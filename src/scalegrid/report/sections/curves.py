"""Section 9: the learning curves of a few chosen trials (best per token budget, the worst,
the most repeated, and failed or diverged ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt
from scalegrid.report.inputs import COMPLETED, DIVERGED, FAILED
from scalegrid.report.sections.common import Context, NoRows, budget_label, loss_label, size_label

MAX_CURVES = 8


@dataclass(frozen=True)
class CurvesNumbers:
    chosen: tuple[str, ...]  # the trials shown, in order
    curves: pd.DataFrame  # their curves, by trial and step
    runs: pd.DataFrame  # every run, indexed by trial_id (labels and the table)
    x: str  # tokens_seen where the curves have it, else step


def section_curves(ctx: Context, s: Section) -> None:
    numbers = curves_numbers(ctx)
    draw_curves(ctx, s, numbers)
    write_curves(s, numbers)


def curves_numbers(ctx: Context) -> CurvesNumbers:
    curves = ctx.inputs.curves
    if curves.empty:
        raise NoRows("no learning curves in the store (RESULTS/curves)")
    runs = ctx.inputs.runs.drop_duplicates("trial_id").set_index("trial_id")
    have = [t for t in curves["trial_id"].unique() if t in runs.index]
    if not have:
        raise NoRows("the stored curves belong to no run in the store")
    chosen = choose_curves(have, runs)
    picked = curves[curves["trial_id"].isin(chosen)].sort_values(["trial_id", "step"])
    x = "tokens_seen" if picked["tokens_seen"].notna().any() and (picked["tokens_seen"] > 0).any() else "step"
    return CurvesNumbers(chosen=tuple(chosen), curves=picked, runs=runs, x=x)


def draw_curves(ctx: Context, s: Section, numbers: CurvesNumbers) -> None:
    """Validation and training loss of each chosen trial against tokens seen (or steps)."""
    chosen, picked, x = numbers.chosen, numbers.curves, numbers.x
    colors = dict(zip(chosen, F.colors(len(chosen), "tab10" if len(chosen) <= 10 else "viridis")))
    fig, axes = F.new_figure(2, width=11.5, height=4.2)
    for tid in chosen:
        line = picked[picked["trial_id"] == tid]
        label = trial_label(numbers.runs.loc[tid])
        valid = line[line[x] > 0] if x == "tokens_seen" else line
        marker = "o" if len(valid) < 4 else None  # a curve of one or two evaluations is still seen
        axes[0].plot(valid[x], valid["val_loss"], color=colors[tid], label=label, marker=marker, markersize=4)
        axes[1].plot(valid[x], valid["train_loss"], color=colors[tid], label=label, alpha=0.9, marker=marker, markersize=4)
    for ax, what in zip(axes, ("validation loss", "training loss")):
        if x == "tokens_seen":
            F.log_x_axis(ax, None, "tokens seen")
        else:
            ax.set_xlabel("step")
        ax.set_ylabel(loss_label(ctx, what))
    axes[0].set_title("Validation loss during training")
    axes[1].set_title("Training loss during training")
    _clip_y(axes, picked)
    F.legend_outside(fig, axes[:1])
    s.figures.append(F.save(
        fig, ctx.out_dir, "curves", "Learning curves",
        "The learning curves of the chosen trials: the best run of each token budget, and for contrast the "
        "worst run and the run with the most epochs (of the runs with stored curves).",
    ))


def write_curves(s: Section, numbers: CurvesNumbers) -> None:
    runs = numbers.runs
    s.fits["trials"] = list(numbers.chosen)
    s.tables.append(Table(
        "Trials shown", ["trial", "size", "token budget", "epochs", "lr", "weight decay", "status", "final val loss"],
        [[tid[:12], size_label(runs.loc[tid, "params"]), budget_label(runs.loc[tid, "unique_tokens"]),
          fmt(runs.loc[tid, "epochs"]), f"{runs.loc[tid, 'lr']:g}", f"{runs.loc[tid, 'weight_decay']:g}",
          str(runs.loc[tid, "status"]), fmt(runs.loc[tid, "val_loss"])] for tid in numbers.chosen],
    ))


def choose_curves(have: list[str], runs: pd.DataFrame) -> list[str]:
    """Up to MAX_CURVES trials with curves: per token budget the best, then the worst overall."""
    with_curves = runs.loc[have].reset_index()
    ok = with_curves[with_curves["status"] == COMPLETED]
    chosen: list[str] = []
    if len(ok):
        for _, rows in ok.groupby("unique_tokens", sort=True):
            chosen.append(rows.sort_values(["val_loss", "trial_id"]).iloc[0]["trial_id"])
        worst = ok.sort_values(["val_loss", "trial_id"]).iloc[-1]["trial_id"]
        most_epochs = ok.sort_values(["epochs", "val_loss", "trial_id"]).iloc[-1]["trial_id"]
        for tid in (worst, most_epochs):  # contrast: the worst run, and the most repeated one
            if tid not in chosen:
                chosen.append(tid)
    for tid in sorted(have):  # failed or diverged runs' curves show what went wrong
        if len(chosen) >= MAX_CURVES:
            break
        if tid not in chosen and runs.loc[tid, "status"] in (FAILED, DIVERGED):
            chosen.append(tid)
    return chosen[:MAX_CURVES]


def trial_label(r: pd.Series) -> str:
    bits = [F.human(r["params"]), f"{F.human(r['unique_tokens'])} tok", f"{r['epochs']} ep"]
    if pd.notna(r.get("weight_decay")):
        bits.append(f"wd {r['weight_decay']:g}")
    if r.get("status") != COMPLETED:
        bits.append(str(r.get("status")))
    return " · ".join(bits)


def _clip_y(axes, picked: pd.DataFrame) -> None:
    """Start-of-training losses dwarf the end; show from the lowest loss to a bit above the finals.
    Losses spanning decades (regression losses going to zero) get a log axis instead."""
    for ax, col in zip(axes, ("val_loss", "train_loss")):
        values = picked[col].to_numpy(float)
        values = values[np.isfinite(values)]
        if values.size and values.min() > 0 and values.max() / values.min() > 30:
            ax.set_yscale("log")
        elif values.size:
            finals = picked.groupby("trial_id")[col].last().to_numpy(float)
            finals = finals[np.isfinite(finals)]
            lo = values.min()
            hi = max(finals.max() if finals.size else lo, lo)
            pad = max(hi - lo, 0.05)
            ax.set_ylim(lo - 0.1 * pad, hi + 1.5 * pad)

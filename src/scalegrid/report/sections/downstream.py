"""Section 10: downstream accuracy (lm-evaluation-harness) of single models, ensembles and students,
against parameters per token budget and against validation loss, and whether the ordering by loss holds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalegrid.analysis.downstream import HOLDS, UNRESOLVED, VIOLATED, Z, downstream_table, loss_ordering
from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt
from scalegrid.report.sections.common import Context, NoRows, budget_colors, budget_label, dodge, loss_label, records

STAGES = (  # stage, label, marker
    ("train", "single model", "o"),
    ("ensemble", "ensemble", "s"),
    ("distill", "distilled student", "D"),
)
WORDS = {
    HOLDS: "holds: every pair of models whose accuracies differ beyond noise is ordered as their validation losses",
    VIOLATED: "is violated: some model with a lower validation loss scores lower beyond noise",
    UNRESOLVED: "is not resolved: no two models' accuracies differ beyond noise",
}


@dataclass(frozen=True)
class DownstreamNumbers:
    table: pd.DataFrame  # downstream_table(): a row per model and task
    ordering: pd.DataFrame  # loss_ordering(): a row per task


def section_downstream(ctx: Context, s: Section) -> None:
    numbers = downstream_numbers(ctx)
    draw_downstream(ctx, s, numbers)
    write_downstream(s, numbers)


def downstream_numbers(ctx: Context) -> DownstreamNumbers:
    evals = ctx.inputs.evals
    if not len(evals):
        raise NoRows("no downstream evaluations (RESULTS/evals/): add an `evaluate:` section to the spec")
    table = downstream_table(evals, ctx.inputs.runs)
    if table.empty:
        raise NoRows("no downstream evaluation has COMPLETED yet")
    return DownstreamNumbers(table=table, ordering=loss_ordering(table))


def draw_downstream(ctx: Context, s: Section, numbers: DownstreamNumbers) -> None:
    """Per task: accuracy against parameters (a colour per token budget, a marker per kind of
    model), and accuracy against validation loss."""
    table = numbers.table
    tasks = list(dict.fromkeys(table["task"]))
    colours = budget_colors(table["unique_tokens"])
    fig, axes = F.new_panels(2 * len(tasks), max_cols=2, panel_width=4.6, panel_height=3.4)
    for i, task in enumerate(tasks):
        rows = table[table["task"] == task]
        by_params, by_loss = axes[2 * i], axes[2 * i + 1]
        for j, (stage, label, marker) in enumerate(STAGES):
            for budget, part in rows[rows["stage"] == stage].groupby("unique_tokens"):
                part = part.sort_values("params")
                kw = dict(yerr=_yerr(part), marker=marker, color=colours[budget], capsize=2, markersize=5)
                by_params.errorbar(part["params"] * dodge(j, len(STAGES)), part["accuracy"], linestyle="-" if stage == "train" else "none",
                                   label=f"{label}, {budget_label(budget)}", **kw)
                by_loss.errorbar(part["val_loss"], part["accuracy"], linestyle="none", **kw)
        F.log_x_axis(by_params, rows["params"], "parameters N")
        metric = ", ".join(sorted(set(rows["metric"])))
        by_params.set_ylabel(f"{task}: {metric}")
        by_params.set_title(f"{task}: accuracy against size")
        by_loss.set_xlabel(loss_label(ctx))
        by_loss.set_ylabel(f"{task}: {metric}")
        by_loss.set_title(f"{task}: accuracy against loss")
    F.legend_below(fig, axes[0], ncols=3)
    s.figures.append(F.save(
        fig, ctx.out_dir, "downstream", "Downstream accuracy",
        "Per task, left: accuracy (lm-evaluation-harness) against parameters per token budget, single models (circles, "
        "joined), ensembles (squares) and distilled students (diamonds) side by side; right: the same models' accuracy "
        f"against their validation loss. Bars: the harness's standard error; ordering claims use {Z} of them.",
    ))


def _yerr(rows: pd.DataFrame):
    stderr = rows["stderr"].astype(float).to_numpy()
    return np.where(np.isfinite(stderr), stderr, 0.0) if np.isfinite(stderr).any() else None


def write_downstream(s: Section, numbers: DownstreamNumbers) -> None:
    table, ordering = numbers.table, numbers.ordering
    s.fits["table"] = records(table)
    s.fits["loss_ordering"] = records(ordering)
    s.tables.append(Table(
        "Downstream accuracy",
        ["task", "model", "kind", "members", "token budget", "params", "validation loss", "metric", "accuracy", "examples", "cut"],
        [[r["task"], r["model"], dict((st, lb) for st, lb, _ in STAGES).get(r["stage"], r["stage"]), fmt(r["members"]),
          budget_label(r["unique_tokens"]), F.human(r["params"]), fmt(r["val_loss"]), r["metric"],
          f"{r['accuracy']:.3f} ± {r['stderr']:.3f}" if np.isfinite(r["stderr"]) else f"{r['accuracy']:.3f}",
          fmt(r["samples"]), fmt(r["truncated"])] for _, r in table.iterrows()],
        note="± one standard error (the harness's); cut: requests whose prompt was cut from the left to fit the model's context.",
    ))
    s.tables.append(Table(
        "Does the ordering by validation loss hold downstream?",
        ["task", "models", "pairs", "beyond noise", "as the losses", "against them", "Kendall's tau", "verdict"],
        [[r["task"], fmt(r["models"]), fmt(r["pairs"]), fmt(r["beyond_noise"]), fmt(r["concordant"]), fmt(r["discordant"]),
          fmt(r["kendall_tau"], 3), r["verdict"]] for _, r in ordering.iterrows()],
        note=f"A pair counts when its accuracies differ by more than {Z} combined standard errors.",
    ))
    for _, r in ordering.iterrows():
        line = f"Downstream ({r['task']}, {r['models']} models): the ordering by validation loss {WORDS[r['verdict']]}"
        s.paragraphs.append(f"{line} (of {r['pairs']} pairs, {r['beyond_noise']} differ beyond noise: {r['concordant']} ordered "
                            f"as their losses, {r['discordant']} against them; Kendall's tau over all pairs {fmt(r['kendall_tau'], 3)}).")
        s.headline.append(f"{line.split(':', 1)[0]}: ordering by loss {r['verdict']} "
                          f"({r['beyond_noise']} of {r['pairs']} pairs differ beyond noise)")

"""Section 7: distilled students against their teacher ensemble and a single model, and the
share of the ensemble's gain each student keeps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalegrid.analysis.recipes import distillation
from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt
from scalegrid.report.sections.common import Context, NoRows, budget_label, loss_label, records

LOSS_SERIES = (  # label, column of the distillation table, colour, marker
    ("single model", "loss_single", "#1f77b4", "o"),
    ("teacher ensemble", "loss_teacher", "#d62728", "s"),
    ("distilled student", "loss_student", "#2ca02c", "D"),
)


@dataclass(frozen=True)
class DistillationNumbers:
    retention: pd.DataFrame  # distillation(): a row per student, in the analysis's order (fits.json)
    by_student: pd.DataFrame  # the same rows by model size and token budget, as shown
    params_of: pd.Series  # model -> parameters


def section_distillation(ctx: Context, s: Section) -> None:
    numbers = distillation_numbers(ctx)
    draw_distillation(ctx, s, numbers)
    write_distillation(s, numbers)


def distillation_numbers(ctx: Context) -> DistillationNumbers:
    if ctx.inputs.stage("distill").empty:
        raise NoRows("no distillation runs (stage `distill`) in the store")
    table = distillation(ctx.inputs.runs)
    if table.empty:
        raise NoRows("distilled students have no matching single-model and ensemble (teacher) runs")
    params_of = ctx.inputs.completed.groupby("model")["params"].first()
    size = table["model"].map(params_of).rename("params")  # smallest model first, not by name
    by_student = table.assign(params=size).sort_values(["params", "model", "unique_tokens"]).drop(columns="params")
    return DistillationNumbers(retention=table, by_student=by_student, params_of=params_of)


def draw_distillation(ctx: Context, s: Section, numbers: DistillationNumbers) -> None:
    """Left: the three losses per token budget; right: each student's retention."""
    table = numbers.by_student
    models = list(table["model"].unique())
    fig, (ax, bars) = F.new_figure(2, width=11.5, height=4.0)
    for label, col, c, marker in LOSS_SERIES:
        for i, (model, rows) in enumerate(table.groupby("model", sort=False)):
            ax.plot(rows["unique_tokens"], rows[col], marker=marker, color=c, linestyle="-" if i == 0 else "-.",
                    label=label if i == 0 else None)
    F.log_x_axis(ax, table["unique_tokens"], "unique tokens D")
    ax.set_ylabel(loss_label(ctx))
    one_model = f" ({models[0]}, {F.human(numbers.params_of.get(models[0], np.nan))} params)" if len(models) == 1 else ""
    ax.set_title("Student against teacher and single model" + one_model)
    ax.legend(loc="upper right")
    bars.bar(range(len(table)), table["retention"] * 100, color="#2ca02c", alpha=0.85)
    bars.set_xticks(range(len(table)))
    bars.set_xticklabels([f"{F.human(d)}" + ("" if len(models) == 1 else f"\n{m}") for m, d in
                          zip(table["model"], table["unique_tokens"])], fontsize=8)
    bars.axhline(100, color="#999999", linewidth=0.8)
    for i, r in enumerate(table["retention"]):
        bars.annotate(f"{r * 100:.0f}%", (i, r * 100), xytext=(0, 2), textcoords="offset points", ha="center",
                      fontsize=8)
    bars.set_xlabel("unique tokens D")
    bars.set_ylabel("retention of the ensemble gain (%)")
    bars.set_title("Retention (L_single − L_student) / (L_single − L_teacher)")
    s.figures.append(F.save(
        fig, ctx.out_dir, "distillation", "Distillation retention",
        "Left: a single model, the ensemble teacher of that size and the student distilled from it, per "
        "token budget. Right: the share of the ensemble's gain over the single model the student keeps.",
    ))


def write_distillation(s: Section, numbers: DistillationNumbers) -> None:
    table = numbers.by_student
    s.fits["retention"] = records(numbers.retention)
    s.tables.append(Table(
        "Distillation retention",
        ["student", "token budget", "teacher members", "single model", "teacher", "student", "retention",
         "student against the single model"],
        [[f"{r['model']}", budget_label(r["unique_tokens"]), fmt(r.get("members")),
          fmt(r["loss_single"]) + (f" ({int(r['single_seeds'])} seeds)" if r["single_seeds"] > 1 else ""),
          fmt(r["loss_teacher"]), fmt(r["loss_student"]), f"{r['retention'] * 100:.1f}%", r["student_vs_single"]]
         for _, r in table.iterrows()],
        note="Single model: the best point's mean over its seeds. The student's gain is a finding only when it is "
             "below the single model beyond the seed noise (2 standard errors of the single model's seed spread).",
    ))
    beyond = table[table["student_vs_single"] == "lower"]
    if len(beyond):
        lo, hi = beyond["retention"].min() * 100, beyond["retention"].max() * 100
        span = f"{lo:.0f}%" if round(lo) == round(hi) else f"{lo:.0f}–{hi:.0f}%"
        s.headline.append(f"Distilled students keep {span} of the ensemble's gain, beyond seed noise "
                          f"({len(beyond)} of {len(table)} student(s))")
    for _, r in table.drop(beyond.index).iterrows():
        s.headline.append(f"Distilled {r['model']} at {budget_label(r['unique_tokens'])}: its difference from a single "
                          f"model is {r['student_vs_single']} (retention {r['retention'] * 100:.0f}% not established)")

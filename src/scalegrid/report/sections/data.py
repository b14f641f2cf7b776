"""Section 6: each recipe's asymptote against unique tokens, its data law L(D) = A / D^B + C,
and the data-efficiency multiplier of each recipe over the single model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from scalegrid.analysis.recipes import best_runs, data_efficiency, data_scaling
from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt, fmt_ci
from scalegrid.report.sections.common import (
    MIN_POINTS,
    NoRows,
    Context,
    part,
    budget_label,
    loss_label,
    records,
    train_rows,
    eval_power_law,
    dodge,
    error_bars,
    ci_note,
)
from scalegrid.report.sections.shared_fits import param_fits, joint_fits


RECIPE_COLORS = {"single model": "#1f77b4", "ensemble (joint asymptote)": "#d62728", "distilled student": "#2ca02c"}


def section_data(ctx: Context, s: Section) -> None:
    if train_rows(ctx).empty and ctx.inputs.completed.empty:
        raise NoRows("no COMPLETED runs yet")
    recipes: dict[str, pd.DataFrame] = {}  # recipe -> frame with unique_tokens, C (, C_lo, C_hi)
    with part(s, "Single-model recipe"):
        fits, _ = param_fits(ctx)
        recipes["single model"] = fits[["unique_tokens", "C"] + [c for c in ("C_lo", "C_hi") if c in fits]]
    if not ctx.inputs.stage("ensemble").empty:
        with part(s, "Ensemble recipe"):
            joint, _ = joint_fits(ctx)
            recipes["ensemble (joint asymptote)"] = joint[["unique_tokens", "C"] + [c for c in ("C_lo", "C_hi") if c in joint]]
    distill = ctx.inputs.stage("distill")
    if not distill.empty:
        with part(s, "Distilled-student recipe"):
            best = best_runs(ctx.inputs.runs, by=("unique_tokens",), stage="distill")
            recipes["distilled student"] = best[["unique_tokens", "val_loss"]].rename(columns={"val_loss": "C"})
            s.notes.append(
                "The distilled student's points are its measured losses at one size (no asymptote in "
                "parameters): its data law says how a student of that size scales with data."
            )
    if not recipes:
        why = "; ".join(n.split(": skipped: ", 1)[-1].rstrip(".") for n in s.notes)
        raise NoRows("no recipe has asymptotes per token budget" + (f" ({why})" if why else ""))

    laws: dict[str, Any] = {}
    s.fits["recipes"] = {}
    for name, frame in recipes.items():
        entry = {"asymptotes": records(frame)}
        s.fits["recipes"][name] = entry
        if frame["unique_tokens"].nunique() < MIN_POINTS:
            s.notes.append(
                f"{name}: data law not fitted: asymptotes at {frame['unique_tokens'].nunique()} token budgets, "
                f"a power law in data needs {MIN_POINTS} or more."
            )
            continue
        with part(s, f"{name}: data law"):
            law = data_scaling(frame, **ctx.fit_kwargs)
            laws[name] = law
            entry["data_law"] = {"law": law.law, **law.to_dict()}

    all_d = pd.concat([f["unique_tokens"] for f in recipes.values()])
    fig, axes = F.new_figure(2, width=11.5, height=4.2)
    ax = axes[0]
    xs = F.dense_log(all_d.min() / 1.5, all_d.max(), extend=8.0)
    for i, (name, frame) in enumerate(recipes.items()):
        c = RECIPE_COLORS.get(name, "#555555")
        ax.errorbar(frame["unique_tokens"] * dodge(i, len(recipes)), frame["C"], yerr=error_bars(frame, "C"), fmt="o",
                    color=c, capsize=2, label=name, zorder=3)
        if name in laws:
            p = laws[name].params
            F.fit_line(ax, xs, eval_power_law(xs, p), c)
            F.asymptote(ax, p["C"], c, annotate=f"{p['C']:.3f}")
    points = pd.concat([f["C"] for f in recipes.values()])
    hidden = F.focus_ylim(ax, points, [law.params["C"] for law in laws.values()], below=1.5)
    if hidden:
        s.notes.append(f"Figure: {len(hidden)} data-law limit(s) far below the points are off the axis; see the table.")
    F.log_x_axis(ax, None, "unique tokens D")
    ax.set_ylabel(loss_label(ctx, "asymptote"))
    ax.set_title("Data scaling of each recipe")
    ax.legend(handles=ax.get_legend_handles_labels()[0] + F.style_keys(
        fit=r"fit $A/D^{B} + C$", asymptote=r"$C$ ($D \to \infty$)"), loc="upper right")

    ax = axes[1]
    baseline = "single model"
    s.fits["data_efficiency"] = {}
    others = [n for n in laws if n != baseline]
    if baseline in laws and others:
        table_rows = []
        multipliers: list[float] = [1.0]
        dense = F.dense_log(all_d.min(), all_d.max(), extend=8.0, n=60)
        for name in others:
            with part(s, f"{name}: data efficiency"):
                budgets = np.sort(recipes[name]["unique_tokens"].unique()).astype(float)
                with np.errstate(invalid="ignore"):  # draws past the baseline's limit are inf: no interval there
                    eff = data_efficiency(laws[name], laws[baseline], budgets)
                    curve = data_efficiency(laws[name], laws[baseline], dense)
                s.fits["data_efficiency"][name] = records(eff)
                c = RECIPE_COLORS.get(name, "#555555")
                finite = np.isfinite(curve["multiplier"])
                F.fit_line(ax, curve["unique_tokens"][finite], curve["multiplier"][finite], c, label=name)
                lo_band = curve["multiplier_lo"].where(np.isfinite(curve["multiplier_lo"]))
                hi_band = curve["multiplier_hi"].where(np.isfinite(curve["multiplier_hi"]))
                if lo_band.notna().any():
                    ax.fill_between(curve["unique_tokens"], lo_band, hi_band, color=c, alpha=0.12, linewidth=0)
                ax.plot(eff["unique_tokens"], eff["multiplier"], "o", color=c)
                multipliers += [m for m in eff["multiplier"] if np.isfinite(m) and m > 0]
                for _, r in eff.iterrows():
                    table_rows.append([
                        name, budget_label(r["unique_tokens"]), fmt(r["loss"]), F.human(r["baseline_tokens"]),
                        fmt_ci(r["multiplier"], (r["multiplier_lo"], r["multiplier_hi"]), 3, unit="x"),
                    ])
                first = eff.iloc[0]
                s.headline.append(
                    f"{name[0].upper() + name[1:]}: {fmt(first['multiplier'], 3)}x data efficiency over the single model at "
                    f"{budget_label(first['unique_tokens'])}"
                )
        ax.axhline(1.0, color="#999999", linewidth=0.8)
        F.log_x_axis(ax, None, "unique tokens D")
        ax.set_yscale("log")
        ax.set_ylim(min(multipliers) / 3, max(multipliers) * 3)
        ax.yaxis.set_major_formatter(F.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.set_ylabel("data-efficiency multiplier")
        ax.set_title("Unique data the single model needs, relative")
        ax.legend(loc="best")
        s.tables.append(Table(
            "Data-efficiency multiplier over the single-model recipe",
            ["recipe", "token budget", "recipe's loss", "single model needs", "multiplier"],
            table_rows,
            note="Tokens the single-model recipe's data law needs to reach each recipe's asymptote; "
                 "brackets pair the two laws' bootstrap draws. Infinite: the single model never gets there.",
        ))
    else:
        why = ("the multiplier needs two recipes with data laws (single model and ensemble or distillation)"
               if len(laws) < 2 or baseline not in laws else "no recipe to compare")
        F.no_data(ax, why.replace(" (", "\n("))
        ax.set_axis_off()
        s.notes.append(f"Data-efficiency multiplier: {why}.")
    s.figures.append(F.save(
        fig, ctx.out_dir, "data_scaling", "Data scaling and data efficiency",
        "Left: each recipe's asymptote per token budget (bars: bootstrap interval), the data law "
        "A / D^B + C fitted to them (dashed) and its limit (dotted). Right: how many times more unique "
        "data the single-model recipe needs to match each recipe (band: bootstrap interval).",
    ))
    s.tables.insert(0, Table(
        "Data law of each recipe: L∞(D) = A / D^B + C",
        ["recipe", "C (D → ∞)", "exponent B", "coefficient A", "budgets"],
        [[name, fmt_ci(law.params["C"], law.ci.get("C")), fmt_ci(law.params["B"], law.ci.get("B"), 3),
          fmt_ci(law.params["A"], law.ci.get("A"), 3), fmt(law.n_points)] for name, law in laws.items()],
        note=ci_note(ctx),
    ))

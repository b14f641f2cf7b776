"""Section 6: each recipe's asymptote against unique tokens, its data law L(D) = A / D^B + C,
and the data-efficiency multiplier of each recipe over the single model.

Recipes: *single model* is the asymptote in parameters of section 2; *ensemble* the joint
asymptote of section 5; *distilled student* the best student's loss at its one size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalegrid.analysis.least_squares import FitResult
from scalegrid.analysis.recipes import best_runs, data_efficiency, data_scaling
from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt, fmt_ci
from scalegrid.report.sections.common import (
    MIN_POINTS,
    Context,
    NoRows,
    budget_label,
    ci_note,
    dodge,
    error_bars,
    eval_power_law,
    loss_label,
    part,
    records,
    sound,
    train_rows,
)
from scalegrid.report.sections.shared_fits import joint_fits, param_fits

SINGLE = "single model"  # the recipe every other is compared with
RECIPE_COLORS = {SINGLE: "#1f77b4", "ensemble (joint asymptote)": "#d62728", "distilled student": "#2ca02c"}


@dataclass(frozen=True)
class Efficiency:
    at_budgets: pd.DataFrame  # data_efficiency at the recipe's own token budgets
    curve: pd.DataFrame  # data_efficiency over a dense range of budgets, for the figure


@dataclass(frozen=True)
class DataNumbers:
    recipes: dict[str, pd.DataFrame]  # recipe -> its asymptote per token budget: unique_tokens, C (, C_lo, C_hi)
    laws: dict[str, FitResult]  # data_scaling of each recipe with asymptotes at enough budgets
    efficiency: dict[str, Efficiency]  # each other recipe's data efficiency over the single model
    no_efficiency: str | None  # why there is no comparison at all; None when there is one
    notes: tuple[str, ...]  # recipes and laws left out
    efficiency_notes: tuple[str, ...]  # comparisons left out


def section_data(ctx: Context, s: Section) -> None:
    numbers = data_numbers(ctx)
    figure_notes = draw_data(ctx, s, numbers)
    write_data(ctx, s, numbers, figure_notes)


def data_numbers(ctx: Context) -> DataNumbers:
    if train_rows(ctx).empty and ctx.inputs.completed.empty:
        raise NoRows("no COMPLETED runs yet")
    notes: list[str] = []
    recipes = _recipe_asymptotes(ctx, notes)
    if not recipes:
        why = "; ".join(n.split(": skipped: ", 1)[-1].rstrip(".") for n in notes)
        raise NoRows("no recipe has asymptotes per token budget" + (f" ({why})" if why else ""), notes=notes)
    laws = _data_laws(ctx, recipes, notes)
    others = [n for n in laws if n != SINGLE]
    efficiency_notes: list[str] = []
    efficiency, no_efficiency = {}, None
    if SINGLE in laws and others:
        efficiency = _efficiencies(recipes, laws, others, efficiency_notes)
    elif len(laws) < 2 or SINGLE not in laws:
        no_efficiency = "the multiplier needs two recipes with data laws (single model and ensemble or distillation)"
    else:
        no_efficiency = "no recipe to compare"
    return DataNumbers(recipes=recipes, laws=laws, efficiency=efficiency, no_efficiency=no_efficiency,
                       notes=tuple(notes), efficiency_notes=tuple(efficiency_notes))


def _recipe_asymptotes(ctx: Context, notes: list[str]) -> dict[str, pd.DataFrame]:
    recipes: dict[str, pd.DataFrame] = {}
    with part(notes, "Single-model recipe"):
        fits, _ = param_fits(ctx)
        recipes[SINGLE] = _asymptotes(fits)
    if not ctx.inputs.stage("ensemble").empty:
        with part(notes, "Ensemble recipe"):
            joint, _ = joint_fits(ctx)
            recipes["ensemble (joint asymptote)"] = _asymptotes(joint)
    if not ctx.inputs.stage("distill").empty:
        with part(notes, "Distilled-student recipe"):
            best = best_runs(ctx.inputs.runs, by=("unique_tokens",), stage="distill")
            recipes["distilled student"] = best[["unique_tokens", "val_loss"]].rename(columns={"val_loss": "C"})
            notes.append(
                "The distilled student's points are its measured losses at one size (no asymptote in "
                "parameters): its data law says how a student of that size scales with data."
            )
    return recipes


def _asymptotes(laws: pd.DataFrame) -> pd.DataFrame:
    """A recipe's asymptote per budget, from its sound laws only: a degenerate law's C is no finding."""
    laws = sound(laws)
    return laws[["unique_tokens", "C"] + [c for c in ("C_lo", "C_hi") if c in laws]]


def _data_laws(ctx: Context, recipes: dict[str, pd.DataFrame], notes: list[str]) -> dict[str, FitResult]:
    laws: dict[str, FitResult] = {}
    for name, frame in recipes.items():
        if frame["unique_tokens"].nunique() < MIN_POINTS:
            notes.append(
                f"{name}: data law not fitted: asymptotes at {frame['unique_tokens'].nunique()} token budgets, "
                f"a power law in data needs {MIN_POINTS} or more."
            )
            continue
        with part(notes, f"{name}: data law"):
            law = data_scaling(frame, **ctx.fit_kwargs)
            if law.degenerate:
                notes.append(f"{name}: data law degenerate ({'; '.join(law.flags)}): not drawn, no multiplier from it.")
            else:
                laws[name] = law
    return laws


def _efficiencies(
    recipes: dict[str, pd.DataFrame], laws: dict[str, FitResult], others: list[str], notes: list[str]
) -> dict[str, Efficiency]:
    budgets_all = _all_budgets(recipes)
    dense = F.dense_log(budgets_all.min(), budgets_all.max(), extend=8.0, n=60)
    efficiency: dict[str, Efficiency] = {}
    for name in others:
        with part(notes, f"{name}: data efficiency"):
            budgets = np.sort(recipes[name]["unique_tokens"].unique()).astype(float)
            with np.errstate(invalid="ignore"):  # draws past the baseline's limit are inf: no interval there
                efficiency[name] = Efficiency(at_budgets=data_efficiency(laws[name], laws[SINGLE], budgets),
                                              curve=data_efficiency(laws[name], laws[SINGLE], dense))
    return efficiency


def _all_budgets(recipes: dict[str, pd.DataFrame]) -> pd.Series:
    return pd.concat([f["unique_tokens"] for f in recipes.values()])


def draw_data(ctx: Context, s: Section, numbers: DataNumbers) -> list[str]:
    """Left: the recipes' asymptotes and data laws; right: the multipliers. Returns the figure's notes."""
    fig, (left, right) = F.new_figure(2, width=11.5, height=4.2)
    notes = _draw_recipes(ctx, left, numbers)
    if numbers.no_efficiency is None:
        _draw_efficiency(right, numbers.efficiency)
    else:
        F.no_data(right, numbers.no_efficiency.replace(" (", "\n("))
        right.set_axis_off()
    s.figures.append(F.save(
        fig, ctx.out_dir, "data_scaling", "Data scaling and data efficiency",
        "Left: each recipe's asymptote per token budget (bars: bootstrap interval), the data law "
        "A / D^B + C fitted to them (dashed) and its limit (dotted). Right: how many times more unique "
        "data the single-model recipe needs to match each recipe (band: bootstrap interval).",
    ))
    return notes


def _draw_recipes(ctx: Context, ax, numbers: DataNumbers) -> list[str]:
    recipes, laws = numbers.recipes, numbers.laws
    budgets_all = _all_budgets(recipes)
    xs = F.dense_log(budgets_all.min() / 1.5, budgets_all.max(), extend=8.0)
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
    F.log_x_axis(ax, None, "unique tokens D")
    ax.set_ylabel(loss_label(ctx, "asymptote"))
    ax.set_title("Data scaling of each recipe")
    ax.legend(handles=ax.get_legend_handles_labels()[0] + F.style_keys(
        fit=r"fit $A/D^{B} + C$", asymptote=r"$C$ ($D \to \infty$)"), loc="upper right")
    if hidden:
        return [f"Figure: {len(hidden)} data-law limit(s) far below the points are off the axis; see the table."]
    return []


def _draw_efficiency(ax, efficiency: dict[str, Efficiency]) -> None:
    multipliers: list[float] = [1.0]
    for name, found in efficiency.items():
        c = RECIPE_COLORS.get(name, "#555555")
        curve, eff = found.curve, found.at_budgets
        finite = np.isfinite(curve["multiplier"])
        F.fit_line(ax, curve["unique_tokens"][finite], curve["multiplier"][finite], c, label=name)
        lo_band = curve["multiplier_lo"].where(np.isfinite(curve["multiplier_lo"]))
        hi_band = curve["multiplier_hi"].where(np.isfinite(curve["multiplier_hi"]))
        if lo_band.notna().any():
            ax.fill_between(curve["unique_tokens"], lo_band, hi_band, color=c, alpha=0.12, linewidth=0)
        ax.plot(eff["unique_tokens"], eff["multiplier"], "o", color=c)
        multipliers += [m for m in eff["multiplier"] if np.isfinite(m) and m > 0]
    ax.axhline(1.0, color="#999999", linewidth=0.8)
    F.log_x_axis(ax, None, "unique tokens D")
    ax.set_yscale("log")
    ax.set_ylim(min(multipliers) / 3, max(multipliers) * 3)
    ax.yaxis.set_major_formatter(F.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_ylabel("data-efficiency multiplier")
    ax.set_title("Unique data the single model needs, relative")
    ax.legend(loc="best")


def write_data(ctx: Context, s: Section, numbers: DataNumbers, figure_notes: list[str]) -> None:
    laws = numbers.laws
    s.fits["recipes"] = {
        name: {"asymptotes": records(frame), **({"data_law": {"law": laws[name].law, **laws[name].to_dict()}}
                                                if name in laws else {})}
        for name, frame in numbers.recipes.items()
    }
    s.fits["data_efficiency"] = {name: records(found.at_budgets) for name, found in numbers.efficiency.items()}
    s.notes.extend([*numbers.notes, *figure_notes, *numbers.efficiency_notes])
    if numbers.no_efficiency is not None:
        s.notes.append(f"Data-efficiency multiplier: {numbers.no_efficiency}.")
    s.tables.append(Table(
        "Data law of each recipe: L∞(D) = A / D^B + C",
        ["recipe", "C (D → ∞)", "exponent B", "coefficient A", "budgets"],
        [[name, fmt_ci(law.params["C"], law.ci.get("C")), fmt_ci(law.params["B"], law.ci.get("B"), 3),
          fmt_ci(law.params["A"], law.ci.get("A"), 3), fmt(law.n_points)] for name, law in laws.items()],
        note=ci_note(ctx),
    ))
    if numbers.no_efficiency is None:
        s.tables.append(_efficiency_table(numbers.efficiency))
    for name, found in numbers.efficiency.items():
        first = found.at_budgets.iloc[0]
        s.headline.append(
            f"{name[0].upper() + name[1:]}: {fmt(first['multiplier'], 3)}x data efficiency over the single model at "
            f"{budget_label(first['unique_tokens'])}"
        )


def _efficiency_table(efficiency: dict[str, Efficiency]) -> Table:
    return Table(
        "Data-efficiency multiplier over the single-model recipe",
        ["recipe", "token budget", "recipe's loss", "single model needs", "multiplier"],
        [[name, budget_label(r["unique_tokens"]), fmt(r["loss"]), F.human(r["baseline_tokens"]),
          fmt_ci(r["multiplier"], (r["multiplier_lo"], r["multiplier_hi"]), 3, unit="x")]
         for name, found in efficiency.items() for _, r in found.at_budgets.iterrows()],
        note="Tokens the single-model recipe's data law needs to reach each recipe's asymptote; "
             "brackets pair the two laws' bootstrap draws. Infinite: the single model never gets there.",
    )

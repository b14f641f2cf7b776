"""Section 5: loss against ensemble members K, L(K) = A / K^B + C per size and token budget,
and the joint (parameters x members) asymptote."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt, fmt_ci
from scalegrid.analysis.recipes import ensemble_gains
from scalegrid.report.sections.common import (
    Context,
    NoRows,
    law_verdict,
    budget_colors,
    budget_label,
    ci_note,
    ci_of,
    dodge,
    error_bars,
    eval_power_law,
    loss_label,
    lowest_loss_per,
    panel_budgets,
    part,
    records,
    size_by_budget_table,
    size_colors,
    size_label,
    sound,
)
from scalegrid.report.sections.shared_fits import ensemble_fits, joint_fits, param_fits, single_and_ensemble_runs

JOINT = "Joint (parameters x members) asymptote"


@dataclass(frozen=True)
class EnsembleNumbers:
    laws: pd.DataFrame  # ensemble_scaling: L(K) = A / K^B + C per (size, token budget); no rows: none fitted
    per_members: pd.DataFrame  # the lowest loss per (size, budget, K), for the pairs with ensembles
    gains: pd.DataFrame  # ensemble_gains: the largest ensemble against its members alone, beyond noise or not
    budgets_shown: tuple  # the token budgets with a panel
    joint: pd.DataFrame | None  # joint_scaling per token budget; None: not fitted (see notes)
    single: pd.DataFrame | None  # param_scaling indexed by token budget, for comparison; None: not available
    notes: tuple[str, ...]


def section_ensembles(ctx: Context, s: Section) -> None:
    numbers = ensemble_numbers(ctx)
    figure_notes = draw_ensembles(ctx, s, numbers)
    write_ensembles(ctx, s, numbers, figure_notes)


def ensemble_numbers(ctx: Context) -> EnsembleNumbers:
    if ctx.inputs.stage("ensemble").empty:
        raise NoRows("no ensemble runs (stage `ensemble`, `members` = K) in the store")
    notes = []
    try:
        laws, dropped = ensemble_fits(ctx)
    except NoRows as err:  # the measured ensembles still say whether they beat one model
        laws, dropped = pd.DataFrame(columns=["model", "params", "unique_tokens", "A", "B", "C", "degenerate"]), []
        notes.append(f"K-law not fitted: {err}.")
    if dropped:
        notes.append(f"K-law not fitted: {'; '.join(dropped)}.")
    rows = single_and_ensemble_runs(ctx)
    with_ens = rows[rows["stage"] == "ensemble"][["params", "unique_tokens"]].drop_duplicates()
    per_k = lowest_loss_per(rows, "members").merge(with_ens, on=["params", "unique_tokens"])
    budgets, note = panel_budgets(per_k["unique_tokens"])
    if note:
        notes.append(f"Figure: {note}.")
    gains = ctx.once("ensemble_gains", lambda: ensemble_gains(ctx.inputs.runs))
    joint = single = None
    if laws.empty:
        return EnsembleNumbers(laws=laws, per_members=per_k, gains=gains, budgets_shown=tuple(budgets), joint=None,
                               single=None, notes=tuple(notes))
    with part(notes, JOINT):
        joint, dropped_joint = joint_fits(ctx)
        if dropped_joint:
            notes.append(f"Joint law not fitted: {'; '.join(dropped_joint)}.")
        try:
            single = param_fits(ctx)[0].set_index("unique_tokens")
        except Exception as err:  # noqa: BLE001 - the comparison column is optional
            notes.append(f"Single-model asymptotes for comparison not available: {err}")
    return EnsembleNumbers(laws=laws, per_members=per_k, gains=gains, budgets_shown=tuple(budgets), joint=joint,
                           single=single, notes=tuple(notes))


def draw_ensembles(ctx: Context, s: Section, numbers: EnsembleNumbers) -> list[str]:
    """Loss against K per budget, and the joint law; returns the notes on what they leave out."""
    _draw_members(ctx, s, numbers)
    notes: list[str] = []
    if numbers.joint is not None:
        with part(notes, JOINT):
            hidden = _draw_joint(ctx, s, numbers.laws, numbers.joint)
            if hidden:
                notes.append(f"Joint figure: {len(hidden)} joint asymptote(s) far below the points are off the axis; "
                             "see the table.")
    return notes


def _draw_members(ctx: Context, s: Section, numbers: EnsembleNumbers) -> None:
    ens, per_k = numbers.laws, numbers.per_members
    sizes = size_colors(per_k["params"])
    fitted = sound(ens).set_index(["params", "unique_tokens"])
    fig, axes = F.new_panels(len(numbers.budgets_shown))
    ks = F.dense_log(1, per_k["members"].max(), extend=2.0)
    for ax, d in zip(axes, numbers.budgets_shown):
        for n, line in per_k[per_k["unique_tokens"] == d].groupby("params"):
            ax.plot(line["members"], line["val_loss"], "o", color=sizes[n], label=size_label(n), markersize=4)
            if (n, d) in fitted.index:
                row = fitted.loc[(n, d)]
                F.fit_line(ax, ks, eval_power_law(ks, row), sizes[n])
                F.asymptote(ax, float(row["C"]), sizes[n])
        at_d = per_k[per_k["unique_tokens"] == d]
        F.focus_ylim(ax, at_d["val_loss"], [fitted.loc[k, "C"] for k in fitted.index if k[1] == d], below=0.8)
        F.log2_x_axis(ax, per_k["members"], "ensemble members K")
        ax.set_ylabel(loss_label(ctx))
        ax.set_title(budget_label(d))
    keys = F.style_keys(fit=r"fit $A/K^{B} + C$", asymptote=r"asymptote $C$ ($K \to \infty$)") if len(fitted) else []
    F.legend_outside(fig, axes, extra=keys)
    s.figures.append(F.save(
        fig, ctx.out_dir, "ensembles", "Loss against ensemble members",
        "Each point is an ensemble of K independently trained models of one size (K = 1: the best single "
        "run); dashed: L(K) = A / K^B + C per size where it could be fitted soundly; dotted: the ensemble asymptote C.",
    ))


def _draw_joint(ctx: Context, s: Section, ens: pd.DataFrame, joint: pd.DataFrame) -> list[float]:
    """Each size's ensemble asymptote against size, with the joint law; returns the joint
    asymptotes too far below the points to show."""
    colors = budget_colors(ens["unique_tokens"])
    fig, (ax,) = F.new_figure(width=7.2, height=4.4)
    xs = F.dense_log(ens["params"].min() / 1.3, ens["params"].max(), extend=4.0)
    jfit = joint.set_index("unique_tokens")
    for i, (d, rows_d) in enumerate(ens.groupby("unique_tokens")):
        c = colors[d]
        ax.errorbar(rows_d["params"] * dodge(i, len(colors)), rows_d["C"], yerr=error_bars(rows_d, "C"), fmt="o",
                    color=c, capsize=2, label=budget_label(d), zorder=3)
        if d in jfit.index:
            r = jfit.loc[d]
            F.fit_line(ax, xs, eval_power_law(xs, r), c)
            F.asymptote(ax, float(r["C"]), c, annotate=f"{float(r['C']):.3f}")
    hidden = F.focus_ylim(ax, ens["C"], joint["C"])
    F.log_x_axis(ax, None, "parameters N (per member)")
    ax.set_ylabel(r"ensemble asymptote $C(N)$ ($K \to \infty$)")
    ax.set_title("Joint scaling: ensemble asymptotes against parameters")
    F.legend_below(fig, ax, extra=F.style_keys(fit=r"fit $A/N^{B} + C$", asymptote="joint asymptote"), ncols=3)
    s.figures.append(F.save(
        fig, ctx.out_dir, "joint_scaling", JOINT,
        "Each point is one size's ensemble asymptote (bars: bootstrap interval); dashed: the power law "
        "in parameters over them; dotted: the joint asymptote, the loss with infinitely many members of "
        "infinite size.",
    ))
    return hidden


def write_ensembles(ctx: Context, s: Section, numbers: EnsembleNumbers, figure_notes: list[str]) -> None:
    s.fits["ensemble_laws"] = records(numbers.laws)
    s.fits["ensemble_gains"] = records(numbers.gains)
    s.notes.extend([*numbers.notes, *figure_notes])
    if len(numbers.laws):
        s.tables.append(size_by_budget_table(
            numbers.laws, "Ensemble asymptote C (K → ∞) per size and token budget",
            lambda n, d, law: fmt_ci(law["C"], ci_of(law, "C")) + ("" if law_verdict(law) == "sound" else " (degenerate)"),
            note="From L(K) = A / K^B + C fitted per size and budget (exponents, coefficients and why a law is "
                 "degenerate in fits.json). " + ci_note(ctx),
        ))
    if len(numbers.gains):
        s.tables.append(_gains_table(numbers.gains))
        s.headline.extend(_gain_headline(r) for _, r in numbers.gains.iterrows())
    s.paragraphs.append(
        "Ensembling K independently trained members is the paper's second lever: for each size, "
        "L(K) = A / K^B + C is fitted over K, and the ensemble asymptotes C(N) are then fitted against "
        "parameters; the asymptote of that law is the joint (parameters x members) asymptote. "
        + combine_sentence(ctx.inputs.stage("ensemble"))
    )
    if numbers.joint is not None:
        s.fits["joint_laws"] = records(numbers.joint)
        s.tables.append(_joint_table(ctx, numbers.joint, numbers.single))
        if len(numbers.joint):
            first = numbers.joint.sort_values("unique_tokens").iloc[0]
            s.headline.append(f"{JOINT} at {budget_label(first['unique_tokens'])}: {fmt_ci(first['C'], ci_of(first, 'C'))}")


def _joint_table(ctx: Context, joint: pd.DataFrame, single: pd.DataFrame | None) -> Table:
    rows = []
    for _, r in joint.sort_values("unique_tokens").iterrows():
        base = single.loc[r["unique_tokens"]] if single is not None and r["unique_tokens"] in single.index else None
        rows.append([
            budget_label(r["unique_tokens"]), fmt_ci(r["C"], ci_of(r, "C")),
            fmt_ci(base["C"], ci_of(base, "C")) if base is not None else "n/a",
            fmt(float(base["C"]) - float(r["C"]), 3) if base is not None else "n/a", fmt(r["n_points"]),
        ])
    return Table(
        "Joint asymptote per token budget",
        ["token budget", "joint asymptote", "single-model asymptote", "ensembles lower it by", "sizes"],
        rows, note=ci_note(ctx),
    )


def _gains_table(gains: pd.DataFrame) -> Table:
    rows = [[r["model"], budget_label(r["unique_tokens"]), fmt(r["members"]), fmt(r["loss_ensemble"]),
             f"{fmt(r['loss_single'])} ± {fmt(r['single_sd'], 2)}", fmt(r["difference"], 3), fmt(r["stderr"], 2),
             r["verdict"]] for _, r in gains.sort_values(["unique_tokens", "model"]).iterrows()]
    return Table(
        "Does the ensemble beat one model? The largest ensemble against its own members alone",
        ["model", "token budget", "K", "ensemble", "its members alone (mean ± sd)", "difference", "standard error",
         "verdict"], rows,
        note="Each member is a seed of the single model; the difference (ensemble minus the members' mean) is beyond "
             "the seed noise when it exceeds 2 standard errors, the members' spread times sqrt(1 + 1/K).",
    )


def _gain_headline(r: pd.Series) -> str:
    where = f"{r['model']} at {budget_label(r['unique_tokens'])}"
    if r["verdict"] == "lower":
        return (f"Ensemble of {int(r['members'])} beats one model at {where}: {fmt(r['loss_ensemble'])} against "
                f"{fmt(r['loss_single'])} ± {fmt(r['single_sd'], 2)}, beyond seed noise")
    return f"Ensemble of {int(r['members'])} against one model at {where}: {r['verdict']}"


COMBINED_BY = {"probs": "averaging their next-token probabilities", "logits": "averaging their logits (softmax of the mean logits)"}


def combine_sentence(ensembles: pd.DataFrame) -> str:
    """How the ensembles' members were combined (`ensemble.combine`); rows from before the column, and k = 1, say nothing."""
    ways = ensembles["combine"].dropna().value_counts() if "combine" in ensembles.columns else pd.Series(dtype=int)
    if ways.empty:
        ways = pd.Series({"probs": len(ensembles)})  # the only way before `combine` existed
    if len(ways) == 1:
        return f"Members are combined by {COMBINED_BY[ways.index[0]]} (`ensemble.combine: {ways.index[0]}`)."
    counts = ", ".join(f"{COMBINED_BY[way]} ({n} row{'s' if n != 1 else ''})" for way, n in ways.items())
    return f"The store holds ensembles combined both ways: {counts}; each K's point is the lowest loss of either."

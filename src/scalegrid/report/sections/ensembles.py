"""Section 5: loss against ensemble members K, L(K) = A / K^B + C per size and token budget,
and the joint (parameters x members) asymptote.
"""

from __future__ import annotations

import pandas as pd

from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt, fmt_ci
from scalegrid.report.sections.common import (
    Context,
    part,
    size_label,
    budget_label,
    loss_label,
    records,
    ci_of,
    eval_power_law,
    size_colors,
    budget_colors,
    panel_budgets,
    dodge,
    error_bars,
    ci_note,
)
from scalegrid.report.sections.shared_fits import param_fits, ensemble_fits, joint_fits


def section_ensembles(ctx: Context, s: Section) -> None:
    ens, dropped = ensemble_fits(ctx)
    s.fits["ensemble_laws"] = records(ens)
    if dropped:
        s.notes.append(f"K-law not fitted: {'; '.join(dropped)}.")
    rows = ctx.inputs.completed
    rows = rows[rows["stage"].fillna("train").isin(["train", "ensemble"])].copy()
    rows["members"] = pd.to_numeric(rows["members"], errors="coerce").fillna(1)
    per_k = rows.groupby(["params", "unique_tokens", "members"], sort=True)["val_loss"].min().reset_index()
    per_k = per_k.merge(ens[["params", "unique_tokens"]].drop_duplicates(), on=["params", "unique_tokens"])
    budgets, note = panel_budgets(ens["unique_tokens"])
    if note:
        s.notes.append(f"Figure: {note}.")
    sizes = size_colors(ens["params"])
    fitted = ens.set_index(["params", "unique_tokens"])
    fig, axes = F.new_panels(len(budgets))
    ks = F.dense_log(1, per_k["members"].max(), extend=2.0)
    for ax, d in zip(axes, budgets):
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
    F.legend_outside(fig, axes, extra=F.style_keys(fit=r"fit $A/K^{B} + C$", asymptote=r"asymptote $C$ ($K \to \infty$)"))
    s.figures.append(F.save(
        fig, ctx.out_dir, "ensembles", "Loss against ensemble members",
        "Each point is an ensemble of K independently trained models of one size (K = 1: the best single "
        "run); dashed: L(K) = A / K^B + C per size; dotted: the ensemble asymptote C.",
    ))
    ens_budgets = sorted(ens["unique_tokens"].unique())
    by_pair = ens.set_index(["params", "unique_tokens"])
    s.tables.append(Table(
        "Ensemble asymptote C (K → ∞) per size and token budget",
        ["size"] + [budget_label(d) for d in ens_budgets],
        [[size_label(n)] + [fmt_ci(by_pair.loc[(n, d), "C"], ci_of(by_pair.loc[(n, d)], "C"))
                            if (n, d) in by_pair.index else "-" for d in ens_budgets]
         for n in sorted(ens["params"].unique())],
        note="From L(K) = A / K^B + C fitted per size and budget (exponents and coefficients in fits.json). "
             + ci_note(ctx),
    ))
    s.paragraphs.append(
        "Ensembling K independently trained members is the paper's second lever: for each size, "
        "L(K) = A / K^B + C is fitted over K, and the ensemble asymptotes C(N) are then fitted against "
        "parameters; the asymptote of that law is the joint (parameters x members) asymptote."
    )

    with part(s, "Joint (parameters x members) asymptote"):
        joint, dropped_joint = joint_fits(ctx)
        s.fits["joint_laws"] = records(joint)
        if dropped_joint:
            s.notes.append(f"Joint law not fitted: {'; '.join(dropped_joint)}.")
        single = None
        try:
            single = param_fits(ctx)[0].set_index("unique_tokens")
        except Exception as err:  # noqa: BLE001 - the comparison column is optional
            s.notes.append(f"Single-model asymptotes for comparison not available: {err}")
        colors = budget_colors(ens["unique_tokens"])
        fig, (ax,) = F.new_figure(width=7.2, height=4.4)
        xs = F.dense_log(ens["params"].min() / 1.3, ens["params"].max(), extend=4.0)
        jfit = joint.set_index("unique_tokens")
        for i, (d, rows_d) in enumerate(ens.groupby("unique_tokens")):
            c = colors[d]
            yerr = error_bars(rows_d, "C")
            ax.errorbar(rows_d["params"] * dodge(i, len(colors)), rows_d["C"], yerr=yerr, fmt="o", color=c,
                        capsize=2, label=budget_label(d), zorder=3)
            if d in jfit.index:
                r = jfit.loc[d]
                F.fit_line(ax, xs, eval_power_law(xs, r), c)
                F.asymptote(ax, float(r["C"]), c, annotate=f"{float(r['C']):.3f}")
        hidden = F.focus_ylim(ax, ens["C"], joint["C"])
        if hidden:
            s.notes.append(f"Joint figure: {len(hidden)} joint asymptote(s) far below the points are off the axis; see the table.")
        F.log_x_axis(ax, None, "parameters N (per member)")
        ax.set_ylabel(r"ensemble asymptote $C(N)$ ($K \to \infty$)")
        ax.set_title("Joint scaling: ensemble asymptotes against parameters")
        F.legend_below(fig, ax, extra=F.style_keys(fit=r"fit $A/N^{B} + C$", asymptote="joint asymptote"), ncols=3)
        s.figures.append(F.save(
            fig, ctx.out_dir, "joint_scaling", "Joint (parameters x members) asymptote",
            "Each point is one size's ensemble asymptote (bars: bootstrap interval); dashed: the power law "
            "in parameters over them; dotted: the joint asymptote, the loss with infinitely many members of "
            "infinite size.",
        ))
        table_rows = []
        for _, r in joint.sort_values("unique_tokens").iterrows():
            base = single.loc[r["unique_tokens"]] if single is not None and r["unique_tokens"] in single.index else None
            table_rows.append([
                budget_label(r["unique_tokens"]), fmt_ci(r["C"], ci_of(r, "C")),
                fmt_ci(base["C"], ci_of(base, "C")) if base is not None else "n/a",
                fmt(float(base["C"]) - float(r["C"]), 3) if base is not None else "n/a", fmt(r["n_points"]),
            ])
        s.tables.append(Table(
            "Joint asymptote per token budget",
            ["token budget", "joint asymptote", "single-model asymptote", "ensembles lower it by", "sizes"],
            table_rows, note=ci_note(ctx),
        ))
        if len(joint):
            first = joint.sort_values("unique_tokens").iloc[0]
            s.headline.append(
                f"Joint (parameters x members) asymptote at {budget_label(first['unique_tokens'])}: "
                f"{fmt_ci(first['C'], ci_of(first, 'C'))}"
            )

"""Section 4: loss against weight decay and learning rate, the locally-optimal hyper-parameters
per size with their certificates, and the optimal weight decay and epochs against size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalegrid.analysis.laws import power_law
from scalegrid.analysis.recipes import local_optimality, local_optimality_neighbours
from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt
from scalegrid.report.sections.common import (
    AXIS_SHORT,
    AXIS_NAMES,
    NoRows,
    Context,
    part,
    size_label,
    budget_label,
    loss_label,
    records,
    train_rows,
    size_colors,
    budget_colors,
    panel_budgets,
    hparam_law_table,
)
from scalegrid.report.sections.shared_fits import best_train, hparam_law


def section_hyperparameters(ctx: Context, s: Section) -> None:
    rows = train_rows(ctx)
    if rows.empty:
        raise NoRows("no COMPLETED training runs yet")
    varied = [a for a in ("weight_decay", "lr") if rows[a].nunique() > 1]
    if not varied:
        raise NoRows("the grid has one weight decay and one learning rate; nothing to compare")
    best = best_train(ctx)
    budgets, note = panel_budgets(rows["unique_tokens"])
    if note:
        s.notes.append(f"Figures: {note}.")
    sizes = size_colors(rows["params"])
    for axis, label in (("weight_decay", "weight decay"), ("lr", "peak learning rate")):
        if axis not in varied:
            continue
        cells = rows.groupby(["params", "unique_tokens", axis], sort=True)["val_loss"].min().reset_index()
        fig, axes = F.new_panels(len(budgets))
        for ax, d in zip(axes, budgets):
            for n, line in cells[cells["unique_tokens"] == d].groupby("params"):
                ax.plot(line[axis], line["val_loss"], "o-", color=sizes[n], label=size_label(n), markersize=4)
            F.log_x_axis(ax, cells[axis], label)
            ax.xaxis.set_major_formatter(F.plain_formatter())
            ax.set_ylabel(loss_label(ctx))
            ax.set_title(budget_label(d))
        F.legend_outside(fig, axes)
        s.figures.append(F.save(
            fig, ctx.out_dir, f"loss_vs_{axis}", f"Loss against {label}",
            f"One panel per token budget; each point is the best run at that {label} (over the other axes).",
        ))

    with part(s, "Locally-optimal hyper-parameters"):
        # only the axes the grid varies: an axis with one value has no neighbours to run
        axes = [a for a in ("epochs", "lr", "weight_decay") if rows[a].nunique() > 1]
        fixed = [AXIS_SHORT.get(a, a) for a in ("epochs", "lr", "weight_decay") if a not in axes]
        cert = local_optimality(ctx.inputs.runs, axes=axes)
        detail = local_optimality_neighbours(ctx.inputs.runs, axes=axes)
        s.fits["local_optimality"] = records(cert)
        s.fits["local_optimality_neighbours"] = records(detail)
        chosen = best.set_index(["model", "unique_tokens"])  # the point each certificate is about
        cert = cert.assign(**{col: [chosen[col].get((m, d), np.nan) for m, d in zip(cert["model"], cert["unique_tokens"])]
                              for col in ("params", "epochs", "lr", "weight_decay")})
        table_rows = []
        for _, c in cert.sort_values(["unique_tokens", "params"]).iterrows():
            mine = detail[(detail["model"] == c["model"]) & (detail["unique_tokens"] == c["unique_tokens"])]
            checked = []
            for axis, rows_a in mine.groupby("axis", sort=False):
                ran = [f"{v:g}" for v, st in zip(rows_a["neighbour_value"], rows_a["status"]) if st in ("no_worse", "better")]
                if ran:
                    checked.append(f"{AXIS_SHORT.get(axis, axis)} {'/'.join(ran)}")
            verdict = "certified" if c["certified"] else ("better neighbour" if c["better"] else "incomplete")
            table_rows.append([
                size_label(c["params"]), budget_label(c["unique_tokens"]), fmt(c["epochs"]),
                f"{c['lr']:g}", f"{c['weight_decay']:g}", fmt(c["loss"]), verdict,
                "; ".join(checked) or "none", ", ".join(c["better"]) or "-", ", ".join(c["missing"]) or "-",
            ])
        s.tables.append(Table(
            "Locally-optimal hyper-parameters per size",
            ["size", "token budget", "epochs", "lr", "weight decay", "loss", "certificate",
             "neighbours run", "better", "not run"],
            table_rows,
            note="A point is certified when every neighbour one grid step away along "
                 + ", ".join(AXIS_NAMES[a] for a in axes) + " (the others held fixed) was run and none is better "
                 "(the paper's check)." + (f" Not checked, the grid has one value: {', '.join(fixed)}." if fixed else ""),
        ))
        n_cert = int(cert["certified"].sum())
        s.headline.append(f"Locally optimal: {n_cert} of {len(cert)} chosen (size, budget) points certified")

    with part(s, "Optimal weight decay against parameters"):
        law = hparam_law(ctx, "weight_decay")
        s.fits["optimal_weight_decay_scaling"] = records(law)
        s.tables.append(hparam_law_table(law, "weight_decay", ctx))
    with part(s, "Figure of the optimal hyper-parameters against parameters"):
        _optimal_hparam_figure(ctx, s, best)


def _optimal_hparam_figure(ctx: Context, s: Section, best: pd.DataFrame) -> None:
    """Optimal weight decay and epochs of each size's best run, with the fitted k N^gamma."""
    shown = [(h, label) for h, label in (("weight_decay", "optimal weight decay"), ("epochs", "optimal epochs"))
             if train_rows(ctx)[h].nunique() > 1]
    if not shown or best["params"].nunique() < 2:
        return  # one size says nothing about a trend in size
    colors = budget_colors(best["unique_tokens"])
    budgets = sorted(colors)
    fig, axes = F.new_figure(len(shown), width=4.6 * len(shown) + 1.6, height=3.6)
    xs = F.dense_log(best["params"].min(), best["params"].max())
    for ax, (h, label) in zip(axes, shown):
        try:
            fitted = hparam_law(ctx, h).set_index("unique_tokens")
        except Exception:  # noqa: BLE001 - points without a fit still say something
            fitted = pd.DataFrame()
        for d, rows in best.groupby("unique_tokens"):
            nudge = 1 + 0.04 * (budgets.index(d) - (len(budgets) - 1) / 2)  # coinciding grid values stay visible
            ax.plot(rows["params"], rows[h] * nudge, "o", color=colors[d], label=budget_label(d))
            if d in fitted.index:
                r = fitted.loc[d]  # h* = k N^gamma, drawn as A / N^B + C with A = k, B = -gamma, C = 0
                F.fit_line(ax, xs, power_law(xs, float(r["coefficient"]), -float(r["exponent"]), 0.0), colors[d])
        grid = sorted(train_rows(ctx)[h].dropna().unique())
        F.log_x_axis(ax, best["params"], "parameters N")
        ax.set_yscale("log")
        ax.set_yticks(grid)
        ax.yaxis.set_major_formatter(F.plain_formatter())
        ax.yaxis.set_minor_formatter(F.NullFormatter())
        ax.set_ylim(grid[0] / 1.4, grid[-1] * 1.4)
        ax.set_ylabel(f"{label} (grid values)")
        ax.set_title(f"{label.capitalize()} against parameters")
    F.legend_outside(fig, axes[:1], extra=F.style_keys(fit=r"fit $k N^{\gamma}$", asymptote=None))
    s.figures.append(F.save(
        fig, ctx.out_dir, "optimal_hyperparameters", "Optimal weight decay and epochs against parameters",
        "The weight decay and epoch count of each size's best run per token budget (points nudged apart "
        "vertically where budgets agree); dashed: the fitted k N^γ.",
    ))

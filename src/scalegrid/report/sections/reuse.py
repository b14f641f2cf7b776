"""Section 8: multi-epoch reuse (seeds/003): E(K, N) against K per N, K*(N) and its two laws, R* per N."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalegrid.analysis import ReuseAnalysis, epoch_rows, one_pass_reference, reuse_analysis
from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt, fmt_ci
from scalegrid.report.sections.common import Context, NoRows, records
from scalegrid.data.gaussian import one_pass_problem

LAW_STYLE = {"log": "--", "power": ":"}


@dataclass(frozen=True)
class ReuseNumbers:
    analysis: ReuseAnalysis  # reuse_analysis: the E(K, N) table, K* per (N, eps), both laws, R* per N
    reference: dict  # one_pass_reference: how R(1, N') was made (exact or fitted)


def section_reuse(ctx: Context, s: Section) -> None:
    numbers = reuse_numbers(ctx)
    draw_reuse(ctx, s, numbers)
    write_reuse(s, numbers)


def reuse_numbers(ctx: Context) -> ReuseNumbers:
    runs = ctx.inputs.runs
    if len(runs) and "stage" in runs.columns:
        runs = runs[runs["stage"].fillna("train") == "train"]
    rows = epoch_rows(runs, ctx.inputs.curves) if len(runs) else runs
    if rows.empty:
        raise NoRows("no COMPLETED training runs yet")
    if rows["epochs"].nunique() < 2:
        raise NoRows("the grid has one epoch count (and no per-epoch curves of a constant schedule); reuse compares several")
    problem = one_pass_problem(rows["config_json"]) if "config_json" in rows.columns else None
    reference, described = one_pass_reference(rows, problem)
    analysis = reuse_analysis(rows, reference, bootstrap=ctx.bootstrap, rng_seed=ctx.seed)
    return ReuseNumbers(analysis=analysis, reference=described)


def draw_reuse(ctx: Context, s: Section, numbers: ReuseNumbers) -> None:
    """Left: E(K, N) against K, one line per N, and the diagonal E = K. Right: K*(N) per eps with both laws."""
    table, thresholds = numbers.analysis.table, numbers.analysis.thresholds
    sizes = sorted(table["unique_tokens"].unique())
    fig, (left, right) = F.new_figure(2, width=11.5, height=4.4)
    _draw_reuse_rate(left, table, sizes)
    _draw_k_star(right, thresholds, numbers.analysis.laws, sizes)
    s.figures.append(F.save(
        fig, ctx.out_dir, "reuse", "Multi-epoch reuse",
        "Left: the effective reuse rate E(K, N) = N' / N (N' fresh samples one pass needs to match K epochs over "
        "N, each with its lr tuned), one line per N, with its bootstrap interval over seeds; on the dotted "
        "diagonal E = K repeated data is worth fresh data. Right: K*(N), where E(K, N) / K falls below 1 - eps "
        "(open markers: censored at the epoch range), with the laws K* = A ln N + B (dashed) and a N^b (dotted).",
    ))


def _draw_reuse_rate(ax, table: pd.DataFrame, sizes: list) -> None:
    colors = dict(zip(sizes, F.colors(len(sizes), "viridis")))
    ks = np.array(sorted(table["epochs"].unique()), dtype=float)
    ax.plot(ks, ks, color="#888888", linestyle=":", linewidth=1.0, label="E = K (fresh data)")
    for n, line in table.groupby("unique_tokens"):
        line = line.sort_values("epochs")
        ax.plot(line["epochs"], line["effective_reuse"], "-", color=colors[n], marker="o" if len(line) <= 12 else None,
                markersize=3, label=f"N = {F.human(n)}")
        if line["effective_reuse_lo"].notna().any():
            ax.fill_between(line["epochs"], line["effective_reuse_lo"], line["effective_reuse_hi"], color=colors[n],
                            alpha=0.18, linewidth=0)
    ax.set_yscale("log", base=2)
    F.log2_x_axis(ax, ks, "epochs K")
    ax.yaxis.set_major_formatter(F.plain_formatter())
    ax.set_ylabel("effective reuse E(K, N) = N' / N")
    ax.set_title("Larger datasets can be repeated more")
    ax.legend(loc="upper left", fontsize=7.5)


def _draw_k_star(ax, thresholds: pd.DataFrame, laws, sizes: list) -> None:
    levels = sorted(thresholds["eps"].unique())
    colors = dict(zip(levels, F.colors(len(levels), "plasma")))
    for eps, rows in thresholds.groupby("eps"):
        bracketed = rows["censored"] == ""
        err = np.vstack([rows["k_star"] - rows["k_star_lo"], rows["k_star_hi"] - rows["k_star"]]).clip(min=0)
        if np.isfinite(err).all():
            ax.errorbar(rows["unique_tokens"], rows["k_star"], yerr=err, fmt="none", ecolor=colors[eps], alpha=0.5)
        ax.plot(rows["unique_tokens"][bracketed], rows["k_star"][bracketed], "o", color=colors[eps], label=f"eps = {eps:g}")
        ax.plot(rows["unique_tokens"][~bracketed], rows["k_star"][~bracketed], "o", mfc="white", color=colors[eps])
    xs = F.dense_log(min(sizes), max(sizes))
    for law in laws:
        p = law.params
        ys = p["A"] * np.log(xs) + p["B"] if law.law == "log" else p["a"] * xs ** p["b"]
        ax.plot(xs, ys, color=colors[law.eps], linestyle=LAW_STYLE[law.law], linewidth=1.1)
    for law, style in LAW_STYLE.items():
        ax.plot([], [], color="#555555", linestyle=style, label="K* = A ln N + B" if law == "log" else "K* = a N^b")
    F.log_x_axis(ax, sizes, "unique samples N")
    ax.set_ylabel("K*(N) (epochs)")
    ax.set_title("End of effective reuse: E(K, N) < (1 - eps) K")
    ax.legend(loc="upper left", fontsize=7.5)


def write_reuse(s: Section, numbers: ReuseNumbers) -> None:
    analysis = numbers.analysis
    s.fits["one_pass"] = numbers.reference
    s.fits["effective_reuse"] = records(analysis.table)
    s.fits["k_star"] = records(analysis.thresholds)
    s.fits["k_star_laws"] = [law.to_dict() for law in analysis.laws]
    s.fits["r_star"] = records(analysis.r_star)
    s.notes.extend(analysis.notes)
    s.tables += [_reuse_table(analysis), _k_star_table(analysis), _laws_table(analysis), _r_star_table(analysis)]
    how = ("computed exactly for one-pass SGD on fresh samples, its lr tuned per sample count on the same ladder"
           if numbers.reference["kind"] == "exact" else "the power law fitted to the one-epoch rows, extrapolated")
    s.paragraphs.append(
        f"E(K, N) = N' / N: the fresh samples N' that one pass needs to reach the loss of K epochs over N samples, "
        f"each with the lr of lowest seed-mean loss (Lyu's slides, seeds/003). The one-pass curve is {how}. "
        "Muennighoff et al.'s E = 1 + R* (1 - exp(-(K - 1) / R*)) has one R* for every N; fitted per N below, it "
        "is not one number."
    )
    headline = _headline(analysis)
    if headline:
        s.headline.append(headline)


def _reuse_table(analysis: ReuseAnalysis) -> Table:
    table = analysis.table
    ks = [k for k in sorted(table["epochs"].unique()) if np.log2(k).is_integer()] or sorted(table["epochs"].unique())
    cells = table.set_index(["unique_tokens", "epochs"])
    rows = []
    for n in sorted(table["unique_tokens"].unique()):
        rows.append([F.human(n)] + [
            fmt_ci(cells.loc[(n, k), "effective_reuse"], _ci(cells.loc[(n, k)]), 3) if (n, k) in cells.index else "–"
            for k in ks])
    return Table("Effective reuse E(K, N) [interval over seeds]", ["N"] + [f"K = {k:g}" for k in ks], rows,
                 note="Every K up to the largest is in fits.json (effective_reuse), with the lr chosen per cell.")


def _ci(row) -> tuple[float, float] | None:
    lo, hi = row["effective_reuse_lo"], row["effective_reuse_hi"]
    return None if not (np.isfinite(lo) and np.isfinite(hi)) else (lo, hi)


def _k_star_table(analysis: ReuseAnalysis) -> Table:
    th = analysis.thresholds
    levels = sorted(th["eps"].unique())
    cells = th.set_index(["unique_tokens", "eps"])
    rows = []
    for n in sorted(th["unique_tokens"].unique()):
        row = [F.human(n)]
        for eps in levels:
            r = cells.loc[(n, eps)]
            mark = {"above": "≥ ", "below": "≤ "}.get(r["censored"], "")
            row.append(mark + fmt_ci(r["k_star"], (r["k_star_lo"], r["k_star_hi"]) if np.isfinite(r["k_star_lo"]) else None, 3))
        rows.append(row)
    return Table("K*(N): where E(K, N) / K falls below 1 − eps", ["N"] + [f"eps = {e:g}" for e in levels], rows,
                 note="Interpolated in log K between the epoch counts around the crossing; ≥: not reached by the "
                      "largest K, ≤: already below at the smallest.")


def _laws_table(analysis: ReuseAnalysis) -> Table:
    rows = []
    for law in analysis.laws:
        params = ", ".join(f"{k} = {fmt_ci(v, law.ci.get(k), 3)}" for k, v in law.params.items())
        rms = float(np.sqrt(np.mean(np.square(law.residuals))))
        rows.append([fmt(law.eps), law.to_dict()["law"], params, fmt(rms, 3), str(len(law.samples))])
    return Table("K*(N) laws", ["eps", "law", "parameters", "RMS residual (epochs)", "points"], rows,
                 note="Both laws are fitted to the same points; on a few N they may fit equally well: neither is assumed.")


def _r_star_table(analysis: ReuseAnalysis) -> Table:
    rows = [[F.human(r["unique_tokens"]), fmt_ci(r["r_star"], (r["r_star_lo"], r["r_star_hi"]) if np.isfinite(r["r_star_lo"]) else None, 3)
             + (" (at the search bound: no saturation seen)" if r["at_bound"] else "")]
            for _, r in analysis.r_star.iterrows()]
    return Table("Muennighoff et al.'s R* fitted per N", ["N", "R*"], rows,
                 note="Least squares on log E over every K; their law takes one R* for all N.")


def _headline(analysis: ReuseAnalysis) -> str | None:
    table = analysis.table
    k = table.groupby("unique_tokens")["epochs"].max().min()
    at_k = table[table["epochs"] == k].sort_values("unique_tokens")
    if len(at_k) < 2:
        return None
    first, last = at_k.iloc[0], at_k.iloc[-1]
    text = (f"Reuse: E({k:g}, N) = {fmt(first['effective_reuse'], 3)} at N = {F.human(first['unique_tokens'])}, "
            f"{fmt(last['effective_reuse'], 3)} at N = {F.human(last['unique_tokens'])}")
    logs = [law for law in analysis.laws if law.law == "log"]
    if logs:
        law = max(logs, key=lambda item: item.eps)
        b = law.params["B"]
        text += (f"; K*(N) at eps {law.eps:g} = {fmt_ci(law.params['A'], law.ci.get('A'), 3)} ln N "
                 f"{'+' if b >= 0 else '−'} {fmt(abs(b), 3)}")
    return text

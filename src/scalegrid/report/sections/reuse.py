"""Section 8: multi-epoch reuse, E(K, N) / K per dataset size and K*(N) = A ln N + B."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalegrid.analysis.fitting import FitResult
from scalegrid.analysis.reuse import effective_reuse, fit_one_pass, fit_reuse_law, reuse_threshold
from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt, fmt_ci
from scalegrid.report.sections.common import Context, NoRows, part, records, train_rows

THRESHOLD_EPS = 0.05  # reuse_threshold's default: K* is the last K with E >= (1 - eps) K


@dataclass(frozen=True)
class ReuseNumbers:
    one_pass: FitResult  # fit_one_pass: L(1, N) = A / N^B + C over the one-epoch rows
    reuse: pd.DataFrame  # effective_reuse: E(K, N) per dataset size N and epochs K
    thresholds: pd.DataFrame  # reuse_threshold: K* per dataset size, and whether it is censored
    law: FitResult | None  # fit_reuse_law: K*(N) = A ln N + B; None: not fitted (see notes)
    notes: tuple[str, ...]


def section_reuse(ctx: Context, s: Section) -> None:
    numbers = reuse_numbers(ctx)
    draw_reuse(ctx, s, numbers)
    write_reuse(s, numbers)


def reuse_numbers(ctx: Context) -> ReuseNumbers:
    rows = train_rows(ctx)
    if rows.empty:
        raise NoRows("no COMPLETED training runs yet")
    if rows["epochs"].nunique() < 2:
        raise NoRows("the grid has one epoch count; reuse compares several")
    one_pass = fit_one_pass(rows)
    reuse = effective_reuse(rows, one_pass=one_pass)
    thresholds = reuse_threshold(reuse)
    notes: list[str] = []
    law = None
    with part(notes, "K*(N) law"):
        usable = thresholds[np.isfinite(thresholds["k_star"]) & ~thresholds["censored"]]
        if len(usable) < 2:
            raise NoRows(
                f"K*(N) is pinned down (below the largest epoch count tried) at {len(usable)} dataset size(s); "
                "the line in log N needs 2: add larger epoch counts"
            )
        law = fit_reuse_law(usable, **ctx.fit_kwargs)
    return ReuseNumbers(one_pass=one_pass, reuse=reuse, thresholds=thresholds, law=law, notes=tuple(notes))


def draw_reuse(ctx: Context, s: Section, numbers: ReuseNumbers) -> None:
    """Left: E(K, N) / K per dataset size, K* starred; right: K*(N) and its law."""
    sizes = sorted(numbers.reuse["unique_tokens"].unique())
    fig, (left, right) = F.new_figure(2, width=11.5, height=4.2)
    _draw_reuse_rate(left, numbers.reuse, numbers.thresholds, sizes)
    _draw_k_star(right, numbers.thresholds, numbers.law, sizes)
    s.figures.append(F.save(
        fig, ctx.out_dir, "reuse", "Multi-epoch reuse",
        "Left: E(K, N) / K, the share of K epochs over N samples that counts as fresh data (E(K, N) = N' / N "
        "from the one-pass law); K*(N), starred, is the last K above the threshold. Right: K*(N) against N "
        "and the fit A ln N + B (dashed).",
    ))


def _draw_reuse_rate(ax, reuse: pd.DataFrame, thresholds: pd.DataFrame, sizes: list) -> None:
    colors = dict(zip(sizes, F.colors(len(sizes), "viridis")))
    ks = np.array(sorted(reuse["epochs"].unique()), dtype=float)
    eps = THRESHOLD_EPS
    ax.axhline(1.0, color="#888888", linestyle=":", linewidth=1.0, label="perfect reuse (E = K)")
    ax.axhline(1.0 - eps, color="#bbbbbb", linestyle="-", linewidth=0.8, label=f"threshold E = {1 - eps:g} K")
    for n, line in reuse.groupby("unique_tokens"):
        ax.plot(line["epochs"], line["effective_reuse"] / line["epochs"], "o-", color=colors[n], markersize=3.5,
                label=f"N = {F.human(n)}")
    thr = thresholds.set_index("unique_tokens")
    for n in sizes:
        k = thr["k_star"].get(n, np.nan)
        if np.isfinite(k):
            e = reuse[(reuse["unique_tokens"] == n) & (reuse["epochs"] == k)]["effective_reuse"].to_numpy()[:1] / k
            ax.plot([k], e, marker="*", markersize=11, color=colors[n], markeredgecolor="black",
                    markeredgewidth=0.6, linestyle="none")
    F.log2_x_axis(ax, ks, "epochs K")
    ratio = (reuse["effective_reuse"] / reuse["epochs"]).to_numpy(float)
    ratio = ratio[np.isfinite(ratio)]
    ax.set_ylim(max(0.0, min(ratio.min(), 1 - eps) - 0.05) if ratio.size else 0, 1.05)
    ax.set_ylabel("reuse efficiency E(K, N) / K")
    ax.set_title("Effective reuse per epoch (star: K*)")
    ax.legend(loc="lower left", ncols=2, fontsize=7.5)


def _draw_k_star(ax, thresholds: pd.DataFrame, law: FitResult | None, sizes: list) -> None:
    finite = thresholds[np.isfinite(thresholds["k_star"])]
    cens = finite[finite["censored"]]
    unc = finite[~finite["censored"]]
    ax.plot(unc["unique_tokens"], unc["k_star"], "o", color="#1f77b4", label="K*(N)")
    if len(cens):
        ax.plot(cens["unique_tokens"], cens["k_star"], "o", mfc="white", color="#1f77b4",
                label="K*(N) ≥ (largest K tried)")
    if law is not None:
        xs = F.dense_log(min(sizes), max(sizes), extend=2.0)
        a, b = law.params["A"], law.params["B"]
        a = 0.0 if abs(a) < 1e-9 * max(1.0, abs(b)) else a  # a flat K*(N) fits a slope of float noise
        F.fit_line(ax, xs, a * np.log(xs) + b, "#1f77b4",
                   label=f"fit K* = {a:.3g} ln N {'+' if b >= 0 else '−'} {abs(b):.3g}")
    F.log_x_axis(ax, sizes, "unique samples N")
    ax.set_ylabel("K*(N) (epochs)")
    ax.set_title("Larger datasets can be repeated more")
    ax.legend(loc="upper left")


def write_reuse(s: Section, numbers: ReuseNumbers) -> None:
    one_pass, thresholds, law = numbers.one_pass, numbers.thresholds, numbers.law
    s.fits["one_pass"] = {"law": one_pass.law, **one_pass.to_dict()}
    s.fits["effective_reuse"] = records(numbers.reuse)
    s.fits["k_star"] = records(thresholds)
    if law is not None:
        s.fits["reuse_law"] = {"law": law.law, **law.to_dict()}
    s.notes.extend(numbers.notes)
    s.tables.append(Table(
        "Effective-reuse threshold per dataset size",
        ["unique samples N", "K*", "largest K tried", "censored"],
        [[F.human(r["unique_tokens"]), fmt(r["k_star"]), fmt(r["max_epochs"]), fmt(bool(r["censored"]))]
         for _, r in thresholds.iterrows()],
        note="Censored: the largest K tried still reuses effectively, so K* may be larger (left out of the fit).",
    ))
    p = one_pass.params
    s.paragraphs.append(
        f"The one-pass curve L(1, N) = {fmt(p['A'], 3)} / N^{fmt(p['B'], 3)} + {fmt(p['C'], 3)} (fitted to the "
        "one-epoch rows) turns each loss after K epochs over N samples into the number of fresh samples N' "
        "it is worth; E(K, N) = N' / N (Yan et al.; Muennighoff et al.'s effective data)."
    )
    headline = _reuse_headline(thresholds, law)
    if headline:
        s.headline.append(headline)


def _reuse_headline(thresholds: pd.DataFrame, law: FitResult | None) -> str | None:
    k_values = thresholds["k_star"].dropna().unique()
    if len(thresholds) and thresholds["censored"].all():
        return (f"Reuse: K* ≥ {fmt(thresholds['k_star'].max())} epochs at every dataset size: the largest epoch "
                "count tried still reuses the data effectively")
    if len(k_values) == 1 and len(thresholds) > 1:
        return f"Reuse: K* = {fmt(k_values[0])} epoch(s) at every dataset size tried"
    if law is None:
        return None
    slope = f"Reuse: K*(N) = {fmt_ci(law.params['A'], law.ci.get('A'), 3)} ln N + {fmt(law.params['B'], 3)}"
    return slope + " (larger datasets can be repeated more)" if law.params["A"] > 0 else slope

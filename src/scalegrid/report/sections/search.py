"""Section 4b: the locally-optimal search: each cell's walk on the epochs x weight-decay plane with
its certificate, and the optimal hyper-parameters it found against model size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalegrid.analysis.laws import power_law
from scalegrid.analysis.recipes import optimal_hparam_scaling
from scalegrid.analysis.walk import PLANE_AXES, search_outcomes, search_points
from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt, fmt_ci
from scalegrid.report.sections.common import (
    AXIS_NAMES,
    LINE_POINTS,
    Context,
    ci_of,
    NoRows,
    budget_colors,
    budget_label,
    hparam_law_table,
    part,
    records,
    size_label,
)

TRENDS = {"weight_decay": "optimal weight decay", "epochs": "optimal epochs"}
MAX_CELLS_DRAWN = 12
ENDS = {"certified": ("*", "certified"), "edge": ("s", "at a ladder's end"), "searching": ("X", "still searching"),
        "confirming": ("P", "confirming its seeds"), "diverged": ("v", "diverged")}


@dataclass(frozen=True)
class SearchNumbers:
    cells: pd.DataFrame  # search_outcomes: one row per cell (last step, steps, trials looked at)
    points: pd.DataFrame  # search_points: every point the walks looked at, on the plane's axes
    plane: tuple[str, str] | None  # the two axes drawn (x, y); None: the searches vary fewer
    laws: dict[str, pd.DataFrame]  # optimal_hparam_scaling over the certified cells, per hyper-parameter
    notes: tuple[str, ...]


def section_search(ctx: Context, s: Section) -> None:
    numbers = search_numbers(ctx)
    figure_notes = draw_search(ctx, s, numbers)
    write_search(ctx, s, numbers, figure_notes)


def search_numbers(ctx: Context) -> SearchNumbers:
    steps = ctx.inputs.search
    if steps.empty:
        raise NoRows("no search in this results directory (a spec with `search:` writes RESULTS/search/)")
    cells = search_outcomes(steps)
    points = search_points(steps)
    varied = [a for a in PLANE_AXES if points[a].nunique() > 1]
    plane = (varied[0], varied[1]) if len(varied) >= 2 else None
    notes, laws = [], {}
    certified = cells[cells["outcome"] == "certified"]
    for hparam in TRENDS:
        if points[hparam].nunique() < 2:
            continue
        with part(notes, f"Optimal {AXIS_NAMES[hparam]} against parameters"):
            if not len(certified) or certified.groupby("unique_tokens")["params"].nunique().max() < LINE_POINTS:
                raise NoRows(f"fewer than {LINE_POINTS} certified sizes at any token budget (a line through two "
                             "points is exact and says nothing)")
            enough = certified.groupby("unique_tokens").filter(
                lambda g: g["params"].nunique() >= LINE_POINTS and (g[hparam] > 0).all())
            laws[hparam] = optimal_hparam_scaling(enough, hparam=hparam, **ctx.fit_kwargs).set_index("unique_tokens")
    return SearchNumbers(cells=cells, points=points, plane=plane, laws=laws, notes=tuple(notes))


def draw_search(ctx: Context, s: Section, numbers: SearchNumbers) -> list[str]:
    notes: list[str] = []
    if numbers.plane is None:
        notes.append("Figure of the walks: skipped: the searches vary fewer than two of epochs, weight decay and learning rate.")
    else:
        with part(notes, "Figure of the walks"):
            _draw_paths(s, ctx, numbers)
    if any(numbers.cells[h].nunique() > 1 for h in TRENDS) and numbers.cells["params"].nunique() > 1:
        with part(notes, "Figure of the optimal hyper-parameters against size"):
            _draw_trends(s, ctx, numbers)
    return notes


def _draw_paths(s: Section, ctx: Context, numbers: SearchNumbers) -> None:
    x, y = numbers.plane
    cells = numbers.cells.sort_values(["unique_tokens", "params"]).head(MAX_CELLS_DRAWN)
    fig, axes = F.new_panels(len(cells), max_cols=min(3, len(cells)), panel_width=3.4, panel_height=3.0)
    floor = _floor(numbers.points[y])
    for ax, cell in zip(axes, cells.itertuples()):
        mine = numbers.points[numbers.points["cell_id"] == cell.cell_id]
        ran = mine[np.isfinite(mine["loss"])]
        ax.scatter(ran[x], ran[y].clip(lower=floor), s=14, c="#bbbbbb", zorder=1, label="run")
        lost = mine[np.isinf(mine["loss"])]
        ax.scatter(lost[x], lost[y].clip(lower=floor), s=18, marker="x", c="#c0392b", zorder=1, label="diverged or failed")
        final = mine[(mine["step"] == cell.step) & (mine["role"] == "neighbour") & np.isfinite(mine["loss"])]
        ax.scatter(final[x], final[y].clip(lower=floor), s=60, facecolors="none", edgecolors="black", linewidths=0.8,
                   zorder=2, label="last centre's neighbours")
        path = mine[mine["role"] == "centre"].drop_duplicates(["step"]).sort_values("step")
        ax.plot(path[x], path[y].clip(lower=floor), "-o", color="#1f4e79", markersize=3, linewidth=1.2, zorder=2, label="centres")
        marker, words = ENDS.get(cell.outcome, ("o", cell.outcome))
        ax.plot([getattr(cell, x)], [max(getattr(cell, y), floor)], marker, color="#e67e22", markersize=11, zorder=3,
                markeredgecolor="black", label=words)
        _plane_axes(ax, x, y, mine, floor)
        ax.set_title(f"{size_label(cell.params)}, {budget_label(cell.unique_tokens)}\n{_verdict(cell)}, loss {fmt(cell.loss)}", fontsize=9)
    F.legend_outside(fig, axes[:1])
    left_out = len(numbers.cells) - len(cells)
    s.figures.append(F.save(
        fig, ctx.out_dir, "search_paths", f"Each cell's search on the {AXIS_NAMES[x]} x {AXIS_NAMES[y]} plane",
        "Grey: every point a walk ran (its other searched axes at the centre's values); blue: the centres in the "
        f"order the walk moved through them; orange: where it ended ({', '.join(w for _, w in ENDS.values())}); "
        "ringed: the neighbours of that last centre, its certificate."
        + (f" {y.replace('_', ' ')} 0 is drawn at {floor:g}." if (numbers.points[y] == 0).any() else "")
        + (f" {left_out} more cells are in the table." if left_out > 0 else ""),
    ))


def _verdict(cell) -> str:
    """The certificate in words: 'certified (10 neighbours, none better)', '... 2 lower within seed
    noise', 'at edge (epochs+)'."""
    if cell.outcome == "certified":
        within = sum(status == "within_noise" for status in cell.neighbour_status)
        noise = f", {within} lower within seed noise" if within else ""
        return f"certified ({len(cell.neighbour_status)} neighbours, none better{noise})"
    if cell.outcome == "edge":
        return f"at edge ({', '.join(cell.edge_axes)})"
    return cell.outcome


def _seed_spread(cell) -> str:
    """The centre's seeds: '2.163 ± 0.049 (3 seeds)', or 'one seed'."""
    seeds = [] if cell.seed_losses is None else list(cell.seed_losses)
    if len(seeds) < 2:
        return "one seed"
    return f"{fmt(np.mean(seeds))} ± {fmt(np.std(seeds, ddof=1), 2)} ({len(seeds)} seeds)"


def _floor(values: pd.Series) -> float:
    """Where a value of 0 is drawn on a log axis: half the smallest positive value."""
    positive = values[values > 0]
    return float(positive.min()) / 2 if len(positive) else 1.0


def _plane_axes(ax, x: str, y: str, mine: pd.DataFrame, floor: float) -> None:
    for setter, axis in ((ax.set_xscale, x), (ax.set_yscale, y)):
        setter("log", base=2 if axis == "epochs" else 10)
    ax.set_xlabel(AXIS_NAMES[x])
    ax.set_ylabel(AXIS_NAMES[y])
    for axis_of, values in ((ax.xaxis, mine[x]), (ax.yaxis, mine[y].clip(lower=floor))):
        ticks = sorted(set(values))
        if len(ticks) <= 8:
            axis_of.set_ticks(ticks)
            axis_of.set_major_formatter(F.plain_formatter())
            axis_of.set_minor_formatter(F.NullFormatter())


def _draw_trends(s: Section, ctx: Context, numbers: SearchNumbers) -> None:
    cells = numbers.cells
    shown = [h for h in TRENDS if cells[h].nunique() > 1]
    colors = budget_colors(cells["unique_tokens"])
    fig, axes = F.new_figure(len(shown), width=4.6 * len(shown) + 1.6, height=3.6)
    xs = F.dense_log(cells["params"].min(), cells["params"].max())
    budgets = sorted(colors)
    for ax, h in zip(axes, shown):
        for d, rows in cells.groupby("unique_tokens"):
            done = rows["outcome"] == "certified"
            nudge = 1 + 0.04 * (budgets.index(d) - (len(budgets) - 1) / 2)  # budgets that agree stay visible
            ax.plot(rows.loc[done, "params"], rows.loc[done, h] * nudge, "o", color=colors[d], label=budget_label(d))
            ax.plot(rows.loc[~done, "params"], rows.loc[~done, h] * nudge, "o", color=colors[d], markerfacecolor="none")
            law = numbers.laws.get(h)
            if law is not None and d in law.index:
                r = law.loc[d]  # h* = k N^gamma: A / N^B + C with A = k, B = -gamma, C = 0
                F.fit_line(ax, xs, power_law(xs, float(r["coefficient"]), -float(r["exponent"]), 0.0), colors[d])
        F.log_x_axis(ax, cells["params"], "parameters N")
        ax.set_yscale("log", base=2 if h == "epochs" else 10)
        ax.set_yticks(sorted(v for v in cells[h].unique() if v > 0))
        ax.yaxis.set_major_formatter(F.plain_formatter())
        ax.yaxis.set_minor_formatter(F.NullFormatter())
        ax.set_ylabel(TRENDS[h])
        ax.set_title(f"{TRENDS[h].capitalize()} against parameters")
    F.legend_outside(fig, axes[:1], extra=F.style_keys(fit=r"fit $k N^{\gamma}$ (certified cells)", asymptote=None))
    s.figures.append(F.save(
        fig, ctx.out_dir, "search_optimal_hyperparameters", "Optimal weight decay and epochs found by the search",
        "Each cell's centre where its search ended: filled when certified, hollow when at a ladder's end or "
        "still searching (points nudged apart vertically where budgets agree); dashed: k N^γ fitted over the "
        "certified cells of a token budget.",
    ))


def write_search(ctx: Context, s: Section, numbers: SearchNumbers, figure_notes: list[str]) -> None:
    cells = numbers.cells
    s.notes.extend([*numbers.notes, *figure_notes])
    s.fits["search_cells"] = records(cells.drop(columns=["neighbours", "neighbour_trial_ids", "neighbour_losses",
                                                         "neighbour_status", "finished_at"], errors="ignore"))
    for h, law in numbers.laws.items():
        s.fits[f"search_optimal_{h}_scaling"] = records(law.reset_index())
        s.tables.append(hparam_law_table(law.reset_index(), h, ctx))
    counts = cells["outcome"].value_counts()
    s.tables.insert(0, _cells_table(cells))
    s.paragraphs.append(
        "Each cell (one model size and token budget, and the other axes not searched) was searched by "
        "coordinate descent: the centre and its neighbours (one ladder step up and down on each searched axis, and "
        "the diagonal steps of the axes declared coupled) are run, the centre moves to the best of them (ties to the "
        "cheaper run), until it is the best of its complete neighbourhood: certified, the paper's locally-optimal "
        "hyper-parameters, over the neighbourhood the table names. Where the centre has several seeds "
        "(`search.confirm_seeds`), its loss is their mean and a neighbour counts as better only beyond the seed "
        "noise. A centre at a ladder's end is reported as such (extend the ladder with `extend_edges`)."
    )
    s.headline.append(
        f"Search: {counts.get('certified', 0)} of {len(cells)} cells certified"
        + (f", {counts.get('edge', 0)} at a ladder's end" if counts.get("edge", 0) else "")
        + (f", {counts.get('searching', 0)} still searching" if counts.get("searching", 0) else "")
        + (f", {counts.get('confirming', 0)} confirming their seeds" if counts.get("confirming", 0) else "")
        + f", {int(cells['trials'].sum())} trials in all"
    )
    for h, law in numbers.laws.items():
        s.headline.append(_trend_headline(h, law))


def _trend(law) -> str:
    """'grows' or 'falls' when the exponent's interval excludes 0 (beyond float rounding), else ''."""
    lo, hi = law.get("exponent_lo", np.nan), law.get("exponent_hi", np.nan)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return ""
    return "grows" if lo > 1e-9 else "falls" if hi < -1e-9 else ""


def _trend_headline(hparam: str, laws: pd.DataFrame) -> str:
    """'Searched weight decay against size: grows with size at 8.19k tokens (γ = 0.92 [0.31, 1.4]);
    no trend beyond the noise at 2.05k tokens (γ = ...)': a trend is claimed only where γ's interval
    excludes 0."""
    parts = []
    for budget, law in laws.iterrows():
        gamma = fmt_ci(law["exponent"], ci_of(law, "exponent"), 2)
        trend = _trend(law)
        parts.append(f"{trend} with size at {budget_label(budget)} (γ = {gamma})" if trend
                     else f"no trend beyond the noise at {budget_label(budget)} (γ = {gamma})")
    return f"Searched {AXIS_NAMES[hparam]} against size: " + "; ".join(parts)


def _cells_table(cells: pd.DataFrame) -> Table:
    rows = []
    for c in cells.sort_values(["unique_tokens", "params"]).itertuples():
        rows.append([size_label(c.params), budget_label(c.unique_tokens), c.cell, _verdict(c), c.centre, fmt(c.loss),
                     _seed_spread(c), c.neighbourhood or "-", fmt(c.steps), fmt(c.trials)])
    return Table(
        "Each cell's search",
        ["size", "token budget", "cell", "state", "centre", "loss", "seed spread", "neighbourhood checked", "steps",
         "trials"], rows,
        note="loss: the centre's, the mean over its seeds; seed spread: its seeds' mean ± standard deviation. "
             "trials: every distinct trial the walk looked at, extra seeds included (a trial run by an earlier grid "
             "or search counts once).",
    )

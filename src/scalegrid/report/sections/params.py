"""Section 2: loss against parameters per token budget, L(N) = A / N^B + C and its asymptote;
whether loss falls with size beyond the seed noise."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scalegrid.analysis.seeds import LOWER, NOISE_UNKNOWN, orderings
from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt, fmt_ci
from scalegrid.report.sections.common import (
    DEGENERATE_MEANING,
    MIN_POINTS,
    Context,
    NoRows,
    budget_colors,
    budget_label,
    ci_note,
    ci_of,
    eval_power_law,
    law_verdict,
    loss_label,
    records,
    seed_bars,
    size_by_budget_table,
    size_label,
    sound,
    train_rows,
    with_seeds,
)
from scalegrid.report.sections.shared_fits import best_train, param_fits, seed_spread

BEST_COLUMNS = ("model", "params", "unique_tokens", "epochs", "lr", "weight_decay", "seed", "val_loss", "val_loss_sd",
                "seeds", "trial_id")


@dataclass(frozen=True)
class ParamsNumbers:
    best: pd.DataFrame  # best_runs: the best point per (model, token budget), seed means
    laws: pd.DataFrame  # param_scaling per token budget (degenerate ones included, marked); no rows when none
    orderings: pd.DataFrame  # each size against the next larger per budget: beyond the seed noise or not
    noise: float  # the pooled seed spread of single models (NaN: no point has two seeds)
    notes: tuple[str, ...]  # which laws are missing and why

    @property
    def sound(self) -> pd.DataFrame:
        """The laws that are not degenerate: the only ones drawn as laws and headlined."""
        return sound(self.laws)


def section_params(ctx: Context, s: Section) -> None:
    numbers = params_numbers(ctx)
    figure_notes = draw_params(ctx, s, numbers)
    write_params(ctx, s, numbers, figure_notes)


def params_numbers(ctx: Context) -> ParamsNumbers:
    if train_rows(ctx).empty:
        raise NoRows("no COMPLETED training runs yet")
    best = best_train(ctx)
    if best["params"].nunique() < 2:
        raise NoRows(f"every run has one model size ({F.human(best['params'].iloc[0])} parameters)",
                     fits={"best_runs": _best_run_records(best)})
    notes = []
    try:
        laws, dropped = param_fits(ctx)
    except NoRows as err:  # the measured points are still worth a figure
        laws, dropped = pd.DataFrame(columns=["unique_tokens", "A", "B", "C", "degenerate", "flags"]), []
        notes.append(f"Power laws not fitted: {err}.")
    if dropped:
        notes.append(f"Not fitted: {'; '.join(dropped)}.")
    noise = seed_spread(ctx)
    return ParamsNumbers(best=best, laws=laws, orderings=orderings(best, sd=noise), noise=noise, notes=tuple(notes))


def _best_run_records(best: pd.DataFrame) -> list[dict]:
    return records(best[[c for c in BEST_COLUMNS if c in best.columns]])


def draw_params(ctx: Context, s: Section, numbers: ParamsNumbers) -> list[str]:
    """The best runs against size per budget, with each budget's law; returns the figure's notes."""
    best, laws = numbers.best, numbers.sound
    colors = budget_colors(best["unique_tokens"])
    fig, (ax,) = F.new_figure(width=7.2, height=4.4)
    lo, hi = best["params"].min(), best["params"].max()
    xs = F.dense_log(lo / 1.3, hi, extend=4.0)
    fitted = laws.set_index("unique_tokens") if len(laws) else pd.DataFrame()
    for d, rows in best.groupby("unique_tokens"):
        c = colors[d]
        rows = rows.sort_values("params")
        joined = "o" if d in fitted.index else "o-"  # no sound law for this budget: the measured points, joined
        ax.errorbar(rows["params"], rows["val_loss"], yerr=seed_bars(rows), fmt=joined, color=c, capsize=2,
                    label=budget_label(d), zorder=3, linewidth=1.0)
        if d in fitted.index:
            row = fitted.loc[d]
            F.fit_line(ax, xs, eval_power_law(xs, row), c)
            F.asymptote(ax, float(row["C"]), c, annotate=f"{float(row['C']):.3f}")
    hidden = F.focus_ylim(ax, best["val_loss"], laws["C"] if len(laws) else [])
    F.log_x_axis(ax, best["params"] if not len(laws) else None, "parameters N")
    ax.set_ylabel(loss_label(ctx))
    bars = " Bars: the seed spread (one standard deviation) of a point trained with several seeds." if seed_bars(best) is not None else ""
    if len(laws):
        ax.set_title(r"Best point per size and token budget, with $L(N) = A/N^{B} + C$")
        keys = F.style_keys(fit=r"fit $A/N^{B} + C$", asymptote=r"asymptote $C$ ($N \to \infty$)")
        caption = ("Each point is the best point (over epochs, learning rate and weight decay; the mean of its seeds) "
                   "of one model size at one token budget; dashed: the power law fitted per budget; dotted: its "
                   "asymptote, the loss at infinite parameters, with its value at the right. A budget without a "
                   "sound law has its points joined." + bars)
    else:
        ax.set_title("Best point per size and token budget")
        keys = []
        caption = ("Each point is the best point (over epochs, learning rate and weight decay; the mean of its seeds) "
                   f"of one model size at one token budget. No law drawn: a sound one needs {MIN_POINTS} or more "
                   "sizes per budget and a loss that falls with size." + bars)
    F.legend_below(fig, ax, extra=keys, ncols=3)
    s.figures.append(F.save(fig, ctx.out_dir, "params_scaling", "Loss against parameters", caption))
    if hidden:
        return [f"Figure: {len(hidden)} asymptote(s) far below the measured losses are off the axis; see the table."]
    return []


def write_params(ctx: Context, s: Section, numbers: ParamsNumbers, figure_notes: list[str]) -> None:
    best, laws = numbers.best, numbers.laws
    s.fits["best_runs"] = _best_run_records(best)
    s.fits["power_laws"] = records(laws)
    s.fits["size_orderings"] = records(numbers.orderings)
    s.fits["seed_spread"] = numbers.noise
    s.notes.extend([*numbers.notes, *figure_notes])
    if len(laws):
        s.tables.append(Table(
            "Power law in parameters per token budget",
            ["token budget", "asymptote C", "exponent B", "coefficient A", "sizes", "verdict"],
            [[budget_label(row["unique_tokens"]), fmt_ci(row["C"], ci_of(row, "C")),
              fmt_ci(row["B"], ci_of(row, "B"), 3), fmt_ci(row["A"], ci_of(row, "A"), 3),
              fmt(row["n_points"]), law_verdict(row)] for _, row in laws.iterrows()],
            note=ci_note(ctx),
        ))
    s.tables.append(size_by_budget_table(
        best, "Best point per size and token budget",
        lambda n, d, run: f"{with_seeds(run['val_loss'], run)} ({fmt(run['epochs'])} ep, wd {run['weight_decay']:g}, lr {run['lr']:g})",
        note="Loss of the best point (best_runs: the mean over its seeds, ± their standard deviation) and its epochs, "
             "weight decay and learning rate.",
    ))
    if len(numbers.orderings):
        s.tables.append(_orderings_table(numbers))
    sound = numbers.sound
    if len(sound):
        first = sound.sort_values("unique_tokens").iloc[0]
        s.headline.append(
            f"Single-model asymptote at {budget_label(first['unique_tokens'])}: "
            f"{fmt_ci(first['C'], ci_of(first, 'C'))} (loss as parameters → ∞)"
        )
    for _, row in laws.drop(numbers.sound.index).iterrows():
        s.paragraphs.append(
            f"At {budget_label(row['unique_tokens'])} the law is degenerate ({'; '.join(row['flags'])}): the loss does "
            "not fall with parameters here, or not surely, so no asymptote is claimed; the points are drawn as measured."
        )
    s.headline.extend(_ordering_headlines(numbers.orderings))
    s.paragraphs.append(
        "For each token budget the best point of each model size is taken over every other axis of the grid (the "
        "mean of its seeds where it has several), and L(N) = A / N^B + C is fitted to those points (Huber loss on "
        f"log residuals) where there are {MIN_POINTS} sizes or more. The asymptote C is the best loss this recipe can "
        "reach with this much unique data, whatever the size. " + DEGENERATE_MEANING.format(x="parameters")
    )


def _orderings_table(numbers: ParamsNumbers) -> Table:
    rows = [[budget_label(r["unique_tokens"]), f"{size_label(r['from'])} → {size_label(r['to'])}",
             fmt(r["difference"], 3), fmt(r["stderr"], 2), _ordering_words(r["verdict"])]
            for _, r in numbers.orderings.iterrows()]
    noise = (f"seed spread {fmt(numbers.noise, 2)} (pooled over the points trained with several seeds)"
             if numbers.noise == numbers.noise else "no point has two seeds, so the seed noise is unknown")
    return Table(
        "Does the loss fall with size? Each size against the next larger", 
        ["token budget", "sizes", "loss difference", "standard error", "verdict"], rows,
        note=f"Difference: the larger size's best loss minus the smaller's; beyond noise when it exceeds 2 standard "
             f"errors of the seed noise ({noise}).",
    )


def _ordering_words(verdict: str) -> str:
    return {LOWER: "larger is better (beyond noise)", "higher": "larger is worse (beyond noise)"}.get(verdict, verdict)


def _ordering_headlines(table: pd.DataFrame) -> list[str]:
    """Per budget, whether the loss falls with size beyond the seed noise, in one line."""
    lines = []
    for d, rows in table.groupby("unique_tokens", sort=True):
        better = int((rows["verdict"] == LOWER).sum())
        if (rows["verdict"] == NOISE_UNKNOWN).all():
            verdict = "one seed per point: whether the differences exceed the seed noise is not measured"
        elif better == len(rows):
            verdict = "each larger size is better beyond seed noise"
        else:
            verdict = f"{better} of {len(rows)} steps up in size are better beyond seed noise; the others are not"
        lines.append(f"Loss against size at {budget_label(d)}: {verdict}")
    return lines

"""The report's sections: each calls the analysis library's recipes and draws what they return.

Nothing is fitted here. Every number a section shows comes from a function of
`scalegrid.analysis` (imported by name below), or is a measured loss read from the
store; this module chooses rows, draws and formats. A section whose inputs are absent is skipped
with a one-line reason; a part of a section that
cannot be made (e.g. the joint asymptote without enough sizes) becomes a note, and the rest stays.

    section            analysis functions
    1 summary          (counts and sums of the store; headlines lifted from the other sections)
    2 params           best_runs, param_scaling, power_law
    3 epochs           best_runs, optimal_hparam_scaling(hparam="epochs")
    4 hyperparameters  best_runs, local_optimality, local_optimality_neighbours,
                       optimal_hparam_scaling(hparam="weight_decay")
    5 ensembles        ensemble_scaling, joint_scaling, param_scaling, power_law
    6 data             param_scaling, joint_scaling, data_scaling, data_efficiency, power_law
    7 distillation     distillation
    8 reuse            fit_one_pass, effective_reuse, reuse_threshold, fit_reuse_law
    9 curves           best_runs (which trials to show)
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt, fmt_ci
from scalegrid.report.inputs import COMPLETED, DIVERGED, FAILED, Inputs
from scalegrid.analysis.fitting import FitInputError
from scalegrid.analysis.laws import power_law
from scalegrid.analysis.recipes import (
    best_runs,
    data_efficiency,
    data_scaling,
    distillation,
    ensemble_scaling,
    joint_scaling,
    local_optimality,
    local_optimality_neighbours,
    optimal_hparam_scaling,
    param_scaling,
)
from scalegrid.analysis.reuse import effective_reuse, fit_one_pass, fit_reuse_law, reuse_threshold

MIN_POINTS = 3  # a saturating power law A / x^B + C has three parameters
AXIS_SHORT = {"weight_decay": "wd", "epochs": "epochs", "lr": "lr"}
AXIS_NAMES = {"weight_decay": "weight decay", "epochs": "epochs", "lr": "learning rate"}


class NoRows(Exception):
    """A section's (or part's) inputs are not in the store (yet): the message is the skip reason."""


@dataclass
class Context:
    inputs: Inputs
    out_dir: Path
    bootstrap: int = 1000
    seed: int = 0
    workers: Any = None  # parallel.Workers, for the slow per-group fits
    cache: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        """Compute a shared analysis result once (an error is re-raised to every section asking)."""
        if key not in self.cache:
            try:
                self.cache[key] = ("ok", make())
            except Exception as err:  # noqa: BLE001 - replayed to each caller, who decides
                self.cache[key] = ("error", err)
        status, value = self.cache[key]
        if status == "error":
            raise value
        return value

    @property
    def fit_kwargs(self) -> dict[str, int]:
        return {"bootstrap": self.bootstrap, "seed": self.seed}


@contextmanager
def part(section: Section, label: str):
    """A part of a section: if it cannot be made, a note says why and the section goes on."""
    try:
        yield
    except NoRows as err:
        section.notes.append(f"{label}: skipped: {err}.")
    except FitInputError as err:
        section.notes.append(f"{label}: skipped: {err}")
    except Exception as err:  # noqa: BLE001 - a report never fails on one part
        F.close_all()
        _warn(f"{label} failed", err)
        section.notes.append(f"{label}: skipped: could not be made ({err.__class__.__name__}: {err}).")


def _warn(what: str, err: BaseException) -> None:
    detail = "".join(traceback.format_exception_only(type(err), err)).strip()
    print(f"scalegrid: warning: report: {what}: {detail}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Labels and small helpers


def size_label(params: float) -> str:
    return f"{F.human(params)} params"


def budget_label(tokens: float) -> str:
    return f"{F.human(tokens)} tokens"


def loss_label(ctx: Context, what: str = "validation loss") -> str:
    """The y label: cross-entropy of the language-model trainer is in nats per token."""
    trainers = set(ctx.inputs.runs["trainer"].dropna().unique()) if len(ctx.inputs.runs) else set()
    return f"{what} (nats / token)" if trainers == {"lm"} else what


def records(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict(orient="records") if frame is not None and len(frame) else []


def enough_points(frame: pd.DataFrame, by: list[str], x: str, n: int = MIN_POINTS) -> tuple[pd.DataFrame, list[dict]]:
    """Rows of the groups with at least n distinct `x` values, and the keys of the groups dropped."""
    if frame.empty:
        return frame, []
    counts = frame.groupby(by, sort=True)[x].nunique()
    keep = counts[counts >= n].index
    dropped = [dict(zip(by, k if isinstance(k, tuple) else (k,))) for k in counts[counts < n].index]
    mask = frame.set_index(by).index.isin(keep)
    return frame[mask], dropped


def describe_keys(keys: list[dict]) -> str:
    def one(key: dict) -> str:
        parts = []
        for col, value in key.items():
            if col == "unique_tokens":
                parts.append(budget_label(value))
            elif col == "params":
                parts.append(size_label(value))
            else:
                parts.append(f"{col} {value}")
        return " / ".join(parts)

    return ", ".join(one(k) for k in keys)


def ci_of(row: pd.Series | dict, name: str) -> tuple[float, float] | None:
    lo, hi = row.get(f"{name}_lo"), row.get(f"{name}_hi")
    return None if lo is None or hi is None else (lo, hi)


def train_rows(ctx: Context) -> pd.DataFrame:
    return ctx.inputs.stage("train")


def best_train(ctx: Context) -> pd.DataFrame:
    """best_runs per (model, unique_tokens), with `params` (shared by sections 2-4 and 9)."""
    return ctx.once("best", lambda: best_runs(ctx.inputs.runs))


def param_fits(ctx: Context) -> tuple[pd.DataFrame, list[dict]]:
    """param_scaling per token budget over the budgets with >= 3 sizes; and the dropped budgets."""

    def make():
        best = best_train(ctx)
        usable, dropped = enough_points(best, ["unique_tokens"], "params")
        if usable.empty:
            raise NoRows(
                f"no token budget has best runs at {MIN_POINTS} or more model sizes; "
                f"a power law in parameters needs {MIN_POINTS} sizes per budget"
            )
        fits, failed = fit_by_group(param_scaling, usable, ["unique_tokens"], ctx.fit_kwargs)
        return fits, [f"{describe_keys([k])}: fewer than {MIN_POINTS} sizes" for k in dropped] + failed

    return ctx.once("param_fits", make)


def fit_by_group(
    fit: Callable[..., pd.DataFrame], frame: pd.DataFrame, by: list[str], kwargs: dict
) -> tuple[pd.DataFrame, list[str]]:
    """One call of the recipe `fit` on every group; if the analysis refuses one group, each group
    on its own, so one bad group costs only itself. Returns the fits and why groups were left out."""
    try:
        return fit(frame, **kwargs), []
    except FitInputError as err:
        if frame.groupby(by).ngroups <= 1:
            raise NoRows(str(err)) from None
    frames, failed = [], []
    for _, rows in frame.groupby(by, sort=True):
        try:
            frames.append(fit(rows, **kwargs))
        except FitInputError as err:
            failed.append(str(err))
    if not frames:
        raise NoRows(f"no group could be fitted ({failed[0]})")
    return pd.concat(frames, ignore_index=True), failed


def ensemble_inputs(ctx: Context) -> tuple[pd.DataFrame, list[dict]]:
    """The rows ensemble_scaling fits: (model, budget) pairs with an ensemble and >= 3 member
    counts (K = 1 from the train stage); and the pairs dropped for too few."""
    rows = ctx.inputs.completed
    if ctx.inputs.stage("ensemble").empty:
        raise NoRows("no ensemble runs (stage `ensemble`, `members` = K) in the store")
    rows = rows[rows["stage"].fillna("train").isin(["train", "ensemble"])].copy()
    rows["members"] = pd.to_numeric(rows["members"], errors="coerce").fillna(1)
    with_ens = rows[rows["stage"] == "ensemble"][["model", "unique_tokens"]].drop_duplicates()
    rows = rows.merge(with_ens, on=["model", "unique_tokens"])
    usable, dropped = enough_points(rows, ["model", "unique_tokens"], "members")
    if usable.empty:
        raise NoRows(f"no (model, token budget) has {MIN_POINTS} or more member counts K (K = 1: its best single run)")
    return usable, [f"{describe_keys([k])}: fewer than {MIN_POINTS} member counts" for k in dropped]


def start_ensemble_fits(ctx: Context) -> None:
    """Send the ensemble laws (one fit per size and budget: the slowest part) to the workers now,
    sliced by token budget, so they are fitted while the first sections draw."""
    if "ensemble_futures" in ctx.cache or ctx.workers is None or ctx.workers.workers == 0:
        return
    try:
        usable, dropped = ensemble_inputs(ctx)
    except NoRows:
        return
    from scalegrid.report.parallel import split_by

    slices = split_by(usable, "unique_tokens", ctx.workers.workers)
    futures = [ctx.workers.submit("ensemble_scaling", rows, **ctx.fit_kwargs) for rows in slices]
    ctx.cache["ensemble_futures"] = (futures, slices, dropped)


def ensemble_fits(ctx: Context) -> tuple[pd.DataFrame, list[dict]]:
    """ensemble_scaling per (model, token budget); the same rows whether sliced or not."""

    def make():
        start_ensemble_fits(ctx)
        by = ["model", "unique_tokens"]
        if "ensemble_futures" not in ctx.cache:  # no workers: one call here
            usable, dropped = ensemble_inputs(ctx)
            fits, failed = fit_by_group(ensemble_scaling, usable, by, ctx.fit_kwargs)
            return fits, dropped + failed
        futures, slices, dropped = ctx.cache["ensemble_futures"]
        frames, failed = [], []
        for future, rows in zip(futures, slices):
            try:
                frames.append(future.result())
            except FitInputError:  # a group the analysis refuses: fit this slice group by group
                try:
                    fits, why = fit_by_group(ensemble_scaling, rows, by, ctx.fit_kwargs)
                    frames.append(fits)
                    failed += why
                except NoRows as err:
                    failed.append(str(err))
        if not frames:
            raise NoRows(f"no ensemble law could be fitted ({failed[0]})")
        fits = pd.concat(frames, ignore_index=True).sort_values(by, kind="stable")
        return fits.reset_index(drop=True), dropped + failed

    return ctx.once("ensemble_fits", make)


def joint_fits(ctx: Context) -> tuple[pd.DataFrame, list[dict]]:
    def make():
        ens, _ = ensemble_fits(ctx)
        usable, dropped = enough_points(ens, ["unique_tokens"], "params")
        if usable.empty:
            raise NoRows(f"the joint asymptote needs ensemble laws at {MIN_POINTS} or more sizes of one token budget")
        fits, failed = fit_by_group(joint_scaling, usable, ["unique_tokens"], ctx.fit_kwargs)
        return fits, [f"{describe_keys([k])}: fewer than {MIN_POINTS} sizes" for k in dropped] + failed

    return ctx.once("joint_fits", make)


def eval_power_law(x: np.ndarray, row: pd.Series | dict) -> np.ndarray:
    return power_law(x, float(row["A"]), float(row["B"]), float(row["C"]))


def _sizes_colors(values) -> dict:
    values = sorted(set(values))
    return dict(zip(values, F.colors(len(values), "plasma")))


def _budget_colors(values) -> dict:
    values = sorted(set(values))
    return dict(zip(values, F.colors(len(values), "viridis")))


MAX_PANELS = 6


def _panel_budgets(budgets) -> tuple[list, str | None]:
    budgets = sorted(set(budgets))
    if len(budgets) <= MAX_PANELS:
        return budgets, None
    idx = np.unique(np.linspace(0, len(budgets) - 1, MAX_PANELS).round().astype(int))
    shown = [budgets[i] for i in idx]
    return shown, f"showing {len(shown)} of {len(budgets)} token budgets, evenly spaced"


# ---------------------------------------------------------------------------------------------
# 2. Loss against parameters per token budget


def section_params(ctx: Context, s: Section) -> None:
    if train_rows(ctx).empty:
        raise NoRows("no COMPLETED training runs yet")
    best = best_train(ctx)
    s.fits["best_runs"] = records(best[_best_columns(best)])
    if best["params"].nunique() < 2:
        raise NoRows(f"every run has one model size ({F.human(best['params'].iloc[0])} parameters)")
    try:
        fits, dropped = param_fits(ctx)
    except NoRows as err:  # the measured points are still worth a figure
        fits, dropped = pd.DataFrame(columns=["unique_tokens", "A", "B", "C"]), []
        s.notes.append(f"Power laws not fitted: {err}.")
    s.fits["power_laws"] = records(fits)
    if dropped:
        s.notes.append(f"Not fitted: {'; '.join(dropped)}.")

    colors = _budget_colors(best["unique_tokens"])
    fig, (ax,) = F.new_figure(width=7.2, height=4.4)
    lo, hi = best["params"].min(), best["params"].max()
    xs = F.dense_log(lo / 1.3, hi, extend=4.0)
    fitted = fits.set_index("unique_tokens") if len(fits) else pd.DataFrame()
    for d, rows in best.groupby("unique_tokens"):
        c = colors[d]
        rows = rows.sort_values("params")
        if d in fitted.index:
            ax.plot(rows["params"], rows["val_loss"], "o", color=c, label=budget_label(d), zorder=3)
            row = fitted.loc[d]
            F.fit_line(ax, xs, eval_power_law(xs, row), c)
            F.asymptote(ax, float(row["C"]), c, annotate=f"{float(row['C']):.3f}")
        else:  # no law for this budget: the measured points, joined
            ax.plot(rows["params"], rows["val_loss"], "o-", color=c, label=budget_label(d), zorder=3, linewidth=1.0)
    hidden = F.focus_ylim(ax, best["val_loss"], fits["C"] if len(fits) else [])
    if hidden:
        s.notes.append(f"Figure: {len(hidden)} asymptote(s) far below the measured losses are off the axis; see the table.")
    F.log_x_axis(ax, best["params"] if not len(fits) else None, "parameters N")
    ax.set_ylabel(loss_label(ctx))
    if len(fits):
        ax.set_title(r"Best run per size and token budget, with $L(N) = A/N^{B} + C$")
        keys = F.style_keys(fit=r"fit $A/N^{B} + C$", asymptote=r"asymptote $C$ ($N \to \infty$)")
        caption = ("Each point is the best run (over epochs, learning rate and weight decay) of one model size at "
                   "one token budget; dashed: the power law fitted per budget; dotted: its asymptote, the loss at "
                   "infinite parameters, with its value at the right.")
    else:
        ax.set_title("Best run per size and token budget")
        keys = []
        caption = ("Each point is the best run (over epochs, learning rate and weight decay) of one model size at "
                   f"one token budget. No power law: that needs {MIN_POINTS} or more sizes per budget.")
    F.legend_below(fig, ax, extra=keys, ncols=3)
    s.figures.append(F.save(fig, ctx.out_dir, "params_scaling", "Loss against parameters", caption))

    table_rows = []
    for _, row in fits.iterrows():
        table_rows.append([
            budget_label(row["unique_tokens"]), fmt_ci(row["C"], ci_of(row, "C")),
            fmt_ci(row["B"], ci_of(row, "B"), 3), fmt_ci(row["A"], ci_of(row, "A"), 3),
            fmt(row["n_points"]), fmt(bool(row["converged"])),
        ])
    if table_rows:
        s.tables.append(Table(
            "Power law in parameters per token budget",
            ["token budget", "asymptote C", "exponent B", "coefficient A", "sizes", "converged"],
            table_rows, note=_ci_note(ctx),
        ))
    budgets_all = sorted(best["unique_tokens"].unique())
    grid_rows = []
    for n, rows_n in best.groupby("params", sort=True):
        at = rows_n.set_index("unique_tokens")
        grid_rows.append([size_label(n)] + [
            f"{fmt(at.loc[d, 'val_loss'])} ({fmt(at.loc[d, 'epochs'])} ep, wd {at.loc[d, 'weight_decay']:g}, "
            f"lr {at.loc[d, 'lr']:g})" if d in at.index else "-" for d in budgets_all
        ])
    s.tables.append(Table(
        "Best run per size and token budget", ["size"] + [budget_label(d) for d in budgets_all], grid_rows,
        note="Loss of the best run (best_runs) and its epochs, weight decay and learning rate.",
    ))
    if len(fits):
        first = fits.sort_values("unique_tokens").iloc[0]
        s.headline.append(
            f"Single-model asymptote at {budget_label(first['unique_tokens'])}: "
            f"{fmt_ci(first['C'], ci_of(first, 'C'))} (loss as parameters → ∞)"
        )
    s.paragraphs.append(
        "For each token budget the best run of each model size is taken over every other axis of the grid, "
        "and L(N) = A / N^B + C is fitted to those points (Huber loss on log residuals). The asymptote C "
        "is the best loss this recipe can reach with this much unique data, whatever the size."
    )


def _best_columns(best: pd.DataFrame) -> list[str]:
    wanted = ["model", "params", "unique_tokens", "epochs", "lr", "weight_decay", "seed", "val_loss", "trial_id"]
    return [c for c in wanted if c in best.columns]


def _ci_note(ctx: Context) -> str:
    if ctx.bootstrap:
        return f"Brackets: 95% percentile bootstrap intervals ({ctx.bootstrap} resamples)."
    return "No intervals: bootstrap disabled."


# ---------------------------------------------------------------------------------------------
# 3. Loss against epochs


def section_epochs(ctx: Context, s: Section) -> None:
    rows = train_rows(ctx)
    if rows.empty:
        raise NoRows("no COMPLETED training runs yet")
    if rows["epochs"].nunique() < 2:
        raise NoRows(f"every run has {rows['epochs'].iloc[0]} epochs; the grid needs two or more epoch counts")
    best = best_train(ctx)
    budgets, note = _panel_budgets(rows["unique_tokens"])
    if note:
        s.notes.append(f"Figure: {note}.")
    sizes = _sizes_colors(rows["params"])
    # measured points: the lowest loss per (size, budget, epochs) over lr, weight decay and seed
    cells = rows.groupby(["params", "unique_tokens", "epochs"], sort=True)["val_loss"].min().reset_index()
    fig, axes = F.new_panels(len(budgets))
    for ax, d in zip(axes, budgets):
        for n, line in cells[cells["unique_tokens"] == d].groupby("params"):
            ax.plot(line["epochs"], line["val_loss"], "o-", color=sizes[n], label=size_label(n), markersize=4)
            at = best[(best["params"] == n) & (best["unique_tokens"] == d)]
            if len(at):
                ax.plot(at["epochs"], at["val_loss"], marker="*", markersize=12, color=sizes[n],
                        markeredgecolor="black", markeredgewidth=0.6, linestyle="none", zorder=4)
        F.log2_x_axis(ax, cells["epochs"], "epochs over the unique tokens")
        ax.set_ylabel(loss_label(ctx))
        ax.set_title(budget_label(d))
    from matplotlib.lines import Line2D

    star = Line2D([], [], marker="*", markersize=10, color="#888888", markeredgecolor="black",
                  markeredgewidth=0.6, linestyle="none", label="best run of the size")
    F.legend_outside(fig, axes, extra=[star])
    s.figures.append(F.save(
        fig, ctx.out_dir, "epochs", "Loss against epochs",
        "One panel per token budget; each line is one model size, each point the best run at that epoch "
        "count (over learning rate and weight decay). The star marks the size's best run: beyond it, "
        "repeating the data stops helping.",
    ))

    first_k = cells["epochs"].min()
    one_epoch = cells[cells["epochs"] == first_k].set_index(["params", "unique_tokens"])["val_loss"]
    budgets_all = sorted(best["unique_tokens"].unique())
    table_rows = []
    for n, rows_n in best.groupby("params", sort=True):
        at = rows_n.set_index("unique_tokens")
        row = [size_label(n)]
        for d in budgets_all:
            if d not in at.index:
                row.append("-")
                continue
            b = at.loc[d]
            gain = one_epoch.get((n, d), np.nan) - float(b["val_loss"])
            row.append(f"{fmt(b['epochs'])} ep ({fmt(-gain, 3) if np.isfinite(gain) else 'n/a'})")
        table_rows.append(row)
    s.tables.append(Table(
        "Where repetition stops helping: best epochs per size and token budget",
        ["size"] + [budget_label(d) for d in budgets_all], table_rows,
        note=f"Each cell: the epoch count of the best run (best_runs) and, in brackets, its loss minus the best loss "
             f"at {fmt(first_k)} epoch(s). A best at the largest epoch count tried means more epochs might still help.",
    ))
    s.fits["best_epochs"] = records(best[[c for c in ("model", "params", "unique_tokens", "epochs", "val_loss") if c in best]])
    with part(s, "Optimal epochs against parameters"):
        law = hparam_law(ctx, "epochs")
        s.fits["optimal_epochs_scaling"] = records(law)
        s.tables.append(_hparam_law_table(law, "epochs", ctx))


def hparam_law(ctx: Context, hparam: str) -> pd.DataFrame:
    """optimal_hparam_scaling of `hparam` over the best runs, per token budget (>= 2 sizes)."""

    def make():
        best = best_train(ctx)
        usable, _ = enough_points(best, ["unique_tokens"], "params", n=MIN_POINTS)
        if usable.empty:  # a line through two points has no error to speak of
            raise NoRows(f"a trend in size needs best runs at {MIN_POINTS} or more sizes of one token budget")
        return optimal_hparam_scaling(usable, hparam=hparam, **ctx.fit_kwargs)

    return ctx.once(f"hparam_law:{hparam}", make)


def _hparam_law_table(law: pd.DataFrame, hparam: str, ctx: Context) -> Table:
    rows = [
        [budget_label(r["unique_tokens"]), fmt_ci(r["exponent"], ci_of(r, "exponent"), 3),
         fmt_ci(r["coefficient"], ci_of(r, "coefficient"), 3), fmt(r["n_points"])]
        for _, r in law.iterrows()
    ]
    return Table(
        f"Optimal {hparam.replace('_', ' ')} against parameters: {hparam}* = k N^γ",
        ["token budget", "exponent γ", "coefficient k", "sizes"], rows,
        note="Least squares in log-log over the best run of each size. " + _ci_note(ctx),
    )


# ---------------------------------------------------------------------------------------------
# 4. Weight decay and learning rate


def section_hyperparameters(ctx: Context, s: Section) -> None:
    rows = train_rows(ctx)
    if rows.empty:
        raise NoRows("no COMPLETED training runs yet")
    varied = [a for a in ("weight_decay", "lr") if rows[a].nunique() > 1]
    if not varied:
        raise NoRows("the grid has one weight decay and one learning rate; nothing to compare")
    best = best_train(ctx)
    budgets, note = _panel_budgets(rows["unique_tokens"])
    if note:
        s.notes.append(f"Figures: {note}.")
    sizes = _sizes_colors(rows["params"])
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
        s.tables.append(_hparam_law_table(law, "weight_decay", ctx))
    with part(s, "Figure of the optimal hyper-parameters against parameters"):
        _optimal_hparam_figure(ctx, s, best)


def _optimal_hparam_figure(ctx: Context, s: Section, best: pd.DataFrame) -> None:
    """Optimal weight decay and epochs of each size's best run, with the fitted k N^gamma."""
    shown = [(h, label) for h, label in (("weight_decay", "optimal weight decay"), ("epochs", "optimal epochs"))
             if train_rows(ctx)[h].nunique() > 1]
    if not shown or best["params"].nunique() < 2:
        return  # one size says nothing about a trend in size
    colors = _budget_colors(best["unique_tokens"])
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


# ---------------------------------------------------------------------------------------------
# 5. Ensembles


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
    budgets, note = _panel_budgets(ens["unique_tokens"])
    if note:
        s.notes.append(f"Figure: {note}.")
    sizes = _sizes_colors(ens["params"])
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
             + _ci_note(ctx),
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
        colors = _budget_colors(ens["unique_tokens"])
        fig, (ax,) = F.new_figure(width=7.2, height=4.4)
        xs = F.dense_log(ens["params"].min() / 1.3, ens["params"].max(), extend=4.0)
        jfit = joint.set_index("unique_tokens")
        for i, (d, rows_d) in enumerate(ens.groupby("unique_tokens")):
            c = colors[d]
            yerr = _yerr(rows_d, "C")
            ax.errorbar(rows_d["params"] * _dodge(i, len(colors)), rows_d["C"], yerr=yerr, fmt="o", color=c,
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
            table_rows, note=_ci_note(ctx),
        ))
        if len(joint):
            first = joint.sort_values("unique_tokens").iloc[0]
            s.headline.append(
                f"Joint (parameters x members) asymptote at {budget_label(first['unique_tokens'])}: "
                f"{fmt_ci(first['C'], ci_of(first, 'C'))}"
            )


def _dodge(i: int, n: int, step: float = 0.03) -> float:
    """A small multiplicative x offset for series i of n on a log axis, so error bars do not overlap."""
    return float(np.exp(step * (i - (n - 1) / 2)))


def _yerr(rows: pd.DataFrame, name: str):
    lo, hi = rows.get(f"{name}_lo"), rows.get(f"{name}_hi")
    if lo is None or hi is None or not np.isfinite(lo).all() or not np.isfinite(hi).all():
        return None
    return np.vstack([np.maximum(rows[name] - lo, 0), np.maximum(hi - rows[name], 0)])


# ---------------------------------------------------------------------------------------------
# 6. Data scaling


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
        ax.errorbar(frame["unique_tokens"] * _dodge(i, len(recipes)), frame["C"], yerr=_yerr(frame, "C"), fmt="o",
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
        note=_ci_note(ctx),
    ))


# ---------------------------------------------------------------------------------------------
# 7. Distillation


def section_distillation(ctx: Context, s: Section) -> None:
    if ctx.inputs.stage("distill").empty:
        raise NoRows("no distillation runs (stage `distill`) in the store")
    table = distillation(ctx.inputs.runs)
    if table.empty:
        raise NoRows("distilled students have no matching single-model and ensemble (teacher) runs")
    s.fits["retention"] = records(table)
    params_of = ctx.inputs.completed.groupby("model")["params"].first()
    table = table.sort_values(["model", "unique_tokens"])
    fig, axes = F.new_figure(2, width=11.5, height=4.0)
    ax = axes[0]
    series = (("single model", "loss_single", "#1f77b4", "o"), ("teacher ensemble", "loss_teacher", "#d62728", "s"),
              ("distilled student", "loss_student", "#2ca02c", "D"))
    models = list(table["model"].unique())
    for label, col, c, marker in series:
        for i, (model, rows) in enumerate(table.groupby("model", sort=False)):
            ax.plot(rows["unique_tokens"], rows[col], marker=marker, color=c, linestyle="-" if i == 0 else "-.",
                    label=label if i == 0 else None)
    F.log_x_axis(ax, table["unique_tokens"], "unique tokens D")
    ax.set_ylabel(loss_label(ctx))
    ax.set_title("Student against teacher and single model"
                 + (f" ({models[0]}, {F.human(params_of.get(models[0], np.nan))} params)" if len(models) == 1 else ""))
    ax.legend(loc="upper right")
    ax = axes[1]
    ax.bar(range(len(table)), table["retention"] * 100, color="#2ca02c", alpha=0.85)
    ax.set_xticks(range(len(table)))
    ax.set_xticklabels([f"{F.human(d)}" + ("" if len(models) == 1 else f"\n{m}") for m, d in
                        zip(table["model"], table["unique_tokens"])], fontsize=8)
    ax.axhline(100, color="#999999", linewidth=0.8)
    for i, r in enumerate(table["retention"]):
        ax.annotate(f"{r * 100:.0f}%", (i, r * 100), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
    ax.set_xlabel("unique tokens D")
    ax.set_ylabel("retention of the ensemble gain (%)")
    ax.set_title("Retention (L_single − L_student) / (L_single − L_teacher)")
    s.figures.append(F.save(
        fig, ctx.out_dir, "distillation", "Distillation retention",
        "Left: a single model, the ensemble teacher of that size and the student distilled from it, per "
        "token budget. Right: the share of the ensemble's gain over the single model the student keeps.",
    ))
    s.tables.append(Table(
        "Distillation retention",
        ["student", "token budget", "teacher members", "single model", "teacher", "student", "retention"],
        [[f"{r['model']}", budget_label(r["unique_tokens"]), fmt(r.get("members")), fmt(r["loss_single"]),
          fmt(r["loss_teacher"]), fmt(r["loss_student"]), f"{r['retention'] * 100:.1f}%"]
         for _, r in table.iterrows()],
    ))
    lo, hi = table["retention"].min() * 100, table["retention"].max() * 100
    span = f"{lo:.0f}%" if round(lo) == round(hi) else f"{lo:.0f}–{hi:.0f}%"
    s.headline.append(f"Distilled students keep {span} of the ensemble's gain ({len(table)} student(s))")


# ---------------------------------------------------------------------------------------------
# 8. Multi-epoch reuse


def section_reuse(ctx: Context, s: Section) -> None:
    rows = train_rows(ctx)
    if rows.empty:
        raise NoRows("no COMPLETED training runs yet")
    if rows["epochs"].nunique() < 2:
        raise NoRows("the grid has one epoch count; reuse compares several")
    one_pass = fit_one_pass(rows)
    reuse = effective_reuse(rows, one_pass=one_pass)
    thresholds = reuse_threshold(reuse)
    s.fits["one_pass"] = {"law": one_pass.law, **one_pass.to_dict()}
    s.fits["effective_reuse"] = records(reuse)
    s.fits["k_star"] = records(thresholds)
    law = None
    with part(s, "K*(N) law"):
        usable = thresholds[np.isfinite(thresholds["k_star"]) & ~thresholds["censored"]]
        if len(usable) < 2:
            raise NoRows(
                f"K*(N) is pinned down (below the largest epoch count tried) at {len(usable)} dataset size(s); "
                "the line in log N needs 2: add larger epoch counts"
            )
        law = fit_reuse_law(usable, **ctx.fit_kwargs)
        s.fits["reuse_law"] = {"law": law.law, **law.to_dict()}

    sizes = sorted(reuse["unique_tokens"].unique())
    colors = dict(zip(sizes, F.colors(len(sizes), "viridis")))
    fig, axes = F.new_figure(2, width=11.5, height=4.2)
    ax = axes[0]
    ks = np.array(sorted(reuse["epochs"].unique()), dtype=float)
    eps = 0.05  # reuse_threshold's default: K* is the last K with E >= (1 - eps) K
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

    ax = axes[1]
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
    s.figures.append(F.save(
        fig, ctx.out_dir, "reuse", "Multi-epoch reuse",
        "Left: E(K, N) / K, the share of K epochs over N samples that counts as fresh data (E(K, N) = N' / N "
        "from the one-pass law); K*(N), starred, is the last K above the threshold. Right: K*(N) against N "
        "and the fit A ln N + B (dashed).",
    ))
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
    k_values = thresholds["k_star"].dropna().unique()
    if len(thresholds) and thresholds["censored"].all():
        s.headline.append(
            f"Reuse: K* ≥ {fmt(thresholds['k_star'].max())} epochs at every dataset size: the largest epoch "
            "count tried still reuses the data effectively"
        )
    elif len(k_values) == 1 and len(thresholds) > 1:
        s.headline.append(f"Reuse: K* = {fmt(k_values[0])} epoch(s) at every dataset size tried")
    elif law is not None:
        s.headline.append(
            f"Reuse: K*(N) = {fmt_ci(law.params['A'], law.ci.get('A'), 3)} ln N + {fmt(law.params['B'], 3)} "
            "(larger datasets can be repeated more)" if law.params["A"] > 0 else
            f"Reuse: K*(N) = {fmt_ci(law.params['A'], law.ci.get('A'), 3)} ln N + {fmt(law.params['B'], 3)}"
        )


# ---------------------------------------------------------------------------------------------
# 9. Learning curves


MAX_CURVES = 8


def section_curves(ctx: Context, s: Section) -> None:
    curves = ctx.inputs.curves
    if curves.empty:
        raise NoRows("no learning curves in the store (RESULTS/curves)")
    runs = ctx.inputs.runs.drop_duplicates("trial_id").set_index("trial_id")
    have = [t for t in curves["trial_id"].unique() if t in runs.index]
    if not have:
        raise NoRows("the stored curves belong to no run in the store")
    chosen = choose_curves(ctx, have, runs)
    s.fits["trials"] = chosen
    picked = curves[curves["trial_id"].isin(chosen)].sort_values(["trial_id", "step"])
    colors = dict(zip(chosen, F.colors(len(chosen), "tab10" if len(chosen) <= 10 else "viridis")))
    fig, axes = F.new_figure(2, width=11.5, height=4.2)
    x = "tokens_seen" if picked["tokens_seen"].notna().any() and (picked["tokens_seen"] > 0).any() else "step"
    for tid in chosen:
        line = picked[picked["trial_id"] == tid]
        r = runs.loc[tid]
        label = trial_label(r)
        valid = line[line[x] > 0] if x == "tokens_seen" else line
        marker = "o" if len(valid) < 4 else None  # a curve of one or two evaluations is still seen
        axes[0].plot(valid[x], valid["val_loss"], color=colors[tid], label=label, marker=marker, markersize=4)
        axes[1].plot(valid[x], valid["train_loss"], color=colors[tid], label=label, alpha=0.9, marker=marker, markersize=4)
    for ax, what in zip(axes, ("validation loss", "training loss")):
        if x == "tokens_seen":
            F.log_x_axis(ax, None, "tokens seen")
        else:
            ax.set_xlabel("step")
        ax.set_ylabel(loss_label(ctx, what))
    axes[0].set_title("Validation loss during training")
    axes[1].set_title("Training loss during training")
    _clip_y(axes, picked)
    F.legend_outside(fig, axes[:1])
    s.figures.append(F.save(
        fig, ctx.out_dir, "curves", "Learning curves",
        "The learning curves of the chosen trials: the best run of each token budget, and for contrast the "
        "worst run and the run with the most epochs (of the runs with stored curves).",
    ))
    s.tables.append(Table(
        "Trials shown", ["trial", "size", "token budget", "epochs", "lr", "weight decay", "status", "final val loss"],
        [[tid[:12], size_label(runs.loc[tid, "params"]), budget_label(runs.loc[tid, "unique_tokens"]),
          fmt(runs.loc[tid, "epochs"]), f"{runs.loc[tid, 'lr']:g}", f"{runs.loc[tid, 'weight_decay']:g}",
          str(runs.loc[tid, "status"]), fmt(runs.loc[tid, "val_loss"])] for tid in chosen],
    ))


def choose_curves(ctx: Context, have: list[str], runs: pd.DataFrame) -> list[str]:
    """Up to MAX_CURVES trials with curves: per token budget the best, then the worst overall."""
    with_curves = runs.loc[have].reset_index()
    ok = with_curves[with_curves["status"] == COMPLETED]
    chosen: list[str] = []
    if len(ok):
        for _, rows in ok.groupby("unique_tokens", sort=True):
            chosen.append(rows.sort_values(["val_loss", "trial_id"]).iloc[0]["trial_id"])
        worst = ok.sort_values(["val_loss", "trial_id"]).iloc[-1]["trial_id"]
        most_epochs = ok.sort_values(["epochs", "val_loss", "trial_id"]).iloc[-1]["trial_id"]
        for tid in (worst, most_epochs):  # contrast: the worst run, and the most repeated one
            if tid not in chosen:
                chosen.append(tid)
    for tid in sorted(have):  # failed or diverged runs' curves show what went wrong
        if len(chosen) >= MAX_CURVES:
            break
        if tid not in chosen and runs.loc[tid, "status"] in (FAILED, DIVERGED):
            chosen.append(tid)
    return chosen[:MAX_CURVES]


def trial_label(r: pd.Series) -> str:
    bits = [F.human(r["params"]), f"{F.human(r['unique_tokens'])} tok", f"{r['epochs']} ep"]
    if pd.notna(r.get("weight_decay")):
        bits.append(f"wd {r['weight_decay']:g}")
    if r.get("status") != COMPLETED:
        bits.append(str(r.get("status")))
    return " · ".join(bits)


def _clip_y(axes, picked: pd.DataFrame) -> None:
    """Start-of-training losses dwarf the end; show from the lowest loss to a bit above the finals.
    Losses spanning decades (regression losses going to zero) get a log axis instead."""
    for ax, col in zip(axes, ("val_loss", "train_loss")):
        values = picked[col].to_numpy(float)
        values = values[np.isfinite(values)]
        if values.size and values.min() > 0 and values.max() / values.min() > 30:
            ax.set_yscale("log")
        elif values.size:
            finals = picked.groupby("trial_id")[col].last().to_numpy(float)
            finals = finals[np.isfinite(finals)]
            lo = values.min()
            hi = max(finals.max() if finals.size else lo, lo)
            pad = max(hi - lo, 0.05)
            ax.set_ylim(lo - 0.1 * pad, hi + 1.5 * pad)


# ---------------------------------------------------------------------------------------------
# 1. Summary (built last: it lifts the other sections' headlines)


def section_summary(ctx: Context, s: Section, others: list[Section]) -> None:
    runs = ctx.inputs.runs
    s.fits["trials"] = int(len(runs))
    if runs.empty:
        s.paragraphs.append("The store holds no runs yet: every section below is skipped.")
        s.fits["trials_by_status"] = {}
        return
    stage = runs["stage"].fillna("train")
    by_status = pd.crosstab(stage, runs["status"].fillna("?"))
    s.fits["trials_by_status"] = {st: {k: int(v) for k, v in row.items() if v} for st, row in by_status.iterrows()}
    pending = ctx.inputs.pending
    statuses = list(by_status.columns)
    table_rows = []
    for st, row in by_status.iterrows():
        table_rows.append([st] + [fmt(int(row[c])) for c in statuses]
                          + [fmt(sum(pending.values())) if st == "train" and pending else "-"] + [fmt(int(row.sum()))])
    s.tables.append(Table("Trials by stage and status", ["stage"] + statuses + ["no result yet", "total"], table_rows))
    if pending:
        s.fits["pending"] = pending

    train = runs[stage == "train"]
    grid = []
    for col, label, show in (
        ("model", "models", lambda v: str(v)),
        ("params", "parameters", lambda v: F.human(v)),
        ("unique_tokens", "unique tokens", lambda v: F.human(v)),
        ("epochs", "epochs", lambda v: f"{v:g}"),
        ("lr", "learning rates", lambda v: f"{v:g}"),
        ("weight_decay", "weight decays", lambda v: f"{v:g}"),
        ("seed", "seeds", lambda v: f"{v:g}"),
    ):
        values = sorted(train[col].dropna().unique()) if col in train else []
        if values:
            grid.append([label, fmt(len(values)), ", ".join(show(v) for v in values[:12]) + (" …" if len(values) > 12 else "")])
    members = sorted(pd.to_numeric(runs.loc[stage == "ensemble", "members"], errors="coerce").dropna().unique())
    if members:
        grid.append(["ensemble members", fmt(len(members)), ", ".join(f"{m:g}" for m in members)])
    sweeps = sorted(runs["sweep"].dropna().unique())
    trainers = sorted(runs["trainer"].dropna().unique())
    s.paragraphs.append(
        f"{len(runs):,} trials in {len(sweeps)} sweep(s) ({', '.join(sweeps)}), trainer(s) {', '.join(trainers)}."
    )
    s.tables.append(Table("The grid (training runs)", ["axis", "count", "values"], grid))

    flops = pd.to_numeric(runs["flops"], errors="coerce")
    wall = pd.to_numeric(runs["wall_s"], errors="coerce")
    tokens = pd.to_numeric(runs["tokens_seen"], errors="coerce")
    compute = {
        "flops": float(flops.sum(min_count=1)) if flops.notna().any() else None,
        "wall_hours": float(wall.sum() / 3600) if wall.notna().any() else None,
        "tokens_seen": float(tokens.sum()) if tokens.notna().any() else None,
        "failed_wall_hours": float(wall[runs["status"] == FAILED].sum() / 3600) if wall.notna().any() else None,
    }
    s.fits["compute"] = compute
    s.tables.append(Table("Compute spent", ["quantity", "total"], [
        ["training FLOPs", f"{compute['flops']:.3g}" if compute["flops"] else "n/a"],
        ["tokens seen", F.human(compute["tokens_seen"]) if compute["tokens_seen"] else "n/a"],
        ["trial wall-clock", f"{compute['wall_hours']:.3g} h" if compute["wall_hours"] is not None else "n/a"],
        ["of which in FAILED trials", f"{compute['failed_wall_hours']:.3g} h" if compute["failed_wall_hours"] is not None else "n/a"],
    ], note="Wall-clock is summed over trials (device-hours when each trial holds one device)."))
    if "finished_at" in runs and runs["finished_at"].notna().any():
        s.fits["last_finished_at"] = runs["finished_at"].max().isoformat()

    headlines = [h for other in others for h in other.headline]
    s.headline.extend(headlines)
    s.fits["headline"] = headlines
    if not headlines:
        s.paragraphs.append("No headline numbers yet: the sections below say what each one needs.")

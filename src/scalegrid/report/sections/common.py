"""What every section shares: the report's context, how a section or a part of one is
skipped, axis and table labels, and small helpers over the analysis library's tables.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalegrid.analysis.least_squares import FitInputError
from scalegrid.analysis.laws import power_law
from scalegrid.analysis.seeds import seed_points
from scalegrid.report import figures as F
from scalegrid.payloads import JsonObject
from scalegrid.report.document import Table, fmt, fmt_ci
from scalegrid.report.inputs import Inputs

MIN_POINTS = 4  # A / x^B + C has three free parameters: three points fit it exactly, a fourth tests it
LINE_POINTS = 3  # a line (k N^gamma in log-log) has two
AXIS_SHORT = {"weight_decay": "wd", "epochs": "epochs", "lr": "lr"}
AXIS_NAMES = {"weight_decay": "weight decay", "epochs": "epochs", "lr": "learning rate"}
MAX_PANELS = 6  # token budgets shown side by side in one figure


# ---------------------------------------------------------------------------------------------
# How a section, or a part of one, is made or skipped


class NoRows(Exception):
    """A section's (or part's) inputs are not in the store (yet): the message is the skip reason.

    `fits` and `notes`: what the section found before it had to stop (e.g. the best runs of a grid
    with one model size); a skipped section still shows them in fits.json."""

    def __init__(self, reason: str, *, fits: JsonObject | None = None, notes: Sequence[str] = ()):
        super().__init__(reason)
        self.fits = dict(fits or {})
        self.notes = list(notes)


@dataclass
class Context:
    """What every section is made from: the inputs, where figures go, how laws are fitted, the
    worker processes, and the analysis results several sections share (`once`)."""

    inputs: Inputs
    out_dir: Path
    bootstrap: int = 1000
    seed: int = 0
    workers: Any = None  # parallel.Workers, for the slow per-group fits
    cache: dict[str, object] = field(default_factory=dict)  # shared results by key (`once`), the ensemble fits in flight

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
def part(notes: list[str], label: str):
    """A part of a section: if it cannot be made, `notes` gets why and the section goes on."""
    try:
        yield
    except NoRows as err:
        notes.append(f"{label}: skipped: {err}.")
    except FitInputError as err:
        notes.append(f"{label}: skipped: {err}")
    except Exception as err:  # noqa: BLE001 - a report never fails on one part
        F.close_all()
        warn(f"{label} failed", err)
        notes.append(f"{label}: skipped: could not be made ({err.__class__.__name__}: {err}).")


def warn(what: str, err: BaseException) -> None:
    """One line on stderr for what the report left out for an error (the report goes on)."""
    detail = "".join(traceback.format_exception_only(type(err), err)).strip()
    print(f"scalegrid: warning: report: {what}: {detail}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Rows and labels


def train_rows(ctx: Context) -> pd.DataFrame:
    """The usable single-model training runs (stage `train`)."""
    return ctx.inputs.stage("train")


def lowest_loss_per(rows: pd.DataFrame, axis: str) -> pd.DataFrame:
    """The measured points of a loss-against-`axis` figure: the lowest loss per (size, token
    budget, `axis` value) over the grid's other axes, each point's loss the mean of its seeds (the
    lowest seed would favour the points trained most often)."""
    points = seed_points(rows) if len(rows) else rows
    return points.groupby(["params", "unique_tokens", axis], sort=True)["val_loss"].min().reset_index()


def enough_points(frame: pd.DataFrame, by: list[str], x: str, n: int = MIN_POINTS) -> tuple[pd.DataFrame, list[dict]]:
    """Rows of the groups with at least n distinct `x` values, and the keys of the groups dropped."""
    if frame.empty:
        return frame, []
    counts = frame.groupby(by, sort=True)[x].nunique()
    keep = counts[counts >= n].index
    dropped = [dict(zip(by, k if isinstance(k, tuple) else (k,))) for k in counts[counts < n].index]
    mask = frame.set_index(by).index.isin(keep)
    return frame[mask], dropped


def records(frame: pd.DataFrame) -> list[dict]:
    """A table as fits.json rows."""
    return frame.to_dict(orient="records") if frame is not None and len(frame) else []


def ci_of(row: pd.Series | dict, name: str) -> tuple[float, float] | None:
    """The bootstrap interval of parameter `name` in an analysis row (`name_lo`, `name_hi`)."""
    lo, hi = row.get(f"{name}_lo"), row.get(f"{name}_hi")
    return None if lo is None or hi is None else (lo, hi)


def size_label(params: float) -> str:
    return f"{F.human(params)} params"


def budget_label(tokens: float) -> str:
    return f"{F.human(tokens)} tokens"


def loss_label(ctx: Context, what: str = "validation loss") -> str:
    """The y label: cross-entropy of the language-model trainer is in nats per token."""
    trainers = set(ctx.inputs.runs["trainer"].dropna().unique()) if len(ctx.inputs.runs) else set()
    return f"{what} (nats / token)" if trainers == {"lm"} else what


def describe_keys(keys: list[dict]) -> str:
    """Group keys (from `enough_points`) in words: '200M tokens / 150M params, ...'."""

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


# ---------------------------------------------------------------------------------------------
# Tables


def ci_note(ctx: Context) -> str:
    """The table note that says what the brackets are."""
    if ctx.bootstrap:
        return (f"Brackets: 95% percentile bootstrap intervals ({ctx.bootstrap} resamples; a point with several "
                "seeds has its seeds redrawn in each). No brackets: the points lie on the law exactly.")
    return "No intervals: bootstrap disabled."


DEGENERATE_MEANING = (
    "A law is degenerate when its exponent may be 0 or is negative (the loss does not fall with {x} here, "
    "or not surely), when its asymptote sits at its bound 0 or far below every measured loss (the points do "
    "not reach it), or when the optimiser stopped short: it converged to something the points do not "
    "support, so none of its numbers is a finding; it is marked and never headlined."
)


def sound(laws: pd.DataFrame) -> pd.DataFrame:
    """The laws of an analysis table that are not degenerate: the only ones drawn as laws, fitted
    over or headlined (a table without the column has none marked)."""
    if "degenerate" not in laws.columns or laws.empty:
        return laws
    return laws[~laws["degenerate"].fillna(False).astype(bool)]


def law_verdict(row: pd.Series | dict) -> str:
    """'sound' or 'degenerate: <why>' for an analysis row with `degenerate` and `flags`."""
    if not bool(row.get("degenerate", False)):
        return "sound"
    return "degenerate: " + "; ".join(row.get("flags") or [])


def with_seeds(loss: float, row: pd.Series | dict, digits: int = 4) -> str:
    """'2.163' or, for a point of several seeds, '2.163 ± 0.049 (3 seeds)' (mean ± sd)."""
    n = row.get("seeds", 1)
    if n is None or not np.isfinite(n) or n < 2:
        return fmt(loss, digits)
    return f"{fmt(loss, digits)} ± {fmt(row.get('val_loss_sd'), 2)} ({int(n)} seeds)"


def seed_bars(rows: pd.DataFrame):
    """matplotlib's yerr from the points' seed spread (`val_loss_sd`); None when no point has seeds."""
    if "val_loss_sd" not in rows or not np.isfinite(rows["val_loss_sd"].to_numpy(dtype=float)).any():
        return None
    return np.nan_to_num(rows["val_loss_sd"].to_numpy(dtype=float), nan=0.0)


def size_by_budget_table(
    runs: pd.DataFrame, title: str, cell: Callable[[float, float, pd.Series], str], note: str = ""
) -> Table:
    """A row per model size, a column per token budget; `cell(size, budget, row)` fills the pairs
    `runs` has (one row each: best runs, or laws per size and budget), "-" the others."""
    budgets = sorted(runs["unique_tokens"].unique())
    rows = []
    for n, at_n in runs.groupby("params", sort=True):
        at = at_n.set_index("unique_tokens")
        rows.append([size_label(n)] + [cell(n, d, at.loc[d]) if d in at.index else "-" for d in budgets])
    return Table(title, ["size"] + [budget_label(d) for d in budgets], rows, note=note)


def hparam_law_table(law: pd.DataFrame, hparam: str, ctx: Context) -> Table:
    """optimal_hparam_scaling's laws, one row per token budget (sections 3 and 4)."""
    rows = [
        [budget_label(r["unique_tokens"]), fmt_ci(r["exponent"], ci_of(r, "exponent"), 3),
         fmt_ci(r["coefficient"], ci_of(r, "coefficient"), 3), fmt(r["n_points"])]
        for _, r in law.iterrows()
    ]
    return Table(
        f"Optimal {hparam.replace('_', ' ')} against parameters: {hparam}* = k N^γ",
        ["token budget", "exponent γ", "coefficient k", "sizes"], rows,
        note="Least squares in log-log over the best run of each size. " + ci_note(ctx),
    )


# ---------------------------------------------------------------------------------------------
# Figures


def eval_power_law(x: np.ndarray, row: pd.Series | dict) -> np.ndarray:
    """A fitted A / x^B + C (an analysis row or a law's params) at x, to draw it."""
    return power_law(x, float(row["A"]), float(row["B"]), float(row["C"]))


def size_colors(values) -> dict:
    """Model size -> colour, small to large (plasma: distinct from the budgets' viridis)."""
    values = sorted(set(values))
    return dict(zip(values, F.colors(len(values), "plasma")))


def budget_colors(values) -> dict:
    """Token budget -> colour, small to large."""
    values = sorted(set(values))
    return dict(zip(values, F.colors(len(values), "viridis")))


def panel_budgets(budgets) -> tuple[list, str | None]:
    """The token budgets that get a panel (at most MAX_PANELS, evenly spaced), and a note when
    some are left out."""
    budgets = sorted(set(budgets))
    if len(budgets) <= MAX_PANELS:
        return budgets, None
    idx = np.unique(np.linspace(0, len(budgets) - 1, MAX_PANELS).round().astype(int))
    shown = [budgets[i] for i in idx]
    return shown, f"showing {len(shown)} of {len(budgets)} token budgets, evenly spaced"


def loss_panels(
    ctx: Context, cells: pd.DataFrame, axis: str, budgets: Sequence, sizes: dict,
    mark: Callable[[Any, float, float], None] | None = None,
):
    """One panel per token budget of `cells` (`lowest_loss_per(rows, axis)`): loss against `axis`,
    a line per model size coloured by `sizes`, and `mark(ax, size, budget)` after each line.
    Returns (figure, axes); the caller sets the x axes."""
    fig, axes = F.new_panels(len(budgets))
    for ax, d in zip(axes, budgets):
        for n, line in cells[cells["unique_tokens"] == d].groupby("params"):
            ax.plot(line[axis], line["val_loss"], "o-", color=sizes[n], label=size_label(n), markersize=4)
            if mark is not None:
                mark(ax, n, d)
        ax.set_ylabel(loss_label(ctx))
        ax.set_title(budget_label(d))
    return fig, axes


def dodge(i: int, n: int, step: float = 0.03) -> float:
    """A small multiplicative x offset for series i of n on a log axis, so error bars do not overlap."""
    return float(np.exp(step * (i - (n - 1) / 2)))


def error_bars(rows: pd.DataFrame, name: str):
    """matplotlib's yerr for `name` from its bootstrap interval; None without a finite one."""
    lo, hi = rows.get(f"{name}_lo"), rows.get(f"{name}_hi")
    if lo is None or hi is None or not np.isfinite(lo).all() or not np.isfinite(hi).all():
        return None
    return np.vstack([np.maximum(rows[name] - lo, 0), np.maximum(hi - rows[name], 0)])

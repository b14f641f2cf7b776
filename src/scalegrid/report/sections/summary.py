"""Section 1: the grid, trials by stage and status, compute spent, and the other sections'
headlines (made last, from the sections already built). It draws nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from scalegrid.analysis import models_by_size
from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt
from scalegrid.report.inputs import FAILED
from scalegrid.report.sections.common import Context

GRID_AXES = (  # column, what the summary calls it, how a value reads
    ("model", "models", lambda v: str(v)),
    ("params", "parameters", lambda v: F.human(v)),
    ("unique_tokens", "unique tokens", lambda v: F.human(v)),
    ("epochs", "epochs", lambda v: f"{v:g}"),
    ("lr", "learning rates", lambda v: f"{v:g}"),
    ("weight_decay", "weight decays", lambda v: f"{v:g}"),
    ("seed", "seeds", lambda v: f"{v:g}"),
)
MAX_VALUES_SHOWN = 12


@dataclass(frozen=True)
class SummaryNumbers:
    trials: int
    by_status: pd.DataFrame | None  # trials per stage (rows) and status (columns); None: no runs
    pending: dict[str, int]  # sweep -> trials of its grid without a result yet
    grid: dict[str, list]  # axis column -> the values the training runs took (axes with any)
    members: list  # the ensemble sizes K
    sweeps: list[str]
    trainers: list[str]
    compute: dict[str, float | None]  # flops, wall_hours, tokens_seen, failed_wall_hours
    last_finished_at: Any  # a timestamp, or None


def section_summary(ctx: Context, s: Section, others: list[Section]) -> None:
    write_summary(s, summary_numbers(ctx), others)


def summary_numbers(ctx: Context) -> SummaryNumbers:
    runs = ctx.inputs.all_runs
    if runs.empty:
        return SummaryNumbers(trials=0, by_status=None, pending={}, grid={}, members=[], sweeps=[], trainers=[],
                              compute={}, last_finished_at=None)
    stage = runs["stage"].fillna("train")
    train = runs[stage == "train"]
    grid = {col: sorted(train[col].dropna().unique()) if col in train else [] for col, _, _ in GRID_AXES}
    grid["model"] = models_by_size(train) if "model" in train else []  # smallest first, not by name
    flops = pd.to_numeric(runs["flops"], errors="coerce")
    wall = pd.to_numeric(runs["wall_s"], errors="coerce")
    tokens = pd.to_numeric(runs["tokens_seen"], errors="coerce")
    finished = "finished_at" in runs and runs["finished_at"].notna().any()
    return SummaryNumbers(
        trials=int(len(runs)),
        by_status=pd.crosstab(stage, runs["status"].fillna("?")),
        pending=ctx.inputs.pending,
        grid={col: values for col, values in grid.items() if values},
        members=sorted(pd.to_numeric(runs.loc[stage == "ensemble", "members"], errors="coerce").dropna().unique()),
        sweeps=sorted(runs["sweep"].dropna().unique()),
        trainers=sorted(runs["trainer"].dropna().unique()),
        compute={
            "flops": float(flops.sum(min_count=1)) if flops.notna().any() else None,
            "wall_hours": float(wall.sum() / 3600) if wall.notna().any() else None,
            "tokens_seen": float(tokens.sum()) if tokens.notna().any() else None,
            "failed_wall_hours": float(wall[runs["status"] == FAILED].sum() / 3600) if wall.notna().any() else None,
        },
        last_finished_at=runs["finished_at"].max() if finished else None,
    )


def write_summary(s: Section, numbers: SummaryNumbers, others: list[Section]) -> None:
    s.fits["trials"] = numbers.trials
    if numbers.by_status is None:
        s.paragraphs.append("The store holds no runs yet: every section below is skipped.")
        s.fits["trials_by_status"] = {}
        return
    s.fits["trials_by_status"] = {
        st: {k: int(v) for k, v in row.items() if v} for st, row in numbers.by_status.iterrows()
    }
    s.tables.append(_status_table(numbers.by_status, numbers.pending))
    if numbers.pending:
        s.fits["pending"] = numbers.pending
    s.paragraphs.append(
        f"{numbers.trials:,} trials in {len(numbers.sweeps)} sweep(s) ({', '.join(numbers.sweeps)}), "
        f"trainer(s) {', '.join(numbers.trainers)}."
    )
    s.tables.append(Table("The grid (training runs)", ["axis", "count", "values"], _grid_rows(numbers)))
    compute = numbers.compute
    s.fits["compute"] = compute
    s.tables.append(Table("Compute spent", ["quantity", "total"], [
        ["training FLOPs", f"{compute['flops']:.3g}" if compute["flops"] else "n/a"],
        ["tokens seen", F.human(compute["tokens_seen"]) if compute["tokens_seen"] else "n/a"],
        ["trial wall-clock", f"{compute['wall_hours']:.3g} h" if compute["wall_hours"] is not None else "n/a"],
        ["of which in FAILED trials", f"{compute['failed_wall_hours']:.3g} h" if compute["failed_wall_hours"] is not None else "n/a"],
    ], note="Wall-clock is summed over trials (device-hours when each trial holds one device)."))
    if numbers.last_finished_at is not None:
        s.fits["last_finished_at"] = numbers.last_finished_at.isoformat()
    headlines = [h for other in others for h in other.headline]
    s.headline.extend(headlines)
    s.fits["headline"] = headlines
    if not headlines:
        s.paragraphs.append("No headline numbers yet: the sections below say what each one needs.")


def _status_table(by_status: pd.DataFrame, pending: dict[str, int]) -> Table:
    statuses = list(by_status.columns)
    rows = []
    for st, row in by_status.iterrows():
        rows.append([st] + [fmt(int(row[c])) for c in statuses]
                    + [fmt(sum(pending.values())) if st == "train" and pending else "-"] + [fmt(int(row.sum()))])
    return Table("Trials by stage and status", ["stage"] + statuses + ["no result yet", "total"], rows)


def _grid_rows(numbers: SummaryNumbers) -> list[list[str]]:
    rows = []
    for col, label, show in GRID_AXES:
        values = numbers.grid.get(col)
        if values:
            shown = ", ".join(show(v) for v in values[:MAX_VALUES_SHOWN])
            rows.append([label, fmt(len(values)), shown + (" …" if len(values) > MAX_VALUES_SHOWN else "")])
    if numbers.members:
        rows.append(["ensemble members", fmt(len(numbers.members)), ", ".join(f"{m:g}" for m in numbers.members)])
    return rows

"""Section 1: the grid, trials by stage and status, compute spent, and the other sections'
headlines (made last, from the sections already built).
"""

from __future__ import annotations

import pandas as pd

from scalegrid.report import figures as F
from scalegrid.report.document import Section, Table, fmt
from scalegrid.report.inputs import FAILED
from scalegrid.report.sections.common import Context


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

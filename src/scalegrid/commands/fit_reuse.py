"""`scalegrid fit reuse FILE`: the effective reuse table E(K, N), K*(N) with both laws, R* per N.

From a results directory the rows are one per (trial, epoch) (`analysis.epoch_rows`: a constant-
schedule run's curve gives every epoch count up to its own), and for linreg runs the one-pass
reference is exact (`analysis.one_pass`, on `trainers.linreg.one_pass_problem`): the one-pass risk
on fresh samples with the lr tuned on the runs' own ladder, at any sample count. For any other table
it is the power law fitted to the one-epoch rows. The analysis itself is `analysis.reuse`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from scalegrid import store
from scalegrid.analysis import EPS, ReuseAnalysis, epoch_rows, one_pass_reference, reuse_analysis
from scalegrid.analysis.tables import completed, per_group
from scalegrid.errors import UserError
from scalegrid.storage import layout
from scalegrid.storage.layout import CURVES
from scalegrid.data.gaussian import one_pass_problem

SHOWN_EPOCHS = 8  # epoch counts per row of the text table (powers of two, and the largest)


def parse_eps(text: str) -> tuple[float, ...]:
    """`--eps 0.1,0.5` -> (0.1, 0.5); each in (0, 1)."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"--eps: {text!r} is not a comma-separated list of numbers (e.g. 0.1,0.2,0.3,0.5)") from None
    if not values or not all(0 < v < 1 for v in values):
        raise UserError(f"--eps: each value must be in (0, 1), got {text!r}")
    return values


def rows_of(path: Path, table: pd.DataFrame, stage: str) -> pd.DataFrame:
    """One row per measured (N, K, setting, seed): per epoch from a results directory's curves."""
    if stage != "all" and "stage" in table.columns:
        table = table[table["stage"] == stage]
    if not path.is_dir() or "trial_id" not in table.columns:
        return completed(table)
    curves = store.scan(layout(path), CURVES).frame
    return epoch_rows(table, curves)


def analyse(args: argparse.Namespace, rows: pd.DataFrame, by: list[str]) -> list[tuple[dict, ReuseAnalysis, dict]]:
    """(group, analysis, how its one-pass reference was made) per group."""
    eps = parse_eps(args.eps) if isinstance(args.eps, str) else tuple(args.eps or EPS)

    def one(group: pd.DataFrame) -> tuple[ReuseAnalysis, dict]:
        reference, described = _reference(args, group)
        result = reuse_analysis(group, reference, samples=args.samples, epochs=args.epochs, loss=args.loss,
                                eps=eps, bootstrap=args.bootstrap, rng_seed=args.seed, level=args.level)
        return result, described

    return [(key, *value) for key, value in per_group(rows, by, one)]


def _reference(args: argparse.Namespace, rows: pd.DataFrame):
    problem = one_pass_problem(rows["config_json"]) if "config_json" in rows.columns else None
    return one_pass_reference(rows, problem, samples=args.samples, epochs=args.epochs, loss=args.loss)


def to_document(args: argparse.Namespace, analyses: list[tuple[dict, ReuseAnalysis, dict]]) -> dict:
    """{"kind", "file", "settings", "fits" (the K* laws), "table" (E(K, N)), "k_star", "r_star",
    "reference", "notes"}; every list entry carries its group's columns."""
    def records(group: dict, frame: pd.DataFrame) -> list[dict]:
        return [{**group, **row} for row in frame.to_dict(orient="records")]

    return {
        "kind": "reuse",
        "file": str(args.file),
        "settings": {"bootstrap": args.bootstrap, "seed": args.seed, "level": args.level,
                     "eps": list(parse_eps(args.eps))},
        "fits": [{"group": group, **law.to_dict(args.samples)} for group, result, _ in analyses for law in result.laws],
        "table": [r for group, result, _ in analyses for r in records(group, result.table)],
        "k_star": [r for group, result, _ in analyses for r in records(group, result.thresholds)],
        "r_star": [r for group, result, _ in analyses for r in records(group, result.r_star)],
        "reference": [{"group": group, **described} for group, _, described in analyses],
        "notes": [note for _, result, _ in analyses for note in result.notes],
    }


def render(args: argparse.Namespace, analyses: list[tuple[dict, ReuseAnalysis, dict]]) -> str:
    level = f"{100 * args.level:g}%"
    lines = [f"reuse analysis of {args.file} ({args.bootstrap} bootstrap resamples over seeds; {level} intervals)"]
    for group, result, described in analyses:
        lines.append("")
        if group:
            lines.append(", ".join(f"{k}={v}" for k, v in group.items()))
        lines.append(f"  one-pass reference: {described['kind']} ({described['what']})")
        lines += _reuse_table(result, args.samples, args.epochs)
        lines.append("  K*(N): where E(K, N) / K falls below 1 - eps")
        for _, row in result.thresholds.iterrows():
            bound = {"above": " (>= largest K tried)", "below": " (<= smallest K tried)"}.get(row["censored"], "")
            lines.append(f"    eps {row['eps']:<4g} N {row[args.samples]:>10g}  K* {row['k_star']:>7.3g}  "
                         f"[{row['k_star_lo']:.3g}, {row['k_star_hi']:.3g}]{bound}")
        for law in result.laws:
            params = ", ".join(f"{k} = {v:.4g} [{law.ci[k][0]:.3g}, {law.ci[k][1]:.3g}]" if k in law.ci else f"{k} = {v:.4g}"
                               for k, v in law.params.items())
            rms = math.sqrt(np.mean(np.square(law.residuals)))
            lines.append(f"  eps {law.eps:g}: {law.to_dict()['law']}: {params}; RMS residual {rms:.3g} epochs")
        for _, row in result.r_star.iterrows():
            lines.append(f"  Muennighoff R* at N {row[args.samples]:>10g}: {row['r_star']:.4g} "
                         f"[{row['r_star_lo']:.3g}, {row['r_star_hi']:.3g}]")
        lines += [f"  note: {note}" for note in result.notes]
    return "\n".join(lines)


def _reuse_table(result: ReuseAnalysis, samples: str, epochs: str) -> list[str]:
    """E(K, N) [interval] at powers-of-two K: one line per N."""
    table = result.table
    ks = sorted(table[epochs].unique())
    shown = [k for k in ks if math.log2(k).is_integer()][-SHOWN_EPOCHS:] or ks[-SHOWN_EPOCHS:]
    lines = ["  E(K, N) = N' / N:"]
    for n, cells in table.groupby(samples, sort=True):
        cells = cells.set_index(epochs)
        parts = [f"K={k:g}: {cells.loc[k, 'effective_reuse']:.3g} [{cells.loc[k, 'effective_reuse_lo']:.3g}, "
                 f"{cells.loc[k, 'effective_reuse_hi']:.3g}]" for k in shown if k in cells.index]
        lines.append(f"    N {n:>10g}  " + "  ".join(parts))
    return lines

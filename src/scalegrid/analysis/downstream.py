"""Downstream accuracy beside validation loss: does the ordering by loss hold on the tasks?

"Pre-training under infinite compute" (Kim et al., 2025) judges its recipes twice: by validation
loss, and by whether the gain carries over to downstream benchmarks. Two functions over the
`evals/` table (one row per model, task and metric) and the runs:

    table = downstream_table(evals, runs)    # a row per model and task: accuracy, stderr, val_loss, stage, size
    verdict = loss_ordering(table)           # per task: does lower loss mean higher accuracy, beyond noise?

An ordering is claimed only where the accuracies' noise allows it: a pair of models whose accuracy
difference is within Z = 1.96 combined standard errors says nothing. Per task the verdict is
`holds` (every pair that differs beyond noise is ordered as its losses are, and one pair does),
`violated` (some pair that differs beyond noise is ordered against its losses) or `unresolved`
(no pair differs beyond noise). Kendall's tau over all pairs is given beside it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

Z = 1.96  # two-sided 95%
METRICS = ("acc_norm", "acc")  # the metric shown per task: length-normalised accuracy when the task has it
HOLDS, VIOLATED, UNRESOLVED = "holds", "violated", "unresolved"
TABLE_COLUMNS = ["model_id", "stage", "model", "params", "unique_tokens", "epochs", "members", "combine", "task", "metric",
                 "accuracy", "stderr", "samples", "truncated", "val_loss"]


def downstream_table(evals: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """A row per model and task (COMPLETED evaluations; the task's first metric of METRICS it has,
    else its first metric), with the model's validation loss from its run or ensemble row
    (`val_loss`, NaN when the store has none)."""
    done = evals[evals["status"] == "COMPLETED"] if len(evals) else evals
    if not len(done):
        return pd.DataFrame(columns=TABLE_COLUMNS)
    rows = []
    for (_, task), group in done.groupby(["model_id", "task"], sort=False):
        metrics = list(group["metric"])
        metric = next((m for m in METRICS if m in metrics), sorted(metrics)[0])
        row = group[group["metric"] == metric].sort_values("finished_at").iloc[-1]
        rows.append({**{c: row[c] for c in TABLE_COLUMNS if c in row.index}, "accuracy": float(row["value"]),
                     "stderr": float(row["stderr"])})
    table = pd.DataFrame(rows)
    loss = dict(zip(runs["trial_id"], pd.to_numeric(runs["val_loss"], errors="coerce"))) if len(runs) else {}
    table["val_loss"] = [loss.get(m, math.nan) for m in table["model_id"]]
    return table[TABLE_COLUMNS].sort_values(["task", "unique_tokens", "params", "stage", "members"], ignore_index=True)


def loss_ordering(table: pd.DataFrame, z: float = Z) -> pd.DataFrame:
    """Per task: pairs of models with distinct finite losses, those whose accuracies differ beyond
    `z` combined standard errors, how many of these are ordered as the losses are (concordant) or
    against them (discordant), Kendall's tau over all pairs, and the verdict."""
    out = []
    for task, rows in table.groupby("task", sort=True):
        rows = rows[np.isfinite(rows["val_loss"].astype(float))]
        pairs = concordant = discordant = tau_sum = 0
        for (_, a), (_, b) in itertools.combinations(rows.iterrows(), 2):
            if a["val_loss"] == b["val_loss"]:
                continue
            pairs += 1
            lower, higher = (a, b) if a["val_loss"] < b["val_loss"] else (b, a)  # lower loss should score higher
            gap = lower["accuracy"] - higher["accuracy"]
            tau_sum += np.sign(gap)
            noise = z * math.sqrt(_var(lower) + _var(higher))
            if abs(gap) > noise:
                concordant += gap > 0
                discordant += gap < 0
        verdict = VIOLATED if discordant else HOLDS if concordant else UNRESOLVED
        out.append({"task": task, "models": len(rows), "pairs": pairs, "beyond_noise": concordant + discordant,
                    "concordant": concordant, "discordant": discordant, "kendall_tau": tau_sum / pairs if pairs else math.nan,
                    "verdict": verdict})
    return pd.DataFrame(out, columns=["task", "models", "pairs", "beyond_noise", "concordant", "discordant", "kendall_tau", "verdict"])


def _var(row: pd.Series) -> float:
    """The squared standard error, 0 when the harness gave none (a difference then needs to beat the other's alone)."""
    stderr = float(row["stderr"])
    return stderr * stderr if math.isfinite(stderr) else 0.0

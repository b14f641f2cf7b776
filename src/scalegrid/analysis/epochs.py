"""Epochs decided while training, as numbers (seeds/000's proposal): what repetition does to the
gradients epoch by epoch, what a model memorises, and where each adaptive run stopped against the
fixed epoch counts of its point.

    is_adaptive(runs)                which rows are adaptive runs (their epochs column is a maximum, not what ran)
    with_stops(runs)                 each run's adaptive stop (`stop_rule`, `stop_gamma`, `stop_patience`;
                                     empty for a fixed run) and its `point`: the identity without epochs and stop
    adaptive_against_fixed(runs)     per adaptive run: the fixed runs of its point, the best and the longest,
                                     where it stopped, the tokens it saved and the loss it lost
    epoch_diagnostics(runs, curves)  per (size, budget): the epoch-end gradient statistics of one fixed run
    memorisation_by_epochs(runs)     per (size, budget, epochs): memorised_train against memorised_val

An adaptive run (`epochs: {max: N, stop: ...}`) and the fixed `wsd` runs of E epochs at the same
point differ only in `epochs` and `train.stop`, so both are matched through the run's
`config_json` (its hashed identity) with those two left out: nothing but the epochs and the stop
may differ between what is compared. Only COMPLETED single-model training runs count.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from scalegrid.analysis.least_squares import FitInputError
from scalegrid.analysis.tables import completed, of_stage, require_columns

SIZE_AND_BUDGET = ["params", "unique_tokens"]
DIAGNOSTICS = ["grad_norm", "grad_cosine", "grad_snr", "grad_gram_top", "val_curvature"]
LOSS_TOLERANCE = 0.01  # the goal: an adaptive run within 1% of the best fixed epoch count's loss ...
TOKEN_SHARE = 0.5  # ... on at most half the tokens of the longest fixed run


def with_stops(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with `stop_rule` (None for a fixed run), `stop_gamma`, `stop_patience` and `point`
    (the canonical identity without `epochs` and the stop), read from `config_json`."""
    require_columns(runs, "config_json")
    configs = []
    for i, text in enumerate(runs["config_json"]):
        try:
            configs.append(json.loads(text))
        except (TypeError, ValueError):
            raise FitInputError(f"config_json of row {i} is not JSON ({str(text)[:40]!r}); pass the runs table as stored") from None
    stops = [(c.get("train") or {}).get("stop") for c in configs]
    out = runs.copy()
    out["stop_rule"] = [s["rule"] if s else None for s in stops]
    out["stop_gamma"] = [float(s["gamma"]) if s else math.nan for s in stops]
    out["stop_patience"] = [float(s.get("patience", 0)) if s else math.nan for s in stops]
    out["point"] = [_point(c) for c in configs]
    return out


def is_adaptive(runs: pd.DataFrame) -> np.ndarray:
    """Which rows are adaptive runs (a `train.stop` in their `config_json`); a table without the
    column, or a row whose config_json is not JSON, has none."""
    if "config_json" not in runs.columns:
        return np.zeros(len(runs), dtype=bool)
    return np.array([bool(_stop_of(text)) for text in runs["config_json"]], dtype=bool)


def _stop_of(text: object) -> dict | None:
    try:
        config = json.loads(text)
    except (TypeError, ValueError):
        return None
    train = config.get("train") if isinstance(config, dict) else None
    return train.get("stop") if isinstance(train, dict) else None


def _point(config: dict) -> str:
    fields = {k: v for k, v in config.items() if k != "epochs"}
    if isinstance(fields.get("train"), dict):
        fields["train"] = {k: v for k, v in fields["train"].items() if k != "stop"}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def _single_runs(runs: pd.DataFrame) -> pd.DataFrame:
    rows = of_stage(completed(runs), "train")
    require_columns(rows, "val_loss", "epochs", "tokens_seen", *SIZE_AND_BUDGET)
    rows = rows[np.isfinite(pd.to_numeric(rows["val_loss"], errors="coerce"))].reset_index(drop=True)
    return with_stops(rows)


def adaptive_against_fixed(
    runs: pd.DataFrame, *, loss_tolerance: float = LOSS_TOLERANCE, token_share: float = TOKEN_SHARE,
) -> pd.DataFrame:
    """One row per adaptive run: its rule, where it stopped (`stopped_epoch`, NaN when it ran to its
    `max_epochs`), its tokens and loss against the fixed runs of its point: the best fixed epoch
    count (`best_epochs`, `best_loss`) and the longest (`longest_epochs`, `longest_tokens`), every
    fixed epoch count and its loss (`fixed_epochs`, `fixed_losses`);
    `token_share` = its tokens / the longest fixed run's, `loss_lost` = its loss / the best fixed
    loss - 1, and whether it met the goal (within `loss_tolerance` of the best on at most
    `token_share` of the longest's tokens). An adaptive run without fixed runs to compare has NaN
    there (`fixed_runs` 0)."""
    rows = _single_runs(runs)
    adaptive, fixed = rows[rows["stop_rule"].notna()], rows[rows["stop_rule"].isna()]
    out = []
    for _, run in adaptive.iterrows():
        same = fixed[fixed["point"] == run["point"]]
        ordered = same.sort_values("epochs")
        best = same.loc[same["val_loss"].idxmin()] if len(same) else None
        longest = same.sort_values(["epochs", "val_loss"]).iloc[-1] if len(same) else None
        share = run["tokens_seen"] / longest["tokens_seen"] if longest is not None else math.nan
        lost = run["val_loss"] / best["val_loss"] - 1 if best is not None else math.nan
        out.append({
            **{c: run[c] for c in ("model", "params", "unique_tokens", "lr", "weight_decay", "seed") if c in run},
            "rule": run["stop_rule"], "gamma": run["stop_gamma"], "patience": int(run["stop_patience"]),
            "max_epochs": int(run["epochs"]), "stopped_epoch": _number(run.get("stopped_epoch")),
            "tokens_seen": int(run["tokens_seen"]), "val_loss": float(run["val_loss"]),
            "fixed_runs": len(same), "fixed_epochs": [int(e) for e in ordered["epochs"]],
            "fixed_losses": [float(v) for v in ordered["val_loss"]],
            "best_epochs": _number(best["epochs"]) if best is not None else math.nan,
            "best_loss": float(best["val_loss"]) if best is not None else math.nan,
            "longest_epochs": _number(longest["epochs"]) if longest is not None else math.nan,
            "longest_tokens": _number(longest["tokens_seen"]) if longest is not None else math.nan,
            "token_share": share, "loss_lost": lost,
            "meets_goal": bool(lost <= loss_tolerance and share <= token_share),
        })
    columns = ["model", "params", "unique_tokens", "lr", "weight_decay", "seed", "rule", "gamma", "patience", "max_epochs",
               "stopped_epoch", "tokens_seen", "val_loss", "fixed_runs", "fixed_epochs", "fixed_losses", "best_epochs", "best_loss",
               "longest_epochs", "longest_tokens", "token_share", "loss_lost", "meets_goal"]
    frame = pd.DataFrame(out, columns=columns)
    return frame.sort_values(["unique_tokens", "params", "rule"], kind="stable").reset_index(drop=True)


def _number(value: object) -> float:
    """A count from a row (nullable integer columns hold NA for 'none'): a float, NaN when absent."""
    return math.nan if value is None or pd.isna(value) else float(value)


def epoch_diagnostics(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per (size, token budget), the epoch-end rows (`train.diagnostics`) of one fixed run: the one
    with the most epochs at the point of the best fixed run with diagnostics (the best run itself
    when no longer one was measured), so the curve reaches past the best epoch count. Columns: the
    run's model, params, unique_tokens, epochs, lr, weight_decay, `best_epochs` (the best run's),
    and per epoch: epoch, val_loss and the diagnostics, `gram_top` the largest Gram eigenvalue."""
    require_columns(curves, "trial_id", "epoch", "val_loss", "grad_norm")
    measured = curves[pd.to_numeric(curves["grad_norm"], errors="coerce").notna()]
    rows = _single_runs(runs)
    fixed = rows[rows["stop_rule"].isna() & rows["trial_id"].isin(measured["trial_id"])]
    if fixed.empty:
        raise FitInputError("no COMPLETED fixed-epoch run has per-epoch diagnostics (train.diagnostics: true)")
    frames = []
    for _, group in fixed.groupby(SIZE_AND_BUDGET, sort=True):
        best = group.loc[group["val_loss"].idxmin()]
        at_point = group[group["point"] == best["point"]]
        shown = at_point.sort_values(["epochs", "val_loss"], ascending=[False, True]).iloc[0]
        epochs = measured[measured["trial_id"] == shown["trial_id"]].sort_values("epoch")
        frame = epochs[["epoch", "val_loss", *[c for c in DIAGNOSTICS if c in epochs]]].copy()
        if "grad_gram_top" in frame:
            frame["gram_top"] = [_first(v) for v in frame.pop("grad_gram_top")]
        for column in ("model", "params", "unique_tokens", "epochs", "lr", "weight_decay", "trial_id"):
            if column in shown:
                frame[column] = shown[column]
        frame["best_epochs"] = best["epochs"]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _first(values: object) -> float:
    try:
        return float(values[0]) if values is not None and len(values) else math.nan
    except (TypeError, IndexError):
        return math.nan


def memorisation_by_epochs(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (size, token budget, epochs), the best fixed run with memorisation measured
    (`train.memorisation_samples`): its val_loss, memorised_train, memorised_val and `gap`
    (train - val: n-grams recalled from the training data beyond what validation prompts recall)."""
    require_columns(runs, "memorised_train", "memorised_val")
    rows = _single_runs(runs)
    rows = rows[rows["stop_rule"].isna() & pd.to_numeric(rows["memorised_train"], errors="coerce").notna()]
    if rows.empty:
        raise FitInputError("no COMPLETED fixed-epoch run measured memorisation (train.memorisation_samples > 0)")
    best = rows.loc[rows.groupby([*SIZE_AND_BUDGET, "epochs"], sort=True)["val_loss"].idxmin()]
    out = best[["model", *SIZE_AND_BUDGET, "epochs", "val_loss", "memorised_train", "memorised_val"]].copy()
    out["gap"] = out["memorised_train"].astype(float) - out["memorised_val"].astype(float)
    return out.sort_values([*SIZE_AND_BUDGET, "epochs"]).reset_index(drop=True)

"""Run one trial and write its result: the function every Ray Tune trial executes.

`execute` is the whole contract between a trainer and the store: it calls the trainer, turns an
exception into a FAILED row (never a crashed sweep), and writes the curves first and the run row
last, so a trial is done exactly when its run row exists.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import sys
import time
import traceback
from typing import Any, Callable

from scalegrid import grid, store
from scalegrid.trainers.base import Trial, TrialResult, get_trainer


def _device() -> str:
    torch = sys.modules.get("torch")  # only a trainer that used torch can have used a GPU
    try:
        return torch.cuda.get_device_name() if torch is not None and torch.cuda.is_available() else "cpu"
    except Exception:  # a broken driver: the row still gets written
        return "unknown"


def run_row(trial: Trial, result: TrialResult, wall_s: float, provenance: dict[str, str]) -> dict[str, Any]:
    config = trial.config
    return {
        "trial_id": trial.trial_id,
        "sweep": trial.sweep,
        "stage": "train",
        "status": result.status,
        "trainer": config.trainer,
        "model": trial.model_label,
        "params": result.params,
        "params_nonembed": result.params_nonembed,
        "unique_tokens": config.unique_tokens,
        "epochs": config.epochs,
        "tokens_seen": result.tokens_seen,
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "seed": config.seed,
        "members": 1,
        "val_loss": result.val_loss,
        "best_val_loss": result.best_val_loss,
        "train_loss": result.train_loss,
        "flops": result.flops,
        "wall_s": wall_s,
        "error": result.error,
        "finished_at": dt.datetime.now(dt.timezone.utc),
        "config_json": grid.canonical_json(config.model_dump(mode="json")),
        "scalegrid_version": provenance.get("scalegrid_version"),
        "git_commit": provenance.get("git_commit"),
        "hostname": platform.node(),
        "device": _device(),
    }


def _failed(trial: Trial, err: BaseException) -> TrialResult:
    shape = grid.model_shape(trial.config.model)
    vocab = trial.config.data.get("vocab_size", 0)
    last = traceback.format_exception_only(type(err), err)[-1].strip()
    return TrialResult(
        status="FAILED",
        params=shape.num_params(vocab),
        params_nonembed=shape.num_params(vocab, non_embedding=True),
        tokens_seen=0,
        flops=0.0,
        error=last[:2000],
    )


def execute(trial: Trial, report: Callable[[dict], None], provenance: dict[str, str]) -> dict[str, Any]:
    """Train one trial, write its curves and run row, return the row."""
    start = time.perf_counter()
    try:
        result = get_trainer(trial.config.trainer)(trial, report)
    except Exception as err:  # a bug or a bad corpus fails this trial only
        result = _failed(trial, err)
    curves = result.extra.pop("curves", [])
    if curves:
        store.write_curves(trial.results_dir, trial.trial_id, curves)
    row = run_row(trial, result, time.perf_counter() - start, provenance)
    store.write_run(trial.results_dir, row)
    return row


def tune_trainable(config: dict, trials: dict[str, Trial], provenance: dict[str, str]) -> None:
    """The Ray Tune function trainable: one grid point, looked up by its trial_id."""
    from ray import tune

    trial = trials[config["trial_id"]]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def report(row: dict) -> None:
        tune.report({k: v for k, v in row.items() if isinstance(v, (int, float)) and math.isfinite(v)})

    row = execute(trial, report, provenance)
    final = {"status": row["status"], "done": True}
    if row["val_loss"] is not None and math.isfinite(row["val_loss"]):
        final["val_loss"] = row["val_loss"]
    tune.report(final)

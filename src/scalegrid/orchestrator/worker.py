"""Run one trial and write its result: the function every Ray Tune trial executes.

`execute` is the whole contract between a trainer and the store: it calls the trainer, turns an
exception into a FAILED row (never a crashed sweep), and writes the curves first and the run row
last, so a trial is done exactly when its run row exists.

`run_leased` wraps it for a sweep: take the trial's lease (`leases.py`; a trial leased by another
live driver is skipped as ELSEWHERE, one whose row appeared meanwhile as ALREADY_DONE), count the
attempt in the lease history, and while this driver has retries left (`max_failures`) let a
trainer's exception propagate so that Ray Tune retries the trial, possibly on another node; the
retry resumes from the trial's newest checkpoint. Only the last attempt's exception becomes the
FAILED row. A Tune trial may carry several tiny trials (a pack); each keeps its own lease and rows
and is retried in the worker itself.
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
from scalegrid.orchestrator import leases
from scalegrid.trainers import checkpoint
from scalegrid.trainers.base import Trial, TrialResult, get_trainer

ELSEWHERE, ALREADY_DONE = "ELSEWHERE", "ALREADY_DONE"  # outcomes of a trial this worker did not train


def _device() -> str:
    torch = sys.modules.get("torch")  # only a trainer that used torch can have used a GPU
    try:
        return torch.cuda.get_device_name() if torch is not None and torch.cuda.is_available() else "cpu"
    except Exception:  # a broken driver: the row still gets written
        return "unknown"


def run_row(trial: Trial, result: TrialResult, wall_s: float, provenance: dict[str, str]) -> dict[str, Any]:
    config = trial.config
    return {
        **_teacher_columns(config),
        "trial_id": trial.trial_id,
        "sweep": trial.sweep,
        "stage": trial.stage,
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
        "members": len(config.distill["teacher"]) if config.distill else 1,  # a student's: its teacher's k
        "member": config.member,
        "val_loss": result.val_loss,
        "best_val_loss": result.best_val_loss,
        "train_loss": result.train_loss,
        "flops": result.flops,
        "wall_s": wall_s,
        "error": result.error,
        "finished_at": dt.datetime.now(dt.timezone.utc),
        "config_json": grid.canonical_json(grid.identity(config)),
        "scalegrid_version": provenance.get("scalegrid_version"),
        "git_commit": provenance.get("git_commit"),
        "hostname": platform.node(),
        "device": _device(),
    }


def _teacher_columns(config) -> dict[str, Any]:
    """A student's teacher (STAGE_SCHEMA columns); nothing for other trials."""
    if not config.distill:
        return {}
    from scalegrid.orchestrator.stages import ensemble_id

    teacher = list(config.distill["teacher"])
    return {
        "teacher_id": teacher[0] if len(teacher) == 1 else ensemble_id(teacher),
        "teacher_kind": "model" if len(teacher) == 1 else "ensemble",
        "teacher_trial_ids": teacher,
        "distill_method": config.distill["method"],
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


def execute(trial: Trial, report: Callable[[dict], None], provenance: dict[str, str], *, reraise: bool = False) -> dict[str, Any]:
    """Train one trial, write its curves and run row, return the row.

    With `reraise`, a trainer's exception propagates (the caller retries) and nothing is written.
    """
    start = time.perf_counter()
    try:
        result = get_trainer("distill" if trial.stage == "distill" else trial.config.trainer)(trial, report)
    except Exception as err:  # a bug or a bad corpus fails this trial only
        if reraise:
            raise
        result = _failed(trial, err)
    curves = result.extra.pop("curves", [])
    if curves:
        store.write_curves(trial.results_dir, trial.trial_id, curves)
    row = run_row(trial, result, time.perf_counter() - start, provenance)
    store.write_run(trial.results_dir, row)
    if row["status"] in store.DONE_STATUSES:
        checkpoint.remove(trial.checkpoint_dir)  # a finished trial is never resumed
    return row


def run_leased(
    trial: Trial, report: Callable[[dict], None], provenance: dict[str, str], *, owner: str, retry_here: bool
) -> dict[str, Any] | str:
    """Train `trial` under its lease; returns the run row it wrote, or ELSEWHERE or ALREADY_DONE.

    `retry_here`: retry a raising trainer in this process (packs); otherwise re-raise while
    attempts remain and let Ray Tune retry.
    """
    ft, root = trial.fault_tolerance, trial.local_results
    if root is None:  # an object store: no lease, no persistent attempt count, so no Tune retry
        return execute(trial, report, provenance)
    lease, _ = leases.acquire(root, trial.trial_id, owner=owner, expiry_s=ft.lease_expiry_s)
    if lease is None:
        return ELSEWHERE
    try:
        with lease.heartbeating():
            while True:
                if store.run_status(trial.results_dir, trial.trial_id) in store.DONE_STATUSES:
                    return ALREADY_DONE  # another driver finished it between our plan and our lease
                attempt = 1 + sum(h.get("owner") == owner for h in leases.history(root, trial.trial_id))
                steps = checkpoint.steps(trial.checkpoint_dir)
                leases.record_start(
                    root, trial.trial_id, owner=owner, attempt=attempt,
                    resumed_from_step=steps[-1] if steps else 0, node=_ray_node(),
                )
                last = attempt > ft.max_failures
                try:
                    return execute(trial, report, provenance, reraise=not last)
                except Exception:
                    if not retry_here:
                        raise  # Ray Tune retries the trial; the retry takes this lease over (same owner)
    finally:
        lease.release()


def _ray_node() -> str | None:
    ray = sys.modules.get("ray")
    try:
        return ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - provenance only
        return None


def tune_trainable(config: dict, packs: dict[str, list[Trial]], provenance: dict[str, str], owner: str) -> None:
    """The Ray Tune function trainable: one pack of grid points (usually one), looked up by its key."""
    from ray import tune

    trials = packs[config["pack"]]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def report(row: dict) -> None:
        if len(trials) == 1:  # a pack's rows are many trials' curves: only the totals are reported
            tune.report({k: v for k, v in row.items() if isinstance(v, (int, float)) and math.isfinite(v)})

    counts: dict[str, int] = {}
    final: dict[str, Any] = {"done": True}
    for trial in trials:
        outcome = run_leased(trial, report, provenance, owner=owner, retry_here=len(trials) > 1)
        status = outcome if isinstance(outcome, str) else outcome["status"]
        counts[status] = counts.get(status, 0) + 1
        val_loss = None if isinstance(outcome, str) else outcome["val_loss"]
        if len(trials) == 1 and val_loss is not None and math.isfinite(val_loss):
            final["val_loss"] = val_loss  # the progress line shows it
    tune.report({**final, **{f"n_{status}": n for status, n in counts.items()}})

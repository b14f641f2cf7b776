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

import math
import os
import sys
import time
import traceback
from typing import Any, Callable

from scalegrid import store
from scalegrid.orchestrator import leases
from scalegrid.trainers import checkpoint, trainer_of
from scalegrid.trial import DONE_STATUSES, Trial, TrialResult

ELSEWHERE, ALREADY_DONE = "ELSEWHERE", "ALREADY_DONE"  # outcomes of a trial this worker did not train


def _device() -> str:
    """The device the trial computed on: the GPU Ray gave it, by name, or "cpu"."""
    if "torch" not in sys.modules:  # only a trainer that used torch can have used a GPU
        return "cpu"
    from scalegrid.trainers.devices import device_name, trial_device

    try:
        return device_name(trial_device())
    except Exception:  # noqa: BLE001 - a broken driver: the row still gets written
        return "unknown"


def execute(trial: Trial, report: Callable[[dict], None], provenance: dict[str, str], *, reraise: bool = False) -> store.RunRow:
    """Train one trial, write its curves and run row, return the row.

    With `reraise`, a trainer's exception propagates (the caller retries) and nothing is written.
    """
    start = time.perf_counter()
    try:
        result = trainer_of(trial)(trial, report)
    except Exception as err:  # a bug or a bad corpus fails this trial only
        if reraise:
            raise
        result = TrialResult.failed(trial.config, traceback.format_exception_only(type(err), err)[-1].strip()[:2000])
    if result.curves:
        store.write_curves(trial.results, trial.trial_id, result.curves)
    row = store.trial_row(trial, result, wall_s=time.perf_counter() - start, provenance=provenance, device=_device())
    store.write_run(trial.results, row)
    if row.status in DONE_STATUSES:
        checkpoint.remove(trial.checkpoint_dir)  # a finished trial is never resumed
    return row


def run_leased(
    trial: Trial, report: Callable[[dict], None], provenance: dict[str, str], *, owner: str, retry_here: bool
) -> store.RunRow | str:
    """Train `trial` under its lease; returns the run row it wrote, or ELSEWHERE or ALREADY_DONE.

    `retry_here`: retry a raising trainer in this process (packs); otherwise re-raise while
    attempts remain and let Ray Tune retry.
    """
    ft, results = trial.fault_tolerance, trial.results
    if results.local_path is None:  # an object store: no lease, no persistent attempt count, so no Tune retry
        return execute(trial, report, provenance)
    lease, _ = leases.acquire(results, trial.trial_id, owner=owner, expiry_s=ft.lease_expiry_s)
    if lease is None:
        return ELSEWHERE
    try:
        with lease.heartbeating():
            while True:
                if store.run_status(results, trial.trial_id) in DONE_STATUSES:
                    return ALREADY_DONE  # another driver finished it between our plan and our lease
                attempt = 1 + sum(h.get("owner") == owner for h in leases.history(results, trial.trial_id))
                steps = checkpoint.steps(trial.checkpoint_dir)
                leases.record_start(
                    results, trial.trial_id, owner=owner, attempt=attempt,
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
        status = outcome if isinstance(outcome, str) else outcome.status
        counts[status] = counts.get(status, 0) + 1
        val_loss = None if isinstance(outcome, str) else outcome.val_loss
        if len(trials) == 1 and val_loss is not None and math.isfinite(val_loss):
            final["val_loss"] = val_loss  # the progress line shows it
    tune.report({**final, **{f"n_{status}": n for status, n in counts.items()}})

"""Run one trial and write its result: the function every Ray Tune trial executes.

`execute` is the whole contract between a trainer and the store: it calls the trainer, turns an
exception into a FAILED row (never a crashed sweep), and writes the curves first and the run row
last, so a trial is done exactly when its run row exists.

`run_leased` wraps it for a sweep: take the trial's lease (`leases.py`; a trial leased by another
live driver is skipped as ELSEWHERE, one whose row appeared meanwhile as ALREADY_DONE), count the
attempt in the lease history, and while this driver has retries left (`max_failures`) let a
trainer's exception propagate so that Ray Tune retries the trial, possibly on another node; the
retry resumes from the trial's newest checkpoint, and the driver is told so. Only the last
attempt's exception becomes the FAILED row. The history has one line per start of training (on
several processes, rank 0 writes one at every start of its worker group, Ray Train's restarts
included): the run row's `restarts` counts them. A Tune trial may carry several tiny trials (a pack); each keeps its own lease and rows
and is retried in the worker itself. The trials of a pack that one vectorised pass can train
(`trainers.vector_groups`: linreg's lrs of one grid point) are trained by `run_leased_group`: every
lease taken first, one `train_many` call for those held, then each trial's rows.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Callable

from scalegrid import grid, store
from scalegrid.errors import StorageError
from scalegrid.orchestrator import leases
from scalegrid.orchestrator.execution import train_workers as train_launch
from scalegrid.storage.space import storage_error, is_storage_failure
from scalegrid.trainers import checkpoint, many_trainer_of, trainer_of, vector_groups
from scalegrid.trainers.model_card import write_model_card
from scalegrid.trial import DONE_STATUSES, Status, Trial, TrialResult

ELSEWHERE, ALREADY_DONE = "ELSEWHERE", "ALREADY_DONE"  # outcomes of a trial this worker did not train
STORAGE_FAILED = "STORAGE_FAILED"  # the results filled up: no row written, the driver stops the run


def execute(
    trial: Trial, report: Callable[[dict], None], provenance: dict[str, str], *, reraise: bool = False,
    starting: Callable[[], None] | None = None,
) -> store.RunRow:
    """Train one trial, write its curves and run row, return the row.

    With `reraise`, a trainer's exception propagates (the caller retries) and nothing is written.
    `starting`: what rank 0 of a multi-worker trial calls at each start of its workers (it records
    the attempt).
    """
    start = time.perf_counter()
    try:
        result = _trainer(trial, starting)(trial, report)
    except Exception as err:  # a bug or a bad corpus fails this trial only
        if reraise or is_storage_failure(err):  # a full disk fails no trial: the run stops, the next one resumes
            raise
        result = TrialResult.failed(trial.config, _error_text(err))
    return _write(trial, result, time.perf_counter() - start, provenance)


def _trainer(trial: Trial, starting: Callable[[], None] | None = None) -> Callable[[Trial, Callable[[dict], None]], TrialResult]:
    """The trial's trainer in this process, or on its Ray Train workers (`resources.workers` > 1)."""
    if trial.resources.workers > 1:
        return functools.partial(train_launch.train_distributed, reports=functools.partial(TuneReports, [trial]), starting=starting)
    return trainer_of(trial)


def _error_text(err: Exception) -> str:
    return traceback.format_exception_only(type(err), err)[-1].strip()[:2000]


def _write(trial: Trial, result: TrialResult, wall_s: float, provenance: dict[str, str]) -> store.RunRow:
    """A trained trial's curves, its saved model's card, then its run row (the row last: it marks
    the trial done)."""
    if result.curves:
        store.write_curves(trial.results, trial.trial_id, result.curves)
    if result.status == Status.COMPLETED and trial.save_model and trial.results.has_model(trial.trial_id):
        write_model_card(trial, result, provenance)  # the saved model's README.md, before the row marks it done
    row = store.trial_row(trial, result, wall_s=wall_s, provenance=provenance, restarts=_restarts(trial))
    store.write_run(trial.results, row)
    if row.status in DONE_STATUSES:
        checkpoint.remove(trial.checkpoint_dir)  # a finished trial is never resumed
    return row


def _restarts(trial: Trial) -> int:
    """Starts of training before the last one, from the lease history (0 where there are no leases)."""
    if not leases.supported(trial.results):
        return 0
    return max(0, len(leases.history(trial.results, trial.trial_id)) - 1)


def execute_many(trials: Sequence[Trial], provenance: dict[str, str], *, reraise: bool = False) -> list[store.RunRow]:
    """`execute` for trials one `train_many` pass trains together; each row's `wall_s` is the
    trial's share of the pass (its wall time over the trials in it)."""
    start = time.perf_counter()
    try:
        results = many_trainer_of(trials[0])(trials, None)
    except Exception as err:  # noqa: BLE001 - the pass's trials fail, not the sweep
        if reraise or is_storage_failure(err):  # a full disk fails no trial: the run stops, the next one resumes
            raise
        results = [TrialResult.failed(t.config, _error_text(err)) for t in trials]
    share = (time.perf_counter() - start) / len(trials)
    return [_write(t, r, share, provenance) for t, r in zip(trials, results)]


def run_leased(
    trial: Trial, report: Callable[[dict], None], provenance: dict[str, str], *, owner: str, retry_here: bool,
    warn: Callable[[str], None] = lambda text: print(f"scalegrid: warning: {text}", file=sys.stderr),
    resuming: Callable[[int, int], None] = lambda attempt, step: None,
) -> store.RunRow | str:
    """Train `trial` under its lease; returns the run row it wrote, or ELSEWHERE or ALREADY_DONE.

    `retry_here`: retry a raising trainer in this process (packs); otherwise re-raise while
    attempts remain and let Ray Tune retry. `warn` tells the driver of an unreadable checkpoint,
    `resuming(attempt, step)` of an attempt after the first or one that starts from a checkpoint.
    """
    ft, results = trial.fault_tolerance, trial.results
    if not leases.supported(results):  # no conditional create here: no lease, no attempt count, so no Tune retry
        return execute(trial, report, provenance)
    lease, _ = leases.acquire(results, trial.trial_id, owner=owner, expiry_s=ft.lease_expiry_s)
    if lease is None:
        return ELSEWHERE
    try:
        with lease.heartbeating():
            while True:
                history = leases.history(results, trial.trial_id)
                if done_here(trial, history):
                    return ALREADY_DONE  # another driver finished it between our plan and our lease
                attempt = 1 + sum(h.get("owner") == owner for h in history)
                resumed_from, notes = checkpoint.resume_point(trial.checkpoint_dir)  # unreadable ones set aside
                for note in notes:
                    warn(f"trial {trial.trial_id}: {note}")
                if attempt > 1 or resumed_from > 0:
                    resuming(attempt, resumed_from)
                starting = functools.partial(record_start, trial, owner)
                if trial.resources.workers == 1:  # several: rank 0 records each start of its workers
                    starting()
                last = attempt > ft.max_failures
                try:
                    return execute(trial, report, provenance, reraise=not last, starting=starting if trial.resources.workers > 1 else None)
                except Exception as err:
                    if not retry_here or is_storage_failure(err):
                        raise  # Ray Tune retries the trial; the retry takes this lease over (same owner)
    finally:
        lease.release()


def done_here(trial: Trial, history: list) -> bool:
    """Its run row says done, and the model a stage needs of it is saved (a member trained without
    `keep_weights` is trained again to save it: the same result, deterministic, and its weights).
    Only a trial someone started (its lease history) can have a row in a part file
    (`store.compact`): without one, only its own file is looked at, which spares every fresh trial
    a listing of runs/."""
    done = store.run_status(trial.results, trial.trial_id, folded=bool(history)) in DONE_STATUSES
    return done and not (trial.save_model and not trial.results.has_model(trial.trial_id))


def _attempt(trial: Trial, owner: str) -> int:
    """This owner's next attempt at the trial: 1 + its starts in the lease history."""
    return 1 + sum(h.get("owner") == owner for h in leases.history(trial.results, trial.trial_id))


def record_start(trial: Trial, owner: str) -> None:
    """One start of training in the trial's lease history: the owner's attempt, the checkpoint it
    resumes from (unreadable newer ones set aside first), the Ray node. Called by the Tune trial, or
    by rank 0 of a multi-worker trial at each start of its worker group."""
    step, _ = checkpoint.resume_point(trial.checkpoint_dir)
    leases.record_start(trial.results, trial.trial_id, owner=owner, attempt=_attempt(trial, owner), resumed_from_step=step, node=_ray_node())


def _ray_node() -> str | None:
    ray = sys.modules.get("ray")
    try:
        return ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - provenance only
        return None


PACK_REPORT_S = 1.0  # a pack reports its count at most this often: each report waits for the driver


class TuneReports:
    """What a Tune trial tells the driver as it runs: every evaluation row of a single trial (with
    the FLOPs done so far), a pack's finished count; Tune's callbacks (progress, trackers) see each."""

    def __init__(self, trials: list[Trial], send: Callable[[dict], None]):
        self.trials, self.send = trials, send
        self.flops_before = 0.0  # of the pack's trials already finished
        self.finished, self.sent_at = 0, 0.0

    def row(self, trial: Trial) -> Callable[[dict], None]:
        """The trainer's `report` for `trial`."""

        def report(row: dict) -> None:
            if len(self.trials) > 1:
                return  # a pack's rows are many trials' curves: its trials' count is reported instead
            share = row.get("tokens_seen", 0) / max(1, trial.config.tokens_seen)
            numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            self.send({**numbers, "flops_done": self.flops_before + share * trial.config.estimated_flops})

        return report

    def trial_done(self, trial: Trial) -> None:
        self.flops_before += trial.config.estimated_flops
        self.finished += 1
        if len(self.trials) > 1 and time.monotonic() - self.sent_at >= PACK_REPORT_S:
            self.sent_at = time.monotonic()
            self.send({"trials_done": self.finished, "flops_done": self.flops_before})


def run_leased_group(
    trials: list[Trial], report_of: Callable[[Trial], Callable[[dict], None]], provenance: dict[str, str], *,
    owner: str, retry_here: bool, warn: Callable[[str], None] = lambda text: print(f"scalegrid: warning: {text}", file=sys.stderr),
    resuming: Callable[[int, int], None] = lambda attempt, step: None,
) -> list[store.RunRow | str]:
    """`run_leased` for trials one `train_many` pass trains (a `vector_groups` group): each under
    its own lease, one pass over those this worker holds and no driver finished, retried here.
    Returns each trial's outcome, in order."""
    if len(trials) == 1 or many_trainer_of(trials[0]) is None:
        return [run_leased(t, report_of(t), provenance, owner=owner, retry_here=retry_here, warn=warn, resuming=resuming) for t in trials]
    results, ft = trials[0].results, trials[0].fault_tolerance
    if not leases.supported(results):  # no leases (see run_leased)
        return list(execute_many(trials, provenance))
    outcomes: dict[str, store.RunRow | str] = {}
    with contextlib.ExitStack() as held:
        mine = []
        for trial in trials:
            lease, _ = leases.acquire(results, trial.trial_id, owner=owner, expiry_s=ft.lease_expiry_s)
            if lease is None:
                outcomes[trial.trial_id] = ELSEWHERE
                continue
            held.callback(lease.release)
            held.enter_context(lease.heartbeating())
            if done_here(trial, leases.history(results, trial.trial_id)):
                outcomes[trial.trial_id] = ALREADY_DONE
            else:
                mine.append(trial)
        while mine:
            attempt = max(_attempt(t, owner) for t in mine)
            for trial in mine:
                leases.record_start(results, trial.trial_id, owner=owner, attempt=attempt, resumed_from_step=0, node=_ray_node())
            try:
                outcomes.update((row.trial_id, row) for row in execute_many(mine, provenance, reraise=attempt <= ft.max_failures))
                break
            except Exception as err:  # noqa: BLE001 - retried here while attempts remain
                if is_storage_failure(err):
                    raise
                continue
    return [outcomes[t.trial_id] for t in trials]


def tune_trainable(config: dict, templates: dict[str, Trial], provenance: dict[str, str], owner: str) -> None:
    """The Ray Tune function trainable of every sweep: one pack (usually one trial), each trial
    rebuilt from its template (`trial_feeds.Pack`) and checked against the id the driver gave it."""
    from ray import tune  # in the Tune worker: Ray is there

    trials = []
    for key, values, expected in config["trials"]:
        trial = grid.trial_at(templates[key], values)
        if trial.trial_id != expected:
            raise RuntimeError(f"trial {expected} rebuilt as {trial.trial_id}: the driver and the worker hash differently")
        trials.append(trial)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    reports = TuneReports(trials, tune.report)

    def warn(text: str) -> None:  # the driver's progress callback prints it
        tune.report({"warning": text})

    def resuming(attempt: int, step: int) -> None:  # ... and says where a trial starts again
        tune.report({"attempt": attempt, "resumed_from_step": step})

    counts: dict[str, int] = {}
    final: dict[str, str | int] = {}  # why the results stopped taking writes, and its errno
    for group in vector_groups(trials):
        try:
            outcomes = run_leased_group(group, reports.row, provenance, owner=owner, retry_here=len(trials) > 1, warn=warn,
                                        resuming=resuming)
        except Exception as err:
            if not is_storage_failure(err):
                raise
            # No retry (there is no room for one) and no FAILED row: the driver stops and says so.
            counts[STORAGE_FAILED] = counts.get(STORAGE_FAILED, 0) + len(trials) - sum(counts.values())
            code = getattr(err, "errno", None) or errno.ENOSPC
            final["storage_failed"] = str(err if isinstance(err, StorageError) else storage_error(group[0].results.shown(), errno_=code))
            final["storage_errno"] = code
            break
        for trial, outcome in zip(group, outcomes):
            status = outcome if isinstance(outcome, str) else outcome.status
            counts[status] = counts.get(status, 0) + 1
            reports.trial_done(trial)
    # The outcome, without losses: trackers' histories hold the evaluation rows only, once each.
    tune.report({**final, "flops_done": reports.flops_before, **{f"n_{status}": n for status, n in counts.items()}})

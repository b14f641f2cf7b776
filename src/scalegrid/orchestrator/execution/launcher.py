"""The one launcher: every trial of a sweep, grid or search, runs under one `Tuner` built here.

    schedule(plan, provenance)    a grid's pending trials (or the students `stage_tasks` passes)
    search(plan, provenance)      every cell's walk to its end (certified, at an edge or diverged)

Both build the same `Tuner` (`launch`): a feed as its search algorithm (`trial_feeds.py`: the
grid's packs in order, or what the walks need now), one trainable (`trial_worker.tune_trainable`),
and the same callbacks — the live progress (`display/progress.py`), the spec's trackers
(`display/tracking.py`: one tracked run per trial) and any a caller adds — the same failure config
(`fault_tolerance.max_failures` retries), the same storage (Tune's experiment state under
`RESULTS/tune/`, for debugging only: what is done is read from the results store) and the same
slot rule (`planning/capacity.py`). A full results disk stops every trial (`_StopWhenFull`) and the
run ends in one line that says how much the rest needs.

A grid is fed at most `CHUNK` Tune trials per `Tuner.fit()`, so the driver's memory stays flat
however large the grid (Tune's grows with every trial it knows); the `Trial`s travel through the
object store once per chunk (`tune.with_parameters`). While it trains, the trials' own row files
are folded into parts (`store.Compactor`), so the reads after it open a few files, not one per trial. Every worker takes its trial's lease first
(`leases`): a trial another live driver trains is skipped, and after Tune is done this driver waits
for those; a trial whose lease lapses without a row (its driver was killed) is scheduled again
here and resumes from its checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import sys
import time
from collections.abc import Sequence

from scalegrid import store
from scalegrid.errors import StorageError
from scalegrid.orchestrator import leases
from scalegrid.orchestrator.display import console, tracking
from scalegrid.orchestrator.display.progress import SweepProgress, duration, progress_callback
from scalegrid.orchestrator.execution.trial_feeds import Feed, GridFeed, WalkFeed, make_packs, tune_searcher
from scalegrid.orchestrator.execution.trial_worker import tune_trainable
from scalegrid.orchestrator.execution.ray_session import growable_resources
from scalegrid.orchestrator.execution.walk_driver import SearchDriver
from scalegrid.orchestrator.planning import capacity
from scalegrid.orchestrator.planning.cells import search_cells, states_line
from scalegrid.orchestrator.planning.sweep_plan import SweepPlan, space_needed
from scalegrid.storage.space import storage_error, is_storage_failure
from scalegrid.trial import Trial

CHUNK = 256  # Tune trials per Tuner.fit()
PACKED_TRAINERS = ("linreg",)  # milliseconds per trial: no checkpoints, packed
POLL_S = 1.0
MAX_ROUNDS = 10  # schedule, wait for other drivers, take over what they left: at most this often


def schedule(
    plan: SweepPlan, provenance: dict[str, str], *, max_concurrent: int | None = None, owner: str | None = None,
    trials: list[Trial] | None = None, callbacks: Sequence = (),
) -> None:
    """Train `trials` (default: the plan's pending train-stage trials; `stage_tasks` passes the students)."""
    owner = owner or leases.new_owner()
    # Longest first: the grid's makespan is not left to one long trial started last.
    todo = plan.pending if trials is None else trials
    todo = sorted(todo, key=lambda t: capacity.longest_first_key(t.config.estimated_flops, t.resources), reverse=True)
    with store.Compactor(plan.results) as compactor:  # the trials' own files folded into parts as they land
        for _ in range(MAX_ROUNDS):
            if not todo:
                break
            skipped = _fit_grid(plan, todo, provenance, max_concurrent, owner, callbacks)
            todo = _after_others(todo, owner) if skipped else []
    if compactor.error is not None:
        print(f"scalegrid: warning: compacting the results' row files failed ({compactor.error}); every file was kept",
              file=sys.stderr, flush=True)


def _fit_grid(plan: SweepPlan, pending: list[Trial], provenance: dict[str, str], max_concurrent: int | None, owner: str,
              callbacks: Sequence) -> int:
    """`pending` in chunks of CHUNK Tune trials; returns how many another driver held (skipped here)."""
    sweep = plan.sweep
    packs = make_packs(pending, _packed(plan), slots(plan, max_concurrent), group=capacity.shares_trunks(sweep))
    progress = SweepProgress(total=0, planned_flops={}, already_done=len(plan.trials) - len(pending),
                             slots=slots(plan, max_concurrent))
    for pack in GridFeed(packs).packs:  # every pack's FLOPs known from the start: the ETA weighs them all
        progress.planned(pack.key, pack.flops, len(pack.trials), pack.trials[0].model_label)
    skipped = 0
    for first in range(0, len(packs), CHUNK):
        outcome = launch(plan, GridFeed(packs[first:first + CHUNK]), provenance, progress=progress, owner=owner,
                         max_concurrent=max_concurrent, callbacks=callbacks)
        skipped += outcome
    return skipped


def search(plan: SweepPlan, provenance: dict[str, str], *, max_concurrent: int | None = None, callbacks: Sequence = ()) -> SearchDriver:
    """Walk every cell of a searched spec to its end, training on Ray Tune what the walks need;
    returns the driver (its walks, what it trained)."""
    owner = leases.new_owner()
    driver = SearchDriver(plan.sweep, search_cells(plan.sweep, plan.data, plan.results), plan.results, plan.snapshot)
    if driver.finished:
        return driver
    feed = WalkFeed(driver, slots=slots(plan, max_concurrent), pack=_packed(plan))
    progress = SweepProgress(total=0, planned_flops={}, slots=feed.slots, open_ended=True,
                             note=lambda: f"search: {states_line(driver.searches)}")
    launch(plan, feed, provenance, progress=progress, owner=owner, max_concurrent=max_concurrent, callbacks=callbacks)
    wall = time.monotonic() - feed.started
    console.info(f"search: {driver.trained} trials trained in {duration(wall)}; the {feed.slots} slots were busy "
                 f"{feed.busy_fraction:.0%} of the time")
    return driver


def launch(
    plan: SweepPlan, feed: Feed, provenance: dict[str, str], *, progress: SweepProgress, owner: str,
    max_concurrent: int | None, callbacks: Sequence = (),
) -> int:
    """Run `feed` under one Tuner until it is finished; returns how many of its trials another
    driver held (skipped here). Raises the one-line full-disk error when the results filled up.

    Every Tuner of a sweep, each invocation's, each chunk's and a search's, keeps its state in one
    directory, RESULTS/tune/<sweep>/, a trial's under its trial_id: one TensorBoard run per trial,
    however often the sweep was resumed."""
    from ray import tune  # Ray loads where a sweep runs, never where it is planned

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress lines replace Tune's tables
    # Ctrl-C must stop the run (exit 130 from the cli), not end Tune's loop quietly and let the run
    # go on to its summary: what was not finished is finished by the next run.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the loggers are `tracking.callbacks`'
    sweep, full, shown = plan.sweep, _stop_when_full(), progress_callback(progress)
    trainable = tune.with_resources(
        tune.with_parameters(tune_trainable, templates=feed.templates, provenance=provenance, owner=owner),
        capacity.tune_resources(sweep.resources),  # a multi-worker trial's workers reserve the rest
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=tune_searcher(feed, progress), num_samples=-1, max_concurrent_trials=slots(plan, max_concurrent),
            trial_name_creator=_name, trial_dirname_creator=_name,
        ),
        run_config=tune.RunConfig(
            name=sweep.name, storage_path=plan.results.uri_of(*plan.results.tune_dir()), verbose=0,
            callbacks=[shown, *tracking.callbacks(sweep, plan.results), *callbacks],
            failure_config=tune.FailureConfig(max_failures=sweep.fault_tolerance.max_failures), stop=full,
        ),
    )
    # Tune's own writes into RESULTS/tune meet a full disk too: its logs of it are filtered
    with _logs_filtered(full), tracking.environment(sweep):
        try:
            results = tuner.fit()
        finally:
            shown.close()  # the live table is gone before anything else is printed, interrupted or not
    skipped = sum((r.metrics or {}).get("n_ELSEWHERE", 0) for r in results)
    del tuner, trainable, results  # nothing of a finished chunk stays referenced
    if full.message is not None:  # stop with one line: for a full store, how much the rest needs
        if full.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise StorageError(full.message)
        needs = space_needed(plan.refresh(), slots=slots(plan, max_concurrent))
        raise storage_error(plan.results.shown(), needed=sum(needs.values()))
    return skipped


def slots(plan: SweepPlan, max_concurrent: int | None) -> int:
    """Trials at once (`capacity.concurrent`) in the Ray session this process joined, counting the
    nodes its autoscaler may add (`ray_session.growable_resources`): a cold cluster grows to them."""
    return capacity.concurrent(growable_resources(), plan.sweep.resources, max_concurrent)


_TUNE_STATE_LOGGERS = ("ray.tune.execution.experiment_state", "ray.train._internal.syncer", "ray.tune.execution.tune_controller")


@contextlib.contextmanager
def _logs_filtered(log_filter: logging.Filter):
    loggers = [logging.getLogger(name) for name in _TUNE_STATE_LOGGERS]  # a filter is not inherited
    for logger in loggers:
        logger.addFilter(log_filter)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(log_filter)


class StopWhenFull(logging.Filter):
    """Stops every trial once the results' storage stops taking writes (full, read-only, failing: a
    worker reports it, or Tune's own state sync logs it): the rest would fail too. Tune's log of it
    is dropped: one line says it. (`_stop_when_full` adds Tune's `Stopper` base class.)"""

    def __init__(self):
        logging.Filter.__init__(self)
        self.message: str | None = None
        self.errno: int = errno.ENOSPC

    def __call__(self, trial_id: str, result: dict) -> bool:
        if result.get("storage_failed"):
            self.message, self.errno = result["storage_failed"], int(result.get("storage_errno", errno.ENOSPC))
        return False

    def stop_all(self) -> bool:
        return self.message is not None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and is_storage_failure(record.exc_info[1]):
            if self.message is None:
                self.message, self.errno = str(record.exc_info[1]), getattr(record.exc_info[1], "errno", None) or errno.ENOSPC
            return False
        return True


@functools.cache
def _stopper_class():
    from ray.tune import Stopper  # Ray loads where a sweep runs, never where it is planned

    return type("StopWhenFullStopper", (StopWhenFull, Stopper), {"__module__": __name__})


def _stop_when_full() -> StopWhenFull:
    return _stopper_class()()


def _packed(plan: SweepPlan) -> bool:
    """Pack fast trainers' trials, unless they are tracked: a tracker's run is one Tune trial, and
    each trial gets its own (named by its trial_id)."""
    sweep = plan.sweep
    if sweep.trainer not in PACKED_TRAINERS:
        return False
    if sweep.tracking.enabled:
        console.info(f"tracking: each {sweep.trainer} trial is its own Tune trial (one tracked run each), not packed")
        return False
    return True


def _after_others(trials: list[Trial], owner: str) -> list[Trial]:
    """Wait for the trials other drivers hold; return those to schedule again (their lease lapsed, no row).

    A trial this driver started is never scheduled again here: its outcome is its row (or, out of
    Tune's retries, none: the next run retries it).
    """
    others = [
        t for t in trials
        if leases.supported(t.results) and store.run_status(t.results, t.trial_id) is None and not _started_by(t, owner)
    ]
    if not others:
        return []
    console.info(f"waiting for {len(others)} trials running elsewhere (leases held by other drivers)")
    again = []
    while others:
        waiting = []
        for t in others:
            if store.run_status(t.results, t.trial_id) is not None:
                continue
            if leases.holder(t.results, t.trial_id, t.fault_tolerance.lease_expiry_s) is None:
                again.append(t)  # released without a row, or its driver died: ours now
            else:
                waiting.append(t)
        others = waiting
        if others:
            time.sleep(POLL_S)
    if again:
        console.info(f"{len(again)} trials were left unfinished elsewhere: scheduling them here")
    return again


def _started_by(trial: Trial, owner: str) -> bool:
    return any(h.get("owner") == owner for h in leases.history(trial.results, trial.trial_id))


def _name(tune_trial) -> str:
    """A Tune trial's name and directory: its trial_id (a pack's: its first trial_id and +N), so a
    tracker's run is named by it."""
    return tune_trial.config["pack"]

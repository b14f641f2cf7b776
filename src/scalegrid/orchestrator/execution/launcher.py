"""Schedule a plan's pending trials on Ray Tune and report what the store holds afterwards.

Tune trials are grid points, or for trainers too fast to be worth Tune's ~2 s per trial
(`linreg`), packs of grid points: one Ray task trains a pack, each point with its own lease,
trial_id and rows; the points one vectorised pass trains together (`trainers.vector_groups`:
linreg's lrs of one grid point) stay in one pack and are trained in that one pass. Tune is fed at most `CHUNK` trials per `Tuner.fit()`, so the
driver's memory stays flat however large the grid (Tune's grows with every trial it knows). The
`Trial` objects travel through the object store once per chunk, with `tune.with_parameters`.

Every worker takes its trial's lease first (`leases.py`): a trial another live driver is training
is skipped, and after Tune is done this driver waits for those; a trial whose lease lapses without
a row (its driver was killed) is scheduled again here and resumes from its checkpoint.

Each Tune trial's config is its trial's hyperparameters, flattened (`tracking.param_space`), and
it is named by its trial_id; every evaluation row is reported to Tune as it happens. So Tune's
callbacks see both: the live progress (`progress.py`) and the trackers of the spec's `tracking:`
section (`tracking.py`: W&B, MLflow, TensorBoard), or any a user adds.

Tune's own experiment state is kept under `RESULTS/tune/` for debugging only: whether a trial is
done is read from the results store, so a re-run never depends on it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import sys
import time

from ray.tune import Stopper

from scalegrid import store
from scalegrid.orchestrator import leases
from scalegrid.orchestrator.display import tracking
from scalegrid.orchestrator.planning import capacity as resources
from scalegrid.orchestrator.planning.sweep_plan import SweepPlan, space_needed
from scalegrid.orchestrator.display.progress import Progress, SweepProgress
from scalegrid.orchestrator.execution.trial_worker import tune_trainable
from scalegrid.spec import SweepSpec
from scalegrid.storage.space import full_error, is_full
from scalegrid.trainers import vector_groups
from scalegrid.trial import Trial

CHUNK = 256  # Tune trials per Tuner.fit()
PACKED_TRAINERS = ("linreg",)  # milliseconds per trial: no checkpoints, packed
MAX_PACK = 64
POLL_S = 1.0
MAX_ROUNDS = 10  # schedule, wait for other drivers, take over what they left: at most this often


def schedule(
    plan: SweepPlan,
    provenance: dict[str, str],
    *,
    max_concurrent: int | None = None,
    owner: str | None = None,
    trials: list[Trial] | None = None,
) -> None:
    """Train `trials` (default: the plan's pending train-stage trials; `stages` passes the students)."""
    owner = owner or leases.new_owner()
    # Longest first: the grid's makespan is not left to one long trial started last.
    todo = plan.pending if trials is None else trials
    todo = sorted(todo, key=lambda t: resources.longest_first_key(t.config.estimated_flops, t.resources), reverse=True)
    for _ in range(MAX_ROUNDS):
        if not todo:
            break
        skipped = _fit(plan, todo, provenance, max_concurrent, owner)
        todo = _after_others(todo, owner) if skipped else []


def _fit(plan: SweepPlan, pending: list[Trial], provenance: dict[str, str], max_concurrent: int | None, owner: str) -> int:
    """Run `pending` on Tune; returns how many of them another driver held (skipped here)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress lines replace Tune's tables
    # Ctrl-C must stop the run (exit 130 from the cli), not end Tune's loop quietly and let the run
    # go on to its summary: what was not finished is finished by the next run.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the loggers are `tracking.callbacks`'
    from ray import tune

    spec = plan.spec
    # A wsd trunk's epoch counts share one Tune trial, in one process: not when tracked (one tracker
    # run per Tune trial) nor for Ray Train's multi-worker trials.
    group = not spec.tracking.enabled and spec.resources.workers == 1
    packs = make_packs(pending, _packed(spec), _slots(plan, max_concurrent), group=group)
    keys = list(packs)
    progress = Progress(SweepProgress(
        total=len(pending), already_done=len(plan.trials) - len(pending),
        planned_flops={k: sum(t.config.estimated_flops for t in v) for k, v in packs.items()},
        pack_sizes={k: len(v) for k, v in packs.items()},
    ))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    skipped = 0
    full = _StopWhenFull()
    for first in range(0, len(keys), CHUNK):
        chunk = {k: packs[k] for k in keys[first : first + CHUNK]}
        trainable = tune.with_resources(
            tune.with_parameters(tune_trainable, packs=chunk, provenance=provenance, owner=owner),
            resources.tune_resources(spec.resources),  # a multi-worker trial's workers reserve the rest
        )
        tuner = tune.Tuner(
            trainable,
            param_space=tracking.param_space(chunk),  # each Tune trial's config: its hyperparameters, flat
            tune_config=tune.TuneConfig(max_concurrent_trials=_concurrent(plan, max_concurrent), trial_name_creator=_name, trial_dirname_creator=_name),
            run_config=tune.RunConfig(
                name=f"{spec.name}-{stamp}-{owner[-6:]}" + (f"-{first // CHUNK}" if first else ""),
                storage_path=_tune_storage(plan),
                verbose=0,
                callbacks=[progress, *tracking.callbacks(spec, plan.results)],
                failure_config=tune.FailureConfig(max_failures=spec.fault_tolerance.max_failures),
                stop=full,
            ),
        )
        # Tune's own writes into RESULTS/tune meet a full disk too: its logs of it are filtered
        with _logs_filtered(full), tracking.environment(spec):
            results = tuner.fit()
        skipped += sum((r.metrics or {}).get("n_ELSEWHERE", 0) for r in results)
        del tuner, trainable, results  # nothing of a finished chunk stays referenced
        if full.message:  # stop with one line that says how much the rest needs
            needs = space_needed(plan.refresh(), slots=_slots(plan, max_concurrent))
            raise full_error(plan.results.shown(), needed=sum(needs.values()))
    return skipped


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


class _StopWhenFull(Stopper, logging.Filter):
    """Stops every trial once the results' filesystem is full (a worker reports it, or Tune's own
    state sync logs it): the rest would fail too. Tune's log of it is dropped: one line says it."""

    def __init__(self):
        logging.Filter.__init__(self)
        self.message: str | None = None

    def __call__(self, trial_id: str, result: dict) -> bool:
        if result.get("disk_full"):
            self.message = result["disk_full"]
        return False

    def stop_all(self) -> bool:
        return self.message is not None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and is_full(record.exc_info[1]):
            self.message = self.message or str(record.exc_info[1])
            return False
        return True


def _packed(spec: SweepSpec) -> bool:
    """Pack fast trainers' trials, unless they are tracked: a tracker's run is one Tune trial, and
    each trial gets its own (named by its trial_id)."""
    if spec.trainer not in PACKED_TRAINERS:
        return False
    if spec.tracking.enabled:
        print(f"tracking: each {spec.trainer} trial is its own Tune trial (one tracked run each), not packed", file=sys.stderr)
        return False
    return True


def make_packs(trials: list[Trial], pack: bool, slots: int, group: bool = False) -> dict[str, list[Trial]]:
    """Pack key -> trials. Packed: about 4 packs per slot (so the slots stay busy), at most MAX_PACK
    each unless one vectorised group is larger; a group is never split. Not packed: one pack per
    group (`group`: a `wsd` trunk's epoch counts, `trainers/trunks.py`), else per trial."""
    if not pack:
        groups = vector_groups(trials) if group else [[t] for t in trials]
        return {g[0].trial_id + (f"+{len(g) - 1}" if len(g) > 1 else ""): g for g in groups}
    size = min(MAX_PACK, max(1, math.ceil(len(trials) / (4 * slots))))
    packs: list[list[Trial]] = [[]]
    for group in vector_groups(trials):
        if packs[-1] and len(packs[-1]) + len(group) > size:
            packs.append([])
        packs[-1].extend(group)
    return {p[0].trial_id + (f"+{len(p) - 1}" if len(p) > 1 else ""): p for p in packs if p}


def _concurrent(plan: SweepPlan, max_concurrent: int | None) -> int | None:
    """Tune's bound on trials at once. Its own accounting bounds one-process trials (each reserves
    what it trains on); a multi-worker trial's Tune trial reserves next to nothing, so without a
    bound Tune would start drivers whose workers wait for resources until Train's start timeout."""
    return _slots(plan, max_concurrent) if plan.spec.resources.workers > 1 else max_concurrent


def _slots(plan: SweepPlan, max_concurrent: int | None) -> int:
    """Trials at once: what the cluster's CPUs and GPUs hold (`resources.slots`), at most --max-concurrent."""
    import ray

    slots = resources.slots(ray.cluster_resources(), plan.spec.resources)
    return min(slots, max_concurrent) if max_concurrent else slots


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
    print(f"waiting for {len(others)} trials running elsewhere (leases held by other drivers)", file=sys.stderr, flush=True)
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
        print(f"{len(again)} trials were left unfinished elsewhere: scheduling them here", file=sys.stderr, flush=True)
    return again


def _started_by(trial: Trial, owner: str) -> bool:
    return any(h.get("owner") == owner for h in leases.history(trial.results, trial.trial_id))


def _tune_storage(plan: SweepPlan) -> str:
    """Tune's experiment state beside the results: a local directory, or the object store's URI."""
    return plan.results.uri_of(*plan.results.tune_dir())


def _name(tune_trial) -> str:
    """A Tune trial's name and directory: its trial_id (a pack's: its first trial_id and +N), so a
    tracker's run is named by it."""
    return tune_trial.config["pack"]

"""A sweep's search on Ray Tune: a `Searcher` that asks the search's driver what to train next.

Ray Tune asks a searcher for a trial whenever it could start one (`suggest`). `LocalSearcher`
answers with what the cells' walks need now, across every cell and longest first, so many cells
advance at once and no slot idles while one cell waits for its last neighbour: when no walk needs
anything, a cell whose best neighbour so far beats its centre gets that neighbour's neighbourhood
trained ahead (`SearchPath.speculative`). It holds at most one Tune trial per slot; for `linreg` a
Tune trial is a pack (what is needed, split over the free slots, at most MAX_PACK each), as in a
grid. When a Tune trial ends, the driver reads its trials' rows from the store and walks again.

A Tune trial carries (cell, axis values, trial_id) per trial; the worker rebuilds each `Trial`
from its cell's template (`search.trial_at`, the driver's own function) and checks the id. The
store, not Tune's experiment state, is the search's state: `save` writes nothing, and a re-run
replays the walks from the run rows.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
import time

from ray import tune
from ray.tune.search import Searcher

from scalegrid import grid
from scalegrid.orchestrator import leases
from scalegrid.orchestrator.planning.sweep_plan import SweepPlan
from scalegrid.orchestrator.display.progress import duration as _duration
from scalegrid.orchestrator.execution.launcher import MAX_PACK, PACKED_TRAINERS, _name, _slots, _tune_storage
from scalegrid.orchestrator.execution.walk_driver import SearchDriver
from scalegrid.orchestrator.planning.cells import search_cells, trial_at
from scalegrid.orchestrator.execution.trial_worker import tune_trainable
from scalegrid.trial import Trial


class LocalSearcher(Searcher):
    def __init__(self, driver: SearchDriver, *, slots: int, pack: bool):
        super().__init__()
        self.driver, self.slots, self.pack = driver, slots, pack
        self.running: dict[str, list[Trial]] = {}  # Tune trial id -> the trials it trains
        self.started = self.last_event = time.monotonic()
        self.busy_s = 0.0  # slot-seconds with a Tune trial running: how well the slots were kept busy

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the search space is the spec's ladders, given already

    def _tick(self) -> None:
        now = time.monotonic()
        self.busy_s += (now - self.last_event) * min(len(self.running), self.slots)
        self.last_event = now

    def suggest(self, trial_id: str) -> dict | str | None:
        self.driver.poll()
        self._tick()
        free = self.slots - len(self.running)
        if free <= 0:
            return None
        size = 1
        if self.pack:
            needed, maybe = self.driver.wanted()
            size = min(MAX_PACK, max(1, math.ceil(len(needed or maybe) / free)))
        trials = self.driver.take(size)
        if not trials:
            if not self.driver.finished:
                return None
            wall = time.monotonic() - self.started
            print(f"search: {self.driver.trained} trials trained in {_duration(wall)}; the {self.slots} slots were busy "
                  f"{self.busy_s / max(wall * self.slots, 1e-9):.0%} of the time", file=sys.stderr, flush=True)
            return Searcher.FINISHED
        self.running[trial_id] = trials
        searched = list(self.driver.spec.search.axes)
        return {
            "pack": trials[0].trial_id + (f"+{len(trials) - 1}" if len(trials) > 1 else ""),
            "trials": [[self.driver.in_flight[t.trial_id], grid.values_of(t.config, searched), t.trial_id] for t in trials],
        }

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._tick()
        trials = self.running.pop(trial_id, [])
        self.driver.landed(trials)
        last = (result or {}).get("val_loss")
        tail = f"  (last val_loss {last:.4f})" if isinstance(last, float) and len(trials) == 1 else ""
        print(
            f"[{_duration(time.monotonic() - self.started)}] search: {self.driver.trained} trained, "
            f"{sum(map(len, self.running.values()))} running; {self.driver.summary()}{tail}",
            file=sys.stderr, flush=True,
        )

    def save(self, checkpoint_path: str) -> None:
        """Nothing: the results store is the search's state."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing: a re-run replays the walks from the results store."""


def search_trainable(config: dict, templates: dict[str, Trial], provenance: dict[str, str], owner: str) -> None:
    """The Tune trainable of a search: rebuild the pack's trials, then train them like a grid's."""
    trials = []
    for cell_id, values, expected in config["trials"]:
        trial = trial_at(templates[cell_id], values)
        if trial.trial_id != expected:
            raise RuntimeError(f"trial {expected} rebuilt as {trial.trial_id}: the driver and the worker hash differently")
        trials.append(trial)
    tune_trainable({"pack": config["pack"]}, {config["pack"]: trials}, provenance, owner)


def run_search(plan: SweepPlan, provenance: dict[str, str], *, max_concurrent: int | None = None) -> SearchDriver:
    """Walk every cell of a searched spec to its end (certified, at an edge or diverged), training
    on Ray Tune what the walks need; returns the driver (its walks, what it trained)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C stops the run (exit 130), as in a grid
    spec, owner = plan.spec, leases.new_owner()
    cells = search_cells(spec, plan.data, plan.results)
    driver = SearchDriver(spec, cells, plan.results, plan.snapshot)
    if driver.finished:
        return driver
    searcher = LocalSearcher(driver, slots=_slots(plan, max_concurrent), pack=spec.trainer in PACKED_TRAINERS)
    trainable = tune.with_resources(
        tune.with_parameters(search_trainable, templates={c.cell_id: c.template for c in cells}, provenance=provenance, owner=owner),
        {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus},
    )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1, trial_name_creator=_name, trial_dirname_creator=_name),
        run_config=tune.RunConfig(
            name=f"{spec.name}-search-{stamp}-{owner[-6:]}", storage_path=_tune_storage(plan), verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.fault_tolerance.max_failures),
        ),
    )
    tuner.fit()
    return driver

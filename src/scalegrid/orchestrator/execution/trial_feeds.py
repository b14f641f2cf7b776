"""What the one Tuner of a sweep trains next: a feed of packs, a grid's or a search's.

Ray Tune asks its search algorithm for a Tune trial whenever it could start one. Whatever chooses
the trials, the answer is a *pack*: one trial, or for trainers too fast to be worth Tune's ~2 s
per trial (`linreg`) several, each with its own lease, trial_id and rows. A pack travels as its
key and one (template, values, trial_id) per trial; the worker rebuilds each `Trial` from a
template it was given (`grid.trial_at`) and checks the id, so the driver and the worker never
disagree on what a trial is. Each Tune trial's config also holds the trial's hyperparameters,
flat (`tracking.pack_hyperparameters`), which is what the trackers log.

    GridFeed(packs)                 a grid's packs in the order given (longest first), then done
    WalkFeed(driver, slots, pack)   what the cells' walks need now, across cells (`walk_driver.py`)
    tune_searcher(feed, progress)   either one as Ray Tune's `Searcher`; each pack told to the progress

A walk's feed answers with what the walks need now, across every cell and longest first, so many
cells advance at once and no slot idles while one cell waits for its last neighbour: when no walk
needs anything, a cell whose best neighbour so far beats its centre gets that neighbour's
neighbourhood trained ahead (`SearchPath.speculative`). It holds at most one Tune trial per slot.
The store, not Tune's experiment state, is every feed's state: `save` writes nothing, and a re-run
plans again from the run rows.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

from scalegrid import grid
from scalegrid.analysis.walk import Coordinates
from scalegrid.orchestrator.display.progress import SweepProgress
from scalegrid.orchestrator.display.tracking import pack_hyperparameters
from scalegrid.orchestrator.execution.walk_driver import SearchDriver
from scalegrid.trainers import vector_groups
from scalegrid.trial import Trial

MAX_PACK = 64  # trials in one pack, unless one vectorised group is larger
FINISHED = "FINISHED"  # a feed with nothing more to give, ever (Ray Tune's `Searcher.FINISHED`)
Entry = tuple[str, Coordinates, str]  # (template key, the values set on it, the trial_id it must hash to)


def pack_key(trials: list[Trial]) -> str:
    """A pack's name, and its Tune trial's: its first trial_id, and +N for the N others."""
    return trials[0].trial_id + (f"+{len(trials) - 1}" if len(trials) > 1 else "")


@dataclass(frozen=True)
class Pack:
    key: str
    trials: list[Trial]
    entries: list[Entry]

    def config(self) -> dict[str, object]:
        """The Tune trial's config: the pack, its trials to rebuild (`tracking.ROUTING`), and their hyperparameters."""
        return {"pack": self.key, "trials": [list(e) for e in self.entries], **pack_hyperparameters(self.trials)}

    @property
    def flops(self) -> float:
        return sum(t.config.estimated_flops for t in self.trials)


def make_packs(trials: list[Trial], pack: bool, slots: int, group: bool = False) -> list[list[Trial]]:
    """The trials in packs. Packed: about 4 packs per slot (so the slots stay busy), at most
    MAX_PACK each unless one vectorised group is larger; a group is never split. Not packed: one
    pack per group (`group`: a `wsd` trunk's epoch counts, `trainers/trunks.py`), else per trial."""
    if not pack:
        return vector_groups(trials) if group else [[t] for t in trials]
    size = min(MAX_PACK, max(1, math.ceil(len(trials) / (4 * slots))))
    packs: list[list[Trial]] = [[]]
    for members in vector_groups(trials):
        if packs[-1] and len(packs[-1]) + len(members) > size:
            packs.append([])
        packs[-1].extend(members)
    return [p for p in packs if p]


class GridFeed:
    """A grid's packs, in order: each trial its own template."""

    def __init__(self, packs: list[list[Trial]]):
        self.templates = {t.trial_id: t for p in packs for t in p}
        self.packs = [Pack(pack_key(p), p, [(t.trial_id, {}, t.trial_id) for t in p]) for p in packs]
        self._next: Iterator[Pack] = iter(self.packs)

    def next_pack(self) -> Pack | str | None:
        return next(self._next, FINISHED)

    def landed(self, key: str) -> None:
        pass


class WalkFeed:
    """What the walks of a searched spec need now: its cells' templates, the driver's choices."""

    def __init__(self, driver: SearchDriver, *, slots: int, pack: bool):
        self.driver, self.slots, self.pack = driver, slots, pack
        self.templates = {c.cell_id: c.template for c in driver.cells}
        self.running: dict[str, list[Trial]] = {}  # pack key -> its trials
        self.started = self.last_event = time.monotonic()
        self.busy_s = 0.0  # slot-seconds with a Tune trial running: how well the slots were kept busy

    def _tick(self) -> None:
        now = time.monotonic()
        self.busy_s += (now - self.last_event) * min(len(self.running), self.slots)
        self.last_event = now

    def next_pack(self) -> Pack | str | None:
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
            return FINISHED if self.driver.finished else None
        key = pack_key(trials)
        self.running[key] = trials
        searched = list(self.driver.sweep.search.ladders)
        return Pack(key, trials, [(self.driver.in_flight[t.trial_id], _walk_values(t, searched), t.trial_id) for t in trials])

    def landed(self, key: str) -> None:
        self._tick()
        self.driver.landed(self.running.pop(key, []))

    @property
    def busy_fraction(self) -> float:
        """The share of slot time a Tune trial of this feed ran."""
        return self.busy_s / max((time.monotonic() - self.started) * self.slots, 1e-9)


def _walk_values(trial: Trial, searched: list[str]) -> Coordinates:
    """What sets a walk's trial on its cell's template: the searched axes' values, and the extra
    seed (`member`) of a confirmation seed (`search.confirm_seeds`)."""
    values = grid.values_of(trial.config, searched)
    return {**values, "member": trial.config.member} if trial.config.member else values


Feed = GridFeed | WalkFeed


class FeedSearcherBase:
    """A feed as Ray Tune's search algorithm (the behaviour; `tune_searcher` adds Tune's base class)."""

    def __init__(self, feed: Feed, progress: SweepProgress):
        super().__init__()
        self.feed, self.progress, self.keys = feed, progress, {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the search space is the feed's

    def suggest(self, trial_id: str) -> dict | str | None:
        pack = self.feed.next_pack()
        if pack is FINISHED:
            return self.FINISHED
        if pack is None:
            return None
        self.keys[trial_id] = pack.key
        self.progress.planned(pack.key, pack.flops, len(pack.trials), pack.trials[0].model_label)
        return pack.config()

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.feed.landed(self.keys.pop(trial_id, ""))

    def save(self, checkpoint_path: str) -> None:
        """Nothing: the results store is the sweep's state."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing: a re-run plans again from the results store."""


@functools.cache
def _searcher_class():
    from ray.tune.search import Searcher  # Ray loads where a sweep runs, never where it is planned

    return type("FeedSearcher", (FeedSearcherBase, Searcher), {"__module__": __name__})


def tune_searcher(feed: Feed, progress: SweepProgress):
    """The feed as a Ray Tune `Searcher`."""
    return _searcher_class()(feed, progress)

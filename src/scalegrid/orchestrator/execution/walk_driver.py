"""One run's bookkeeping of a searched spec's walks: what to train next, what is in flight, what
another driver trains (its lease), what landed (`trial_feeds.WalkFeed` feeds it to Ray Tune).

The walks themselves are a function of the run rows (`planning/cells.py`), so this driver keeps
nothing that a re-run needs: it replays the walks from the store and goes on.
"""

from __future__ import annotations

import time

from scalegrid import store
from scalegrid.orchestrator import leases
from scalegrid.orchestrator.planning.cells import Cell, loss_of_outcome, losses, replay, search_rows, states_line
from scalegrid.spec import Sweep
from scalegrid.storage import ResultsLayout
from scalegrid.trial import Status, Trial

POLL_S = 1.0  # how often trials another driver trains are looked for in the store


class SearchDriver:
    """What one run of a searched spec trains next, and what its trials told it.

    A FAILED row from an earlier run is trained again (as in a grid); one from this run counts as
    worse than any finished run, so the walk goes on. A trial that another driver holds (its lease)
    is waited for: its row is looked for every POLL_S, and if its lease lapses without one it is
    this driver's to train. Every change of a cell's walk rewrites `RESULTS/search/<cell_id>.parquet`.
    """

    def __init__(self, sweep: Sweep, cells: list[Cell], results: ResultsLayout, snapshot: store.Snapshot):
        self.sweep, self.cells, self.results = sweep, cells, results
        self.known = losses(snapshot, failed_count=False)
        self.in_flight: dict[str, str] = {}  # trial_id -> its cell
        self.elsewhere: dict[str, tuple[str, Trial]] = {}  # trial_id -> (cell, trial) another driver trains
        self.trained = 0  # trials of this run that landed with a row
        self.last_poll = 0.0
        self.written: dict[str, tuple] = {}
        self.searches = replay(sweep, cells, self.known.get)
        self._write(set(self.searches))

    @property
    def finished(self) -> bool:
        return not self.in_flight and not self.elsewhere and all(s.finished for s in self.searches.values())

    def wanted(self) -> tuple[list[tuple[str, Trial]], list[tuple[str, Trial]]]:
        """(needed now, speculative): trials not run, not in flight, not elsewhere; those of the cell
        the most cells wait for (`from_smaller`) first, then the longest first."""
        busy = self.in_flight.keys() | self.elsewhere.keys()
        waiting_on = self._waiting_on()
        needed: dict[str, tuple[str, Trial]] = {}
        maybe: dict[str, tuple[str, Trial]] = {}
        for cell_id, s in self.searches.items():
            needed.update({t.trial_id: (cell_id, t) for t in s.missing() if t.trial_id not in busy})
            maybe.update({t.trial_id: (cell_id, t) for t in s.speculative() if t.trial_id not in busy})
        def order(pair: tuple[str, Trial]) -> tuple:  # no waiting cell kept waiting; no long trial started last
            return (-waiting_on.get(pair[0], 0), -pair[1].config.estimated_flops)

        return sorted(needed.values(), key=order), sorted((v for k, v in maybe.items() if k not in needed), key=order)

    def _waiting_on(self) -> dict[str, int]:
        """cell_id -> how many cells wait for its search to end (directly or down a from_smaller chain)."""
        counts: dict[str, int] = {}
        for s in self.searches.values():
            if s.path is None:
                smaller = s.cell.smaller
                while smaller is not None:
                    counts[smaller] = counts.get(smaller, 0) + 1
                    smaller = self.searches[smaller].cell.smaller
        return counts

    def take(self, n: int, *, speculate: bool = True) -> list[Trial]:
        """Up to n trials to train now (speculative ones only when nothing is needed), marked in flight."""
        needed, maybe = self.wanted()
        chosen = needed[:n] or (maybe[:n] if speculate else [])
        self.in_flight.update({t.trial_id: cell_id for cell_id, t in chosen})
        return [t for _, t in chosen]

    def landed(self, trials: list[Trial]) -> None:
        """These trials' Tune trial ended: read their rows (none: another driver holds it, or it was lost)."""
        dirty = set()
        for trial in trials:
            cell_id = self.in_flight.pop(trial.trial_id)
            outcome = store.run_outcome(self.results, trial.trial_id)
            if outcome is None and self._held_elsewhere(trial):
                self.elsewhere[trial.trial_id] = (cell_id, trial)
                continue
            status, loss = outcome or (Status.FAILED.value, None)  # no row and nobody training it: lost
            self.known[trial.trial_id] = loss_of_outcome(status, loss)
            self.trained += outcome is not None
            dirty.add(cell_id)
        self._rewalk(dirty)

    def poll(self) -> None:
        """Trials other drivers train: their rows, or their lapsed leases (ours to train now)."""
        if not self.elsewhere or time.monotonic() - self.last_poll < POLL_S:
            return
        self.last_poll, dirty = time.monotonic(), set()
        for tid, (cell_id, trial) in list(self.elsewhere.items()):
            outcome = store.run_outcome(self.results, tid)
            if outcome is not None and outcome[0] != Status.FAILED.value:
                self.known[tid] = loss_of_outcome(*outcome)
                dirty.add(cell_id)
            elif outcome is not None or not self._held_elsewhere(trial):
                pass  # FAILED there or left unfinished: wanted again, here
            else:
                continue
            del self.elsewhere[tid]
        self._rewalk(dirty)

    def _held_elsewhere(self, trial: Trial) -> bool:
        if self.results.local_path is None:  # an object store: no leases
            return False
        return leases.holder(self.results, trial.trial_id, trial.fault_tolerance.lease_expiry_s) is not None

    def _rewalk(self, dirty: set[str]) -> None:
        if dirty:
            self.searches = replay(self.sweep, self.cells, self.known.get, previous=self.searches, dirty=dirty)
            self._write(set(self.searches))

    def _write(self, cell_ids: set[str]) -> None:
        """Rewrite the search file of every cell whose walk changed."""
        for cell_id in cell_ids:
            rows = search_rows(self.sweep.name, self.searches[cell_id])
            signature = tuple((r.outcome, r.centre, tuple(r.seed_losses), tuple(r.neighbour_losses), r.ladders_json)
                              for r in rows)
            if rows and self.written.get(cell_id) != signature:
                store.write_search(self.results, cell_id, rows)
                self.written[cell_id] = signature

    def summary(self) -> str:
        return states_line(self.searches)

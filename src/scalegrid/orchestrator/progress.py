"""Live progress of a sweep: a Ray Tune callback that prints one line per change, with an ETA."""

from __future__ import annotations

import sys
import time

from ray.tune import Callback


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


WAIT_S = 15.0


class Progress(Callback):
    """Counts trials by outcome from each Tune trial's final report (`n_<STATUS>`: a Tune trial may
    carry a pack of grid points), prints on every change."""

    def __init__(self, total: int, already_done: int = 0, pack_sizes: dict[str, int] | None = None):
        self.total, self.already_done = total, already_done
        self.pack_sizes = pack_sizes or {}  # pack key -> grid points in it
        self.outcomes: dict[str, dict[str, int]] = {}  # tune trial id -> status -> count
        self.running: set[str] = set()
        self.waiting = 0  # Tune trials pending for WAIT_S while none runs: waiting for capacity
        self.start = self.idle_since = time.monotonic()

    def on_step(self, iteration, trials, **info):
        if self.running:
            self.idle_since = time.monotonic()
        stalled = time.monotonic() - self.idle_since > WAIT_S  # not merely Tune placing the first trials
        waiting = sum(t.status == "PENDING" for t in trials) if stalled else 0
        if waiting != self.waiting:  # said once when it changes, not at every step
            self.waiting = waiting
            if waiting:
                self._print()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        self._print()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("warning"):  # a worker's warning (an unreadable checkpoint set aside): said here
            print(f"scalegrid: warning: {result['warning']}", file=sys.stderr, flush=True)
        if result.get("done"):
            self.outcomes[trial.trial_id] = {k[2:]: v for k, v in result.items() if k.startswith("n_")}

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        self.outcomes.setdefault(trial.trial_id, {"FAILED": self._size(trial)})
        self._print(last=trial.last_result)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        self.outcomes[trial.trial_id] = {"LOST": self._size(trial)}  # out of retries, no row written
        self._print()

    def _size(self, trial) -> int:
        return self.pack_sizes.get(trial.config.get("pack"), 1)

    def count(self, status: str) -> int:
        return sum(o.get(status, 0) for o in self.outcomes.values())

    def line(self) -> str:
        finished = sum(sum(o.values()) for o in self.outcomes.values())
        failed, diverged, elsewhere = self.count("FAILED") + self.count("LOST"), self.count("DIVERGED"), self.count("ELSEWHERE")
        elapsed = time.monotonic() - self.start
        remaining = self.total - finished
        eta = f"ETA {_duration(elapsed / finished * remaining)}" if finished and remaining else ""
        done = self.already_done + finished - failed - elsewhere - self.count("DISK_FULL")
        running_elsewhere = f", {elsewhere} running elsewhere" if elsewhere else ""
        waiting = f", {self.waiting} waiting for resources (no node has room for one now)" if self.waiting else ""
        return (
            f"[{_duration(elapsed)}] {done}/{self.total + self.already_done} done, {len(self.running)} running, "
            f"{failed} failed, {diverged} diverged{running_elsewhere}{waiting}  {eta}"
        ).rstrip()

    def _print(self, last: dict | None = None) -> None:
        tail = f"  (last val_loss {last['val_loss']:.4f})" if last and "val_loss" in last else ""
        print(self.line() + tail, file=sys.stderr, flush=True)  # looked up late: the callback is pickled

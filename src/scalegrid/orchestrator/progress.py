"""Live progress of a sweep: a Ray Tune callback that prints one line per change, with an ETA."""

from __future__ import annotations

import sys
import time

from ray.tune import Callback


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress(Callback):
    """Counts trials by outcome from each trial's final report (`status`), prints on every change."""

    def __init__(self, total: int, already_done: int = 0):
        self.total, self.already_done = total, already_done
        self.outcomes: dict[str, str] = {}  # tune trial id -> COMPLETED / DIVERGED / FAILED
        self.running: set[str] = set()
        self.start = time.monotonic()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        self._print()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("done") and "status" in result:
            self.outcomes[trial.trial_id] = result["status"]

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        self.outcomes.setdefault(trial.trial_id, "FAILED")
        self._print(last=trial.last_result)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        self.outcomes[trial.trial_id] = "FAILED"
        self._print()

    def line(self) -> str:
        finished = len(self.outcomes)
        failed = sum(s == "FAILED" for s in self.outcomes.values())
        diverged = sum(s == "DIVERGED" for s in self.outcomes.values())
        elapsed = time.monotonic() - self.start
        remaining = self.total - finished
        eta = f"ETA {_duration(elapsed / finished * remaining)}" if finished and remaining else ""
        done = self.already_done + finished - failed
        return (
            f"[{_duration(elapsed)}] {done}/{self.total + self.already_done} done, {len(self.running)} running, "
            f"{failed} failed, {diverged} diverged  {eta}"
        ).rstrip()

    def _print(self, last: dict | None = None) -> None:
        tail = f"  (last val_loss {last['val_loss']:.4f})" if last and "val_loss" in last else ""
        print(self.line() + tail, file=sys.stderr, flush=True)  # looked up late: the callback is pickled

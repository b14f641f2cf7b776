"""Live progress of a sweep: trials done / running / failed, the running trials' latest evaluation,
tokens/s, and an ETA from the FLOPs done over the FLOPs planned.

Every evaluation row reaches the driver as it happens (the worker reports each to Tune, with
`flops_done`), so a long trial shows its step, val_loss and speed while it runs. The ETA weighs
trials by their FLOPs, not their count: a grid scheduled longest-first finishes its first trials
late and its last ones quickly, and a count-based ETA is off by the ratio of their sizes.

`SweepProgress` is the state and the words (no Ray, no terminal); `progress_callback` makes the
Ray Tune callback that feeds it and shows it: a live table (rich) on a terminal, plain lines
otherwise (a line per trial started or finished, the running trials every PLAIN_EVERY_S seconds).
A grid knows its packs up front; a search's packs are added as its walks ask for them
(`planned`), and its cells' states close the summary line (`note`).
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PLAIN_EVERY_S = 30.0  # without a terminal: the running trials' lines at most this often
WAIT_S = 15.0  # Tune trials pending this long while none runs: waiting for capacity, said in the line
RUNNING_COLUMNS = ("trial", "step", "epoch", "val_loss", "tokens/s")  # the live table's


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def rate(per_s: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if per_s >= scale:
            return f"{per_s / scale:.1f}{unit}"
    return f"{per_s:.0f}"


@dataclass
class Running:
    """A running Tune trial (a trial, or a pack of them) and its latest evaluation."""

    label: str
    step: int | None = None
    epoch: float | None = None
    val_loss: float | None = None
    tokens_per_s: float | None = None
    last: tuple[float, float] | None = None  # (tokens_seen, wall_s) of the previous row

    def line(self) -> str:
        if self.step is None:
            return f"  {self.label}: starting"
        parts = [f"step {self.step}"]
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch:.2f}")
        if self.val_loss is not None:
            parts.append(f"val_loss {self.val_loss:.4f}")
        if self.tokens_per_s:
            parts.append(f"{rate(self.tokens_per_s)} tokens/s")
        return f"  {self.label}: {', '.join(parts)}"


@dataclass
class SweepProgress:
    """What the driver knows of a Tune run, keyed by pack key (a trial_id, or a pack's key). A pack
    is kept by key from when it is planned until it finishes, then only in the sums: 100,000
    finished trials cost the driver no more than a few."""

    total: int  # grid points to run
    planned_flops: dict[str, float]  # pack key -> its trials' estimated FLOPs, until it finishes
    pack_sizes: dict[str, int] = field(default_factory=dict)  # pack key -> grid points in it (default 1), until it finishes
    already_done: int = 0
    start: float = field(default_factory=time.monotonic)
    running: dict[str, Running] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)  # status -> grid points of finished packs
    reported: dict[str, dict[str, int]] = field(default_factory=dict)  # the outcome a running Tune trial reported last
    flops_done: dict[str, float] = field(default_factory=dict)  # of packs not finished
    tokens_trained: dict[str, float] = field(default_factory=dict)  # in this run, from the rows' tokens_seen; packs not finished
    waiting: int = 0  # Tune trials waiting for resources (no node has room for one now)
    note: Callable[[], str] | None = None  # a last part of the summary line: a search's cells
    # The sums over finished packs, and the FLOPs planned in all
    flops_planned: float = 0.0
    flops_finished: float = 0.0
    tokens_finished: float = 0.0

    def __post_init__(self):
        self.flops_planned += sum(self.planned_flops.values())

    def planned(self, key: str, flops: float, size: int) -> None:
        """A pack the feed chose: counted once (a grid's are known from the start)."""
        if key not in self.planned_flops:
            self.planned_flops[key] = flops
            self.pack_sizes[key] = size
            self.total += size
            self.flops_planned += flops

    def started(self, key: str, label: str) -> None:
        self.running[key] = Running(label)

    def result(self, key: str, result: dict) -> None:
        """One reported result: an evaluation row, a pack's count, or a trial's outcome (`n_<STATUS>`)."""
        if "flops_done" in result:
            self.flops_done[key] = float(result["flops_done"])
        outcome = {k[2:]: int(v) for k, v in result.items() if k.startswith("n_")}
        if outcome:
            self.reported[key] = outcome
        running = self.running.get(key)
        if running is None or "step" not in result:
            return
        tokens, wall = float(result.get("tokens_seen", 0)), float(result.get("wall_s", 0))
        if running.last is not None and wall > running.last[1]:
            running.tokens_per_s = (tokens - running.last[0]) / (wall - running.last[1])
            self.tokens_trained[key] = self.tokens_trained.get(key, 0.0) + tokens - running.last[0]
        running.last = (tokens, wall)
        running.step, running.epoch, running.val_loss = int(result["step"]), result.get("epoch"), result.get("val_loss")

    def finished(self, key: str, lost: bool = False) -> Running | None:
        """A Tune trial ended: its reported outcome, or FAILED (LOST: out of retries, no row) for all
        its points, added to the sums; nothing of it is kept by key. Returns what it showed last."""
        last = self.running.pop(key, None)
        reported = self.reported.pop(key, None)
        size = self.pack_sizes.pop(key, 1)
        for status, n in ({"LOST": size} if lost else reported or {"FAILED": size}).items():
            self.outcomes[status] = self.outcomes.get(status, 0) + n
        self.flops_finished += self.planned_flops.pop(key, 0.0)
        self.flops_done.pop(key, None)
        self.tokens_finished += self.tokens_trained.pop(key, 0.0)
        return last

    def count(self, status: str) -> int:
        return self.outcomes.get(status, 0)

    @property
    def fraction_done(self) -> float:
        planned = self.flops_planned
        return min(1.0, (self.flops_finished + sum(self.flops_done.values())) / planned) if planned > 0 else 0.0

    def eta_s(self, now: float) -> float | None:
        """Seconds left at the FLOP rate so far; None before any FLOPs are done or once all are."""
        fraction = self.fraction_done
        if fraction <= 0 or fraction >= 1:
            return None
        return (now - self.start) * (1 - fraction) / fraction

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = now - self.start
        finished = sum(self.outcomes.values())
        failed, diverged, elsewhere = self.count("FAILED") + self.count("LOST"), self.count("DIVERGED"), self.count("ELSEWHERE")
        done = self.already_done + finished - failed - elsewhere - self.count("DISK_FULL")
        parts = [f"[{duration(elapsed)}] {done}/{self.total + self.already_done} done, {len(self.running)} running, {failed} failed, {diverged} diverged"]
        if elsewhere:
            parts[0] += f", {elsewhere} running elsewhere"
        if self.waiting:
            parts[0] += f", {self.waiting} waiting for resources (no node has room for one now)"
        planned = self.flops_planned
        if planned > 0:
            parts.append(f"{100 * self.fraction_done:.0f}% of {planned:.3g} FLOPs")
        tokens = self.tokens_finished + sum(self.tokens_trained.values())
        if tokens > 0 and elapsed > 0:
            parts.append(f"{rate(tokens / elapsed)} tokens/s")
        eta = self.eta_s(now)
        if eta is not None:
            parts.append(f"ETA {duration(eta)}")
        if self.note is not None:
            parts.append(self.note())
        return "; ".join(parts)

    def running_lines(self) -> list[str]:
        return [r.line() for r in self.running.values()]


class ProgressEvents:
    """The Tune callback's behaviour: feeds `SweepProgress` from Tune's events and shows it on
    stderr (`progress_callback` adds Tune's base class)."""

    def __init__(self, state: SweepProgress, live: bool | None = None):
        self.state = state
        self.live = live  # None: a live table when stderr is a terminal
        self._display: _Plain | _Live | None = None
        self.idle_since = time.monotonic()  # when the last trial ran (or the run began)

    def __getstate__(self):  # Tune pickles its callbacks with the experiment; a terminal is not pickled
        return {**self.__dict__, "_display": None}

    @property
    def display(self) -> _Plain | _Live:
        if self._display is None:
            live = self.live if self.live is not None else sys.stderr.isatty()
            self._display = _Live(self.state) if live else _Plain(self.state)
        return self._display

    def on_step(self, iteration, trials, **info):
        now = time.monotonic()
        if self.state.running:
            self.idle_since = now
        stalled = now - self.idle_since > WAIT_S  # not merely Tune placing the first trials
        waiting = sum(t.status == "PENDING" for t in trials) if stalled else 0
        if waiting != self.state.waiting:  # said once when it changes, not at every step
            self.state.waiting = waiting
            if waiting:
                self.display.event(self.state.line())

    def on_trial_start(self, iteration, trials, trial, **info):
        with self.display.lock:
            self.state.started(trial.config["pack"], _label(trial.config))
        self.display.event(self.state.line())

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("warning"):  # a worker's warning (an unreadable checkpoint set aside): said here
            self.display.event(f"scalegrid: warning: {result['warning']}")
        with self.display.lock:
            self.state.result(trial.config["pack"], result)
        self.display.tick()

    def on_trial_complete(self, iteration, trials, trial, **info):
        with self.display.lock:
            last = self.state.finished(trial.config["pack"])
        shown = f"  ({last.label}: val_loss {last.val_loss:.4f})" if last is not None and last.val_loss is not None else ""
        self.display.event(self.state.line() + shown)

    def on_trial_error(self, iteration, trials, trial, **info):
        with self.display.lock:
            self.state.finished(trial.config["pack"], lost=True)
        self.display.event(self.state.line())

    def on_experiment_end(self, trials, **info):
        self.display.close()
        self._display = None


@functools.cache
def _callback_class():
    from ray.tune import Callback  # Ray loads where a sweep runs, never where it is planned

    return type("Progress", (ProgressEvents, Callback), {"__module__": __name__})


def progress_callback(state: SweepProgress, live: bool | None = None):
    """The live progress of `state` as a Ray Tune callback (`live`: None = a table on a terminal)."""
    return _callback_class()(state, live)


def _label(config: dict) -> str:
    """A Tune trial in words: its trial_id (a pack: its key and size) and model."""
    pack = config["pack"] + (f" ({config['pack_size']} trials)" if config.get("pack_size") else "")
    return f"{pack} {config['model']}" if config.get("model") else pack


class _Plain:
    """No terminal (a log file, a pipe, a notebook): a line per change, the running trials now and then."""

    def __init__(self, state: SweepProgress):
        self.state, self.lock, self.shown = state, threading.Lock(), time.monotonic()

    def event(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)  # looked up late: tests and notebooks swap stderr

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.shown < PLAIN_EVERY_S:
            return
        self.shown = now
        with self.lock:
            lines = [self.state.line(now), *self.state.running_lines()]
        print("\n".join(lines), file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class _Live:
    """A terminal: the summary line and a table of the running trials, redrawn in place (rich);
    each start and finish also printed above it, so the history stays on screen."""

    def __init__(self, state: SweepProgress):
        from rich.console import Console
        from rich.live import Live

        self.state, self.lock = state, threading.Lock()
        self.live = Live(console=Console(stderr=True), get_renderable=self.render, refresh_per_second=2, transient=True)
        self.live.start()

    def render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, header_style="bold")
        for column in RUNNING_COLUMNS:
            table.add_column(column, justify="left" if column == "trial" else "right")
        with self.lock:
            line = self.state.line()
            for r in self.state.running.values():
                table.add_row(
                    r.label, "-" if r.step is None else str(r.step), "-" if r.epoch is None else f"{r.epoch:.2f}",
                    "-" if r.val_loss is None else f"{r.val_loss:.4f}", rate(r.tokens_per_s) if r.tokens_per_s else "-",
                )
        return Group(Text(line), table)

    def event(self, line: str) -> None:
        self.live.console.print(line, highlight=False, markup=False)

    def tick(self) -> None:
        pass  # redrawn twice a second by rich's own thread

    def close(self) -> None:
        self.live.stop()

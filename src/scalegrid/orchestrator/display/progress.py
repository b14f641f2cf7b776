"""Live progress of a sweep: trials done / running / failed, the running trials' latest evaluation,
tokens/s, the share of the planned FLOPs done and an ETA.

Every evaluation row reaches the driver as it happens (the worker reports each to Tune, with
`flops_done`), so a long trial shows its step, val_loss and speed while it runs. Between two rows
a running trial is assumed to go on at its own measured speed, so the share done moves smoothly
instead of jumping at evaluations. One speed definition serves everything: a trial's tokens/s
(and FLOPs/s) is what it trained between its last two rows over the trainer's wall time between
them (its first row: since it started training); the summary's tokens/s is the sum of the
running trials'.

The ETA is the slot time left, spread over the slots: each running trial's remaining FLOPs at its
own speed, plus each trial not started yet at its model's measured speed and the slot time a
trial costs beyond training (Tune placing it, its process starting, evaluating, saving: the slot
time so far that training does not explain, per trial started). It is never less than the longest
remaining time of a running trial. FLOPs, not trial counts,
weigh the share done: a grid scheduled longest-first finishes its first trials late and its last
ones quickly.

`SweepProgress` is the state and the words (no Ray, no terminal, a clock passed in); the Ray Tune
callback (`progress_callback`) feeds it and shows it: a live table (rich) on a terminal, plain
lines otherwise (a line per trial started or finished, the running trials every PLAIN_EVERY_S
seconds), nothing but warnings when quiet (-q). A grid knows its packs up front; a search's packs
are added as its walks ask for them (`planned`; its ETA is then a lower bound: the walks may ask
for more), and its cells' states close the summary line (`note`).
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from scalegrid.orchestrator.display import console

PLAIN_EVERY_S = 30.0  # without a terminal: the running trials' lines at most this often
WAIT_S = 15.0  # Tune trials pending this long while none runs: waiting for capacity, said in the line
RUNNING_COLUMNS = ("trial", "step", "epoch", "val_loss", "tokens/s")  # the live table's


def duration(seconds: float) -> str:
    """8s, 1m08s, 2h05m."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def rate(per_s: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if per_s >= scale:
            return f"{per_s / scale:.1f}{unit}"
    return f"{per_s:.0f}"


@dataclass
class Speed:
    """FLOPs trained over the seconds they took, summed (a model's, over all its trials' rows)."""

    flops: float = 0.0
    seconds: float = 0.0

    def add(self, flops: float, seconds: float) -> None:
        if flops > 0 and seconds > 0:
            self.flops, self.seconds = self.flops + flops, self.seconds + seconds

    @property
    def per_s(self) -> float | None:
        return self.flops / self.seconds if self.seconds > 0 else None


@dataclass
class Running:
    """A running Tune trial (a trial, or a pack of them) and its latest evaluation."""

    label: str
    started_at: float  # the driver's clock
    step: int | None = None
    epoch: float | None = None
    val_loss: float | None = None
    tokens_per_s: float | None = None
    flops_per_s: float | None = None
    last: tuple[float, float, float] | None = None  # (tokens_seen, trainer seconds, flops_done) of the last row
    reported_at: float | None = None  # when the last row reached the driver
    resumed_from: int = 0  # the checkpoint step its current attempt started from

    @property
    def step_text(self) -> str:
        return "-" if self.step is None else f"{self.step} (from {self.resumed_from})" if self.resumed_from else str(self.step)

    def line(self) -> str:
        if self.step is None:
            return f"  {self.label}: starting" + (f" from step {self.resumed_from}" if self.resumed_from else "")
        parts = [f"step {self.step_text}"]
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
    slots: int = 1  # Tune trials at once
    open_ended: bool = False  # a search: its walks may plan more packs, the ETA is a lower bound
    models: dict[str, str] = field(default_factory=dict)  # pack key -> its model, whose speed predicts it
    running: dict[str, Running] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)  # status -> grid points of finished packs
    reported: dict[str, dict[str, int]] = field(default_factory=dict)  # the outcome a running Tune trial reported last
    flops_done: dict[str, float] = field(default_factory=dict)  # at the last row (all planned, once finished)
    speeds: dict[str, Speed] = field(default_factory=dict)  # model -> its trials' training speed
    first_start: float | None = None  # when the first Tune trial started: the slots are busy from here
    finished_training_s: float = 0.0  # the finished Tune trials' training time (their FLOPs at their speed)
    waiting: int = 0  # Tune trials waiting for resources (no node has room for one now)
    note: Callable[[], str] | None = None  # a last part of the summary line: a search's cells
    # The sums over finished packs, and the FLOPs planned in all
    flops_planned: float = 0.0
    flops_finished: float = 0.0
    packs_finished: int = 0

    def __post_init__(self):
        self.flops_planned += sum(self.planned_flops.values())

    def planned(self, key: str, flops: float, size: int, model: str = "") -> None:
        """A pack the feed chose: counted once (a grid's are known from the start)."""
        if key not in self.planned_flops:
            self.planned_flops[key] = flops
            self.pack_sizes[key] = size
            self.models[key] = model
            self.total += size
            self.flops_planned += flops

    def started(self, key: str, label: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.first_start = now if self.first_start is None else self.first_start
        self.running[key] = Running(label, now)

    def result(self, key: str, result: dict, now: float | None = None) -> None:
        """One reported result: an evaluation row, a pack's count, or a trial's outcome (`n_<STATUS>`)."""
        now = time.monotonic() if now is None else now
        outcome = {k[2:]: int(v) for k, v in result.items() if k.startswith("n_")}
        if outcome:
            self.reported[key] = outcome
        running = self.running.get(key)
        if running is None or "flops_done" not in result or outcome:
            return
        flops = float(result["flops_done"])
        tokens = float(result.get("tokens_seen", 0))
        # the trainer's own clock where a row has one (a pack's count has none: the driver's)
        seconds = float(result["wall_s"]) if "wall_s" in result else now - running.started_at
        before = running.last or (0.0, 0.0, 0.0)
        if seconds > before[1] and flops > before[2]:
            elapsed = seconds - before[1]
            running.flops_per_s = (flops - before[2]) / elapsed
            running.tokens_per_s = (tokens - before[0]) / elapsed if tokens > before[0] else None
            self.speeds.setdefault(self.models.get(key, ""), Speed()).add(flops - before[2], elapsed)
        running.last, running.reported_at = (tokens, seconds, flops), now
        self.flops_done[key] = flops
        if "step" in result:
            running.step, running.epoch, running.val_loss = int(result["step"]), result.get("epoch"), result.get("val_loss")

    def resumed(self, key: str, result: dict) -> str | None:
        """What to say when a running trial starts again: a retry's report (`attempt`), or the
        first row of an attempt that resumed from another checkpoint (its workers restarted)."""
        running, step = self.running.get(key), result.get("resumed_from_step")
        if running is None or step is None or (int(step) == running.resumed_from and "attempt" not in result):
            return None
        running.resumed_from = int(step)
        attempt = f"attempt {int(result['attempt'])} " if "attempt" in result else ""
        return f"{running.label}: {attempt}resumes from its checkpoint at step {step}" if step else f"{running.label}: {attempt}starts from scratch"

    def finished(self, key: str, lost: bool = False) -> Running | None:
        """A Tune trial ended: its reported outcome, or FAILED (LOST: out of retries, no row) for all
        its points, added to the sums; nothing of it is kept by key. Returns what it showed last."""
        last = self.running.pop(key, None)
        reported = self.reported.pop(key, None)
        size = self.pack_sizes.pop(key, 1)
        for status, n in ({"LOST": size} if lost else reported or {"FAILED": size}).items():
            self.outcomes[status] = self.outcomes.get(status, 0) + n
        planned = self.planned_flops.pop(key, 0.0)
        if last is not None and last.flops_per_s and not lost:  # else all its time was beyond training
            self.finished_training_s += planned / last.flops_per_s
        self.flops_finished += planned
        self.packs_finished += 1
        self.flops_done.pop(key, None)
        self.models.pop(key, None)
        return last

    def count(self, status: str) -> int:
        return self.outcomes.get(status, 0)

    # --- the share done and the time left ----------------------------------------------------------

    def done_now(self, key: str, now: float) -> float:
        """A pack's FLOPs done by `now`: at its last row, and since then at its own speed (at most all)."""
        done, running = self.flops_done.get(key, 0.0), self.running.get(key)
        if running is not None and running.flops_per_s and running.reported_at is not None:
            done += running.flops_per_s * max(0.0, now - running.reported_at)
        return min(done, self.planned_flops.get(key, done))

    def fraction_done(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        planned = self.flops_planned
        return min(1.0, (self.flops_finished + sum(self.done_now(k, now) for k in self.planned_flops)) / planned) if planned > 0 else 0.0

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left: the slot time the work left needs, over the slots, and never less than the
        longest running trial's remaining time. None before any speed is measured, or once all is done."""
        now = time.monotonic() if now is None else now
        left = list(self.planned_flops)  # the packs not finished
        everything = Speed(sum(s.flops for s in self.speeds.values()), sum(s.seconds for s in self.speeds.values())).per_s
        if not left or everything is None:
            return None
        per_model = {model: s.per_s for model, s in self.speeds.items()}
        beyond = self.beyond_training_per_trial(now)
        slot_s, longest = 0.0, 0.0
        for key in left:
            running = self.running.get(key)
            # its own speed while it runs, else its model's, else every trial's
            speed = (running and running.flops_per_s) or per_model.get(self.models.get(key, "")) or everything
            remaining = (self.planned_flops[key] - self.done_now(key, now)) / speed
            if running is not None:
                longest = max(longest, remaining)
            slot_s += remaining + (0.0 if running is not None else beyond)
        return max(slot_s / max(1, self.slots), longest)

    def beyond_training_per_trial(self, now: float) -> float:
        """The slot time a Tune trial has cost beyond training: all the slots' time since the first
        trial started that no trial's training explains, over the trials started (a running one's
        start is behind it)."""
        if self.first_start is None:
            return 0.0
        training_s = self.finished_training_s + sum(
            self.done_now(key, now) / r.flops_per_s for key, r in self.running.items() if r.flops_per_s)
        started = self.packs_finished + len(self.running)
        return max(0.0, self.slots * (now - self.first_start) - training_s) / max(1, started)

    def tokens_per_s(self) -> float:
        """The summary's tokens/s: the sum of the running trials' (the same speed their rows show)."""
        return sum(r.tokens_per_s or 0.0 for r in self.running.values())

    # --- words ----------------------------------------------------------------------------------------

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        finished = sum(self.outcomes.values())
        failed, diverged, elsewhere = self.count("FAILED") + self.count("LOST"), self.count("DIVERGED"), self.count("ELSEWHERE")
        done = self.already_done + finished - failed - elsewhere - self.count("STORAGE_FAILED")
        counts = [f"{done}/{self.total + self.already_done} done", f"{len(self.running)} running"]
        counts += [f"{n} {what}" for n, what in ((failed, "failed"), (diverged, "diverged"), (elsewhere, "running elsewhere")) if n]
        if self.waiting:
            counts.append(f"{self.waiting} waiting for resources (no node has room for one now)")
        parts = [", ".join(counts)]
        planned = self.flops_planned
        if planned > 0:
            parts.append(f"{100 * self.fraction_done(now):.0f}% of {planned:.3g} FLOPs")
        if self.tokens_per_s() > 0:
            parts.append(f"{rate(self.tokens_per_s())} tokens/s")
        times = f"elapsed {duration(now - self.start)}"
        eta = self.eta_s(now)
        if eta is not None:
            times += f", ETA {'at least ' if self.open_ended else ''}{duration(eta)}"
        parts.append(times)
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
        self._display: _Quiet | _Plain | _Live | None = None
        self.idle_since = time.monotonic()  # when the last trial ran (or the run began)

    def __getstate__(self):  # Tune pickles its callbacks with the experiment; a terminal is not pickled
        return {**self.__dict__, "_display": None}

    @property
    def display(self) -> _Quiet | _Plain | _Live:
        if self._display is None:
            live = self.live if self.live is not None else sys.stderr.isatty()
            kind = _Quiet if console.level() < console.NORMAL else _Live if live else _Plain
            self._display = kind(self.state)
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
        if result.get("warning"):  # a worker's warning (an unreadable checkpoint set aside): said here, even when quiet
            print(f"scalegrid: warning: {result['warning']}", file=sys.stderr, flush=True)
        with self.display.lock:
            resumed = self.state.resumed(trial.config["pack"], result)
            self.state.result(trial.config["pack"], result)
        if resumed:
            self.display.event(resumed)
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
        self.close()

    def close(self) -> None:
        """Stop showing (the live table leaves nothing behind); also when the run is interrupted."""
        if self._display is not None:
            self._display.close()
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


class _Quiet:
    """-q: nothing but the warnings (printed by the callback itself)."""

    def __init__(self, state: SweepProgress):
        self.lock = threading.Lock()

    def event(self, line: str) -> None:
        pass

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Plain(_Quiet):
    """No terminal (a log file, a pipe, a notebook): a line per change, the running trials now and then."""

    def __init__(self, state: SweepProgress):
        super().__init__(state)
        self.state, self.shown = state, time.monotonic()

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


class _Live(_Quiet):
    """A terminal: the summary line and a table of the running trials, redrawn in place (rich);
    each start and finish also printed above it, so the history stays on screen. The table is
    drawn only while trials run, and the whole display is erased when it closes."""

    def __init__(self, state: SweepProgress):
        from rich.console import Console
        from rich.live import Live

        super().__init__(state)
        self.state = state
        self.live = Live(console=Console(stderr=True), get_renderable=self.render, refresh_per_second=2, transient=True)
        self.live.start()

    def render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        with self.lock:
            line, running = self.state.line(), list(self.state.running.values())
        if not running:
            return Text(line)
        table = Table(box=None, header_style="bold")
        for column in RUNNING_COLUMNS:
            table.add_column(column, justify="left" if column == "trial" else "right")
        for r in running:
            table.add_row(
                r.label, r.step_text, "-" if r.epoch is None else f"{r.epoch:.2f}",
                "-" if r.val_loss is None else f"{r.val_loss:.4f}", rate(r.tokens_per_s) if r.tokens_per_s else "-",
            )
        return Group(Text(line), table)

    def event(self, line: str) -> None:
        self.live.console.print(line, highlight=False, markup=False)

    def close(self) -> None:
        self.live.stop()

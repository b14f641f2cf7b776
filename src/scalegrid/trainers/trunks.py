"""One trunk for a `wsd` epochs axis: the stable phase is trained once, every shorter epoch count
branches its decay off it.

Under `schedule: wsd` a run of E epochs is, until its decay starts at step d_E = E S -
round(decay_fraction E S) (S steps per epoch), step for step the run of any larger epoch count:
same weights, same AdamW moments, same data position (each epoch's order is drawn from (seed,
epoch)), same learning rate (the warmup is a fraction of one epoch). So the trials of one grid
point that differ only in `epochs` (one `trunk_key`) are trained together, longest first:

    longest (16 epochs)   trains from scratch (or its own checkpoint), and saves its state at
                          d_8, d_4, d_2, d_1 under RESULTS/trunks/<trunk_key>/step-<d>/ (a checkpoint)
    8, 4, 2, 1 epochs     each starts from the trunk state at its own d_E and trains its decay only

Every epoch count keeps its trial_id and row, identical in meaning (and on a CPU, in value) to an
independent run. FLOPs: with decay_fraction 0.2, [1, 2, 4, 8, 16] costs 16 + 0.2 x 15 = 19 epochs
of work instead of 31.

Faults. A trial resumes from its own checkpoints first (`checkpoint_every`), so an interrupted
trunk continues where it was; a branch whose trunk state is gone (removed, unreadable, or never
written because the trunk diverged or another driver trains it) trains from scratch, itself
saving the states the still shorter ones need. A trunk state is removed once its branch has
finished. Two drivers sharing a results directory hold leases per trial: a driver trains a trunk
only for the trials whose leases it holds; trunk states are written atomically, and on a CPU two
drivers write the same bytes, so a trunk state is never half one driver's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from scalegrid.storage.layout import CheckpointDir
from scalegrid.trainers import checkpoint
from scalegrid.trainers.trunk_groups import branch_step, trunk_key
from scalegrid.trial import Report, Trial, TrialResult


@dataclass(frozen=True)
class Trunk:
    """What one trial of a trunk group does besides training: where trunk states live, the state
    it branches from (None: from its own checkpoint or scratch), the states it saves for others."""

    directory: CheckpointDir
    start: int | None = None
    saves: tuple[int, ...] = ()


TrainFn = Callable[..., TrialResult]  # lm.train(trial, report, trunk=...)


def train_group(trials: Sequence[Trial], reports: Sequence[Report] | None, train: TrainFn) -> list[TrialResult]:
    """Train trials of one `trunk_key`, longest first, each shorter one branching off the trunk;
    one result per trial, in the given order."""
    keys = {trunk_key(t.config) for t in trials}
    if len(trials) > 1 and (None in keys or len(keys) > 1):
        raise ValueError("train_group needs trials of one trunk (lm, wsd, differing only in epochs)")
    directory = trials[0].results.trunk(keys.pop() or trials[0].trial_id)
    order = sorted(range(len(trials)), key=lambda i: -trials[i].config.epochs)
    results: list[TrialResult | None] = [None] * len(trials)
    for position, i in enumerate(order):
        have = set(checkpoint.steps(directory))
        own = branch_step(trials[i].config)
        later = {branch_step(trials[j].config) for j in order[position + 1:]} - have
        trunk = Trunk(directory, own if own in have else None, tuple(sorted(s for s in later if s < own)))
        report = reports[i] if reports else (lambda row: None)
        results[i] = train(trials[i], report, trunk=trunk)
        if trunk.start is not None:
            directory.results.delete_dir(directory.step_parts(trunk.start))  # gone already: another driver's branch
    return results

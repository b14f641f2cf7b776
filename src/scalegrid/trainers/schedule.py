"""The learning-rate schedule shared by every trainer: linear warmup, then cosine, linear, constant or WSD.

    lr(step) = peak * (step + 1) / warmup                      for step < warmup
             = peak * (min + (1 - min) * decay(progress))      after, progress 0 -> 1 at the last step

`warmup = round(warmup_fraction * total_steps)`, so a constant schedule with `warmup_fraction: 0`
is the one whose first k epochs are the same whatever the total: the curve of a constant-schedule
run at epoch k is then the k-epoch result (so one run evaluates every epoch count up to its own).

`wsd` (warmup-stable-decay) is built so that runs of every length share their beginning:

    lr(step) = peak * (step + 1) / warmup                      for step < warmup
             = peak                                            for warmup <= step < decay_start
             = peak * (1 - (1 - min) * progress)               after, progress (0, 1] at the last step

with `warmup = round(warmup_fraction * steps_per_epoch)` (a fraction of one epoch's steps, not of
the run's: the warmup of a 16-epoch run is the 1-epoch run's) and `decay_start = total -
round(decay_fraction * total)`. Until its decay starts a run of E epochs is, step for step, any
longer run: the epochs axis trains one trunk and branches each shorter run's decay off it
(`trainers/trunks.py`), and an adaptive stop (`spec/stopping.py`) decides while training
where the decay starts (`decay_steps_after`).
"""

from __future__ import annotations

import math

from scalegrid.spec import TrainSpec


def warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    return round(warmup_fraction * total_steps)


def lr_at(step: int, total_steps: int, peak_lr: float, train: TrainSpec, *, steps_per_epoch: int | None = None) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total_steps` (`wsd` needs
    `steps_per_epoch`: its warmup is a fraction of one epoch)."""
    if train.schedule == "wsd":
        if steps_per_epoch is None:
            raise ValueError("schedule wsd needs steps_per_epoch (its warmup is a fraction of one epoch)")
        return wsd_lr(step, decay_start(total_steps, train), total_steps, peak_lr, train, steps_per_epoch)
    warmup = warmup_steps(total_steps, train.warmup_fraction)
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    if train.schedule == "constant":
        return peak_lr
    decay_steps = total_steps - warmup - 1
    progress = min(1.0, (step - warmup) / decay_steps) if decay_steps > 0 else 0.0
    if train.schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:  # linear
        shape = 1.0 - progress
    return peak_lr * (train.min_lr_ratio + (1.0 - train.min_lr_ratio) * shape)


def wsd_warmup(steps_per_epoch: int, train: TrainSpec) -> int:
    return round(train.warmup_fraction * steps_per_epoch)


def decay_start(total_steps: int, train: TrainSpec) -> int:
    """The first step of a `wsd` run's decay: the state before it is the trunk's at that step."""
    return total_steps - round(train.decay_fraction * total_steps)


def decay_steps_after(stable_steps: int, train: TrainSpec) -> int:
    """The decay of a run whose stable phase ended after `stable_steps` (an adaptive stop): the
    `decay_fraction` of the whole run, as in a fixed-length run with that decay start."""
    return max(1, round(train.decay_fraction / (1.0 - train.decay_fraction) * stable_steps))


def wsd_lr(step: int, start: int, end: int, peak_lr: float, train: TrainSpec, steps_per_epoch: int) -> float:
    """`wsd`'s lr of step `step` for a decay over steps [start, end)."""
    warmup = wsd_warmup(steps_per_epoch, train)
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    if step < start:
        return peak_lr
    progress = min(1.0, (step - start + 1) / max(1, end - start))
    return peak_lr * (1.0 - (1.0 - train.min_lr_ratio) * progress)

"""The learning-rate schedule shared by every trainer: linear warmup, then cosine, linear or constant.

    lr(step) = peak * (step + 1) / warmup                      for step < warmup
             = peak * (min + (1 - min) * decay(progress))      after, progress 0 -> 1 at the last step

`warmup = round(warmup_fraction * total_steps)`, so a constant schedule with `warmup_fraction: 0`
is the one whose first k epochs are the same whatever the total: the curve of a constant-schedule
run at epoch k is then the k-epoch result (so one run evaluates every epoch count up to its own).
"""

from __future__ import annotations

import math

from scalegrid.spec import TrainSpec


def warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    return round(warmup_fraction * total_steps)


def lr_at(step: int, total_steps: int, peak_lr: float, train: TrainSpec) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total_steps`."""
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

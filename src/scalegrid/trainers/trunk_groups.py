"""Which trials share a `wsd` trunk, where each branches off it, and what a group costs: pure
arithmetic on trial configs (no torch), so that `scalegrid plan` can count a trunk once.

`trunks.py` trains a group (the longest epoch count from scratch, each shorter one from the trunk
state at its decay start); this module only names the groups and their steps. A branch of E
epochs trains the steps [d_E, E S) of its run (S steps per epoch, d_E its decay start): with
decay_fraction 0.2 the group [1, 2, 4, 8, 16] costs 16 + 0.2 x 15 = 19 epochs of work, not 31.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scalegrid.grid import content_hash, identity
from scalegrid.trainers.schedule import decay_start
from scalegrid.trial import TrialConfig


def trunk_key(config: TrialConfig) -> str | None:
    """The trunk of a trial's stable phase: everything in its id but `epochs`; None for a trial
    that shares none (not an lm `wsd` run, an adaptive stop, a student)."""
    t = config.train
    if config.trainer != "lm" or t.schedule != "wsd" or t.stop is not None or config.distill is not None:
        return None
    fields = identity(config)
    fields.pop("epochs")
    return content_hash({"trunk": fields})


def vector_key(config: TrialConfig) -> str:
    """lm trials with equal keys are trained by one `lm.train_many` call: a trunk's epoch counts
    (every other trial is its own group)."""
    return trunk_key(config) or content_hash(identity(config))


def steps_per_epoch(config: TrialConfig) -> int:
    return math.ceil(config.unique_tokens // config.train.seq_len / config.train.batch_size)


def branch_step(config: TrialConfig) -> int:
    """d_E: the step where an epoch count's decay starts (its state there is the trunk's)."""
    return decay_start(config.epochs * steps_per_epoch(config), config.train)


def tokens_in_steps(config: TrialConfig, first: int, end: int) -> int:
    """Tokens the lm trainer trains on in optimizer steps [first, end): `batch_size` sequences a
    step, fewer in the last step of each epoch (the epoch's remainder)."""
    t = config.train
    per_epoch, sequences = steps_per_epoch(config), config.unique_tokens // t.seq_len
    short_by = t.batch_size * per_epoch - sequences  # sequences the last step of an epoch lacks
    last_steps = end // per_epoch - first // per_epoch  # steps s in [first, end) with s % per_epoch == per_epoch - 1
    return t.seq_len * ((end - first) * t.batch_size - last_steps * short_by)


def planned_flops(configs: Sequence[TrialConfig]) -> list[float]:
    """Each trial's training FLOPs as a trunk group trains it: the longest epoch count of a group
    its whole run, each shorter one its decay only (the stable phase is counted once); a trial
    that shares no trunk with another of `configs`, its whole run."""
    longest: dict[str, int] = {}
    for c in configs:
        key = trunk_key(c)
        if key is not None:
            longest[key] = max(longest.get(key, 0), c.epochs)
    flops = []
    for c in configs:
        key = trunk_key(c)
        if key is None or c.epochs == longest[key]:
            flops.append(c.estimated_flops)
            continue
        decay = tokens_in_steps(c, branch_step(c), c.epochs * steps_per_epoch(c))
        flops.append(float(c.model.flops_per_token(c.vocab_size, c.train.seq_len)) * decay)
    return flops

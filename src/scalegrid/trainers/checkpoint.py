"""Trial checkpoints: `RESULTS/checkpoints/<trial_id>/step-<N>.pt`, written atomically, the newest kept.

A checkpoint is one `torch.save` of a plain dict (the trainer decides what goes in: model,
optimizer, step, data position, RNG states, curve rows so far). It is written to a hidden
temporary name in the trial's directory and renamed into place (on an object store: one PUT), so
a killed writer leaves either the previous checkpoints or the new one, never half a file; then all
but the newest `keep` are removed. `latest` returns the newest one that loads: a file that does not (a full disk, a bad
copy) is reported and skipped, never deleted.

    >>> save(trial.checkpoint_dir, step=400, state={...}, keep=2)
    >>> step, state = latest(trial.checkpoint_dir)      # (0, None) when there is none
"""

from __future__ import annotations

import io
import random
import sys
from typing import Any

from scalegrid.storage.layout import CheckpointDir

# torch is imported where used: the worker lists checkpoints of trainers that never load torch


def steps(directory: CheckpointDir | None) -> list[int]:
    """The steps that have a checkpoint file, oldest first (none without a directory)."""
    if directory is None:
        return []
    return sorted(step for name in directory.results.list(*directory.parts) if (step := directory.step_of(name)) is not None)


def save(directory: CheckpointDir, step: int, state: dict[str, Any], *, keep: int) -> str:
    """One atomic write (temp + rename on a filesystem, one PUT on an object store), then pruning."""
    import torch

    buffer = io.BytesIO()
    torch.save({"step": step, **state}, buffer)
    path = directory.results.write_bytes((*directory.parts, directory.name(step)), buffer.getvalue())
    for old in steps(directory)[:-keep]:
        directory.results.delete((*directory.parts, directory.name(old)))
    return path


def latest(directory: CheckpointDir | None) -> tuple[int, dict[str, Any] | None]:
    """(step, state) of the newest readable checkpoint, or (0, None)."""
    import torch

    for step in reversed(steps(directory)):
        parts = (*directory.parts, directory.name(step))
        try:
            return step, torch.load(io.BytesIO(directory.results.read_bytes(*parts)), map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - an unreadable checkpoint: fall back to the one before
            where = directory.results.uri_of(*parts)
            print(f"scalegrid: warning: checkpoint {where} is unreadable ({err.__class__.__name__}); using an older one", file=sys.stderr)
    return 0, None


def remove(directory: CheckpointDir) -> None:
    """Drop a finished trial's checkpoints: they only ever serve to resume an unfinished one."""
    for step in steps(directory):
        directory.results.delete((*directory.parts, directory.name(step)))


def rng_state() -> dict[str, Any]:
    """Every random number generator a trainer may draw from (dropout, sampling, shuffles)."""
    import numpy as np
    import torch

    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])

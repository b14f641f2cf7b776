"""Trial checkpoints: `RESULTS/checkpoints/<trial_id>/step-<N>.pt`, written atomically, the newest kept.

A checkpoint is one `torch.save` of a plain dict (the trainer decides what goes in: model,
optimizer, step, data position, RNG states, curve rows so far). It is written to a hidden
temporary name in the trial's directory and renamed into place, so a killed writer leaves either
the previous checkpoints or the new one, never half a file; then all but the newest `keep` are
removed. `latest` returns the newest one that loads: a file that does not (a full disk, a bad
copy) is reported and skipped, never deleted.

    >>> save(trial.checkpoint_dir, step=400, state={...}, keep=2)
    >>> step, state = latest(trial.checkpoint_dir)      # (0, None) when there is none
"""

from __future__ import annotations

import os
import random
import re
import sys
import uuid
from pathlib import Path
from typing import Any

# torch is imported where used: the worker lists checkpoints of trainers that never load torch

_NAME = re.compile(r"^step-(\d+)\.pt$")


def steps(directory: Path | None) -> list[int]:
    """The steps that have a checkpoint file, oldest first (none without a directory)."""
    if directory is None or not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name)))


def save(directory: Path, step: int, state: dict[str, Any], *, keep: int) -> Path:
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{step:09d}.pt"
    tmp = directory / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        torch.save({"step": step, **state}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    for old in steps(directory)[:-keep]:
        (directory / f"step-{old:09d}.pt").unlink(missing_ok=True)
    return path


def latest(directory: Path | None) -> tuple[int, dict[str, Any] | None]:
    """(step, state) of the newest readable checkpoint, or (0, None)."""
    import torch

    for step in reversed(steps(directory)):
        path = directory / f"step-{step:09d}.pt"
        try:
            return step, torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - an unreadable checkpoint: fall back to the one before
            print(f"scalegrid: warning: checkpoint {path} is unreadable ({err.__class__.__name__}); using an older one", file=sys.stderr)
    return 0, None


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

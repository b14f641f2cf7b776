"""Trial checkpoints: `RESULTS/checkpoints/<trial_id>/step-<N>.pt`, written atomically, the newest kept.

A checkpoint is one `torch.save` of a plain dict (the trainer decides what goes in: model,
optimizer, step, data position, RNG states, curve rows so far) holding only tensors, numbers,
strings, lists, tuples and dicts, so that it loads with torch's weights-only unpickler
(`safe_load.load_torch`): a file planted in a shared results store runs nothing. It is written to
a hidden temporary name in the trial's directory and renamed into place (on an object store: one
PUT), so a killed writer leaves either the previous checkpoints or the new one, never half a file;
then all but the newest `keep` are removed.

A checkpoint that does not load (truncated, a bad copy, or a pickle that names code) is set aside
as `step-<N>.pt.corrupt-<time>` (kept for a look, never deleted, never loaded again) and the one
before it is used. `resume_point` does that before a trial starts, so the attempt's history
records the step it truly resumes from and the driver can be told.

    >>> save(trial.checkpoint_dir, step=400, state={...}, keep=2)
    >>> step, notes = resume_point(trial.checkpoint_dir)  # the worker, before training
    >>> step, state = latest(trial.checkpoint_dir)        # the trainer: (0, None) when there is none
"""

from __future__ import annotations

import io
import random
import sys

from scalegrid.payloads import StateDict
from scalegrid.storage.layout import CheckpointDir
from scalegrid.trainers.safe_load import load_torch

# torch is imported where used: the worker lists checkpoints of trainers that never load torch


def steps(directory: CheckpointDir | None) -> list[int]:
    """The steps that have a checkpoint file, oldest first (none without a directory)."""
    if directory is None:
        return []
    return sorted(step for name in directory.results.list(*directory.parts) if (step := directory.step_of(name)) is not None)


def save(directory: CheckpointDir, step: int, state: StateDict, *, keep: int) -> str:
    """One atomic write (temp + rename on a filesystem, one PUT on an object store), then pruning."""
    import torch

    buffer = io.BytesIO()
    torch.save({"step": step, **state}, buffer)
    path = directory.results.write_bytes((*directory.parts, directory.name(step)), buffer.getvalue())
    for old in steps(directory)[:-keep]:
        directory.results.delete((*directory.parts, directory.name(old)))
    return path


def load(directory: CheckpointDir, step: int, *, mmap: bool = False) -> StateDict:
    """The checkpoint of `step`, through the weights-only unpickler (`mmap`: map a local file's
    tensors instead of reading them)."""
    parts = (*directory.parts, directory.name(step))
    local = directory.results.local(*parts)
    if local is not None:
        return load_torch(str(local), mmap=mmap)
    return load_torch(io.BytesIO(directory.results.read_bytes(*parts)))


def set_aside(directory: CheckpointDir, step: int, err: Exception) -> str:
    """Rename an unreadable checkpoint aside; returns the warning that says so."""
    parts = (*directory.parts, directory.name(step))
    aside = directory.results.set_aside(parts)
    reason = f"{err.__class__.__name__}: {' '.join(str(err).split())[:160]}"
    return f"checkpoint {directory.results.shown(*parts)} is unreadable ({reason}); set aside as {aside[-1]}"


def resume_point(directory: CheckpointDir | None) -> tuple[int, list[str]]:
    """(the step a trial will resume from, 0 for none; a warning per unreadable checkpoint set aside).

    Loads the newest checkpoints until one loads; a local file's tensors are mapped, not read."""
    notes = []
    for step in reversed(steps(directory)):
        try:
            load(directory, step, mmap=directory.results.local_path is not None)
            return step, notes
        except Exception as err:  # noqa: BLE001 - truncated, not a checkpoint, refused global: set aside
            notes.append(set_aside(directory, step, err))
    return 0, notes


def latest(directory: CheckpointDir | None) -> tuple[int, StateDict | None]:
    """(step, state) of the newest readable checkpoint, or (0, None); unreadable ones are set aside."""
    for step in reversed(steps(directory)):
        try:
            return step, load(directory, step)
        except Exception as err:  # noqa: BLE001 - an unreadable checkpoint: fall back to the one before
            print(f"scalegrid: warning: {set_aside(directory, step, err)}", file=sys.stderr)
    return 0, None


def remove(directory: CheckpointDir) -> None:
    """Drop a finished trial's checkpoints: they only ever serve to resume an unfinished one (the
    ones set aside stay)."""
    for step in steps(directory):
        directory.results.delete((*directory.parts, directory.name(step)))


def rng_state() -> StateDict:
    """Every random number generator a trainer may draw from (dropout, sampling, shuffles), as
    tensors and plain numbers (what a weights-only load accepts)."""
    import numpy as np
    import torch

    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": random.getstate(),
    }


def set_rng_state(state: StateDict) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate(state["python"])

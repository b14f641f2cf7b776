"""Trial checkpoints: `RESULTS/checkpoints/<trial_id>/step-<N>/`, every process writing its own shards.

A checkpoint is a directory in the format of `torch.distributed.checkpoint` (DCP):

    step-<N>/__<rank>_0.distcp     each process's shards of the model and AdamW state (their own
                                   slices under FSDP2; a replicated tensor is written by one process)
    step-<N>/trainer.pt            the loop's own state, written by rank 0: the step, the loss window,
                                   the curve rows so far, the wall time used, every RNG (plain data)
    step-<N>/.metadata             DCP's index of the shards, written last: a step without it is
                                   incomplete (a writer killed midway) and is never read

So no process ever holds more than its own shards to save (rank 0 no longer gathers the model and
AdamW state whole), the processes write at once, and a checkpoint written by W processes loads
onto any other number (DCP reshards: `dcp_checkpoint.py` saves and loads). Nothing read back can
execute: the index goes through the allow-list of `safe_load.DCP_METADATA`, `trainer.pt` and every
non-tensor value through torch's weights-only unpickler. The newest `keep` checkpoints are kept.

A checkpoint that does not load (truncated, a shard missing, or a pickle that names code) is set
aside as `step-<N>.corrupt-<time>` (kept for a look, never deleted, never loaded again) and the one
before it is used. `resume_point` checks the newest ones before a trial starts (its index, its
trainer state, every shard file the index names being there and long enough), so the attempt's
history records the step it truly resumes from and the driver can be told.

This module reads and lists; it loads no torch until a checkpoint exists (the worker lists the
checkpoints of trainers that never use torch).

    >>> step, notes = resume_point(trial.checkpoint_dir)  # the worker, before training
    >>> steps(trial.checkpoint_dir)                       # complete checkpoints, oldest first
"""

from __future__ import annotations

import io
import random

from scalegrid.payloads import StateDict
from scalegrid.storage.layout import CheckpointDir
from scalegrid.trainers.safe_load import DCP_METADATA, load_torch, loads

METADATA = ".metadata"  # DCP's index of the shards: written last
TRAINER = "trainer.pt"  # the loop's plain state (rank 0)


def steps(directory: CheckpointDir | None) -> list[int]:
    """The steps that have a complete checkpoint (its index written), oldest first."""
    if directory is None:
        return []
    found = (directory.step_of(name) for name in directory.results.list_dirs(*directory.parts))
    return sorted(step for step in found if step is not None and directory.results.is_file(*directory.step_parts(step), METADATA))


def trainer_bytes(step: int, state: StateDict) -> bytes:
    """`trainer.pt`: the loop's state with its step, for torch's weights-only unpickler."""
    import torch

    buffer = io.BytesIO()
    torch.save({"step": step, **state}, buffer)
    return buffer.getvalue()


def trainer_state(directory: CheckpointDir, step: int) -> StateDict:
    """The loop's state saved with the checkpoint at `step` (weights-only)."""
    return load_torch(io.BytesIO(directory.results.read_bytes(*directory.step_parts(step), TRAINER)))


def check(directory: CheckpointDir, step: int) -> None:
    """Raise unless the checkpoint at `step` can be loaded: its index unpickles through the
    allow-list, its trainer state weights-only, and every shard file the index names is there and
    holds every byte the index points at. (What the shards hold is read when they are loaded.)"""
    results, parts = directory.results, directory.step_parts(step)
    index = loads(results.read_bytes(*parts, METADATA), DCP_METADATA)
    storage = getattr(index, "storage_data", None)
    if not isinstance(storage, dict):
        raise ValueError(f"{METADATA} is not a checkpoint index ({type(index).__name__})")
    trainer_state(directory, step)
    needed: dict[str, int] = {}
    for where in storage.values():
        needed[where.relative_path] = max(needed.get(where.relative_path, 0), where.offset + where.length)
    for name, size in sorted(needed.items()):
        held = results.info(*parts, name).size or 0
        if held < size:
            raise ValueError(f"shard {name} holds {held} bytes, its index needs {size}")


def set_aside(directory: CheckpointDir, step: int, err: Exception) -> str:
    """Rename an unreadable checkpoint aside; returns the warning that says so."""
    parts = directory.step_parts(step)
    aside = directory.results.set_aside(parts)
    reason = f"{err.__class__.__name__}: {' '.join(str(err).split())[:160]}"
    return f"checkpoint {directory.results.shown(*parts)} is unreadable ({reason}); set aside as {aside[-1]}"


def resume_point(directory: CheckpointDir | None) -> tuple[int, list[str]]:
    """(the step a trial will resume from, 0 for none; a warning per unreadable checkpoint set aside).

    Checks the newest checkpoints (`check`) until one passes."""
    notes = []
    for step in reversed(steps(directory)):
        try:
            check(directory, step)
            return step, notes
        except Exception as err:  # noqa: BLE001 - truncated, not a checkpoint, refused global: set aside
            notes.append(set_aside(directory, step, err))
    return 0, notes


def prune(directory: CheckpointDir, keep: int) -> None:
    """Remove all but the newest `keep` complete checkpoints (and nothing set aside)."""
    for old in steps(directory)[:-keep]:
        directory.results.delete_dir(directory.step_parts(old))


def remove(directory: CheckpointDir) -> None:
    """Drop a finished trial's checkpoints, incomplete ones too: they only ever serve to resume an
    unfinished trial (the ones set aside stay)."""
    for name in directory.results.list_dirs(*directory.parts):
        step = directory.step_of(name)
        if step is not None:
            directory.results.delete_dir(directory.step_parts(step))


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

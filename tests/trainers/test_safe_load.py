"""Nothing read back from a results store executes: planted pickles are refused before they run."""

from __future__ import annotations

import io
import os
import pickle

import pytest
import torch

from scalegrid.storage import layout
from scalegrid.trainers import checkpoint
from scalegrid.trainers.safe_load import DCP_METADATA, UnsafePickle, load, load_torch, loads


class Payload:
    """What an attacker plants: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_torch_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"step": 999999999, "model": Payload(marker)}, buffer)
    with pytest.raises(UnsafePickle, match="posix.system|os.system"):
        load_torch(io.BytesIO(buffer.getvalue()))
    assert not marker.exists()


def test_the_allowlist_unpickler_refuses_every_other_global(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafePickle, match="refused to load posix.system"):
        loads(pickle.dumps({"a": Payload(marker)}))
    assert not marker.exists()
    plain = {"a": [1, 2.5, "x", None, (True,)], "b": {1, 2}}
    assert loads(pickle.dumps(plain)) == plain


def test_dcp_metadata_loads_with_its_allowlist_and_a_payload_does_not(tmp_path):
    """The `.metadata` of a real torch.distributed.checkpoint save (issue 12 reads it with this)."""
    import torch.distributed.checkpoint as dcp

    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optim": optimizer.state_dict(), "step": 5, "bf16": torch.zeros(2, dtype=torch.bfloat16)}
    dcp.save(state, checkpoint_id=str(tmp_path / "dcp"))
    path = tmp_path / "dcp" / ".metadata"
    with open(path, "rb") as f:
        safe = load(f, DCP_METADATA)
    assert repr(safe.state_dict_metadata) == repr(pickle.loads(path.read_bytes()).state_dict_metadata)
    marker = tmp_path / "pwned"
    path.write_bytes(pickle.dumps(Payload(marker)))
    with open(path, "rb") as f, pytest.raises(UnsafePickle):
        load(f, DCP_METADATA)
    assert not marker.exists()


def save(directory, step, shards, trainer=None):
    from scalegrid.trainers.dcp_checkpoint import Checkpointer

    with Checkpointer(directory, keep=1 << 30) as checkpoints:
        checkpoints.save(step, shards, trainer or {})


def test_checkpoints_hold_only_weights_only_types(tmp_path):
    """The trainer's RNG states round-trip through the weights-only load."""
    import random

    import numpy as np

    from scalegrid.trainers.dcp_checkpoint import load as load_checkpoint

    directory = layout(tmp_path).checkpoints("0123456789abcdef")
    np.random.seed(3)
    random.seed(4)
    save(directory, 2, {"w": torch.ones(3)}, {"rng": checkpoint.rng_state()})
    expected = (np.random.rand(), random.random(), torch.rand(1))
    shards = {"w": torch.zeros(3)}
    state = load_checkpoint(directory, 2, shards)
    checkpoint.set_rng_state(state["rng"])
    assert state["step"] == 2 and torch.equal(shards["w"], torch.ones(3))
    assert (np.random.rand(), random.random(), torch.rand(1)) == expected


def test_resume_point_sets_unreadable_checkpoints_aside(tmp_path):
    directory = layout(tmp_path).checkpoints("0123456789abcdef")
    for step in (2, 4):
        save(directory, step, {"w": torch.ones(2) * step})
    folder = tmp_path / "checkpoints" / "0123456789abcdef"
    marker = tmp_path / "pwned"
    poisoned = folder / "step-999999999"  # a planted DCP index naming os.system
    poisoned.mkdir()
    (poisoned / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    (poisoned / "trainer.pt").write_bytes((folder / "step-000000004" / "trainer.pt").read_bytes())
    truncated = folder / "step-000000006"  # a copy of step 4 with its shard cut short
    truncated.mkdir()
    for name in (".metadata", "trainer.pt", "__0_0.distcp"):
        data = (folder / "step-000000004" / name).read_bytes()
        (truncated / name).write_bytes(data[:100] if name.endswith(".distcp") else data)
    assert checkpoint.steps(directory) == [2, 4, 6, 999999999]
    step, notes = checkpoint.resume_point(directory)
    assert step == 4 and not marker.exists()
    assert len(notes) == 2 and "step-999999999 is unreadable (UnsafePickle: refused to load posix.system" in notes[0]
    assert "step-000000006 is unreadable (ValueError: shard __0_0.distcp holds 100 bytes" in notes[1]
    assert sorted(p.name.split(".corrupt-")[0] for p in folder.glob("*.corrupt-*")) == ["step-000000006", "step-999999999"]
    checkpoint.remove(directory)  # a finished trial's checkpoints go; what was set aside stays
    assert len(list(folder.glob("*.corrupt-*"))) == 2 and checkpoint.steps(directory) == []


def test_a_planted_pickle_among_a_checkpoints_values_is_refused(tmp_path):
    """DCP unpickles every non-tensor value with weights_only=False; scalegrid's loader does not."""
    import torch.distributed.checkpoint as dcp

    from scalegrid.trainers.dcp_checkpoint import load as load_checkpoint

    directory = layout(tmp_path).checkpoints("0123456789abcdef")
    marker = tmp_path / "pwned"
    save(directory, 2, {"w": torch.ones(2), "note": "fine"})
    dcp.save({"w": torch.ones(2), "note": Payload(marker)}, checkpoint_id=str(tmp_path / "checkpoints" / "0123456789abcdef" / "step-000000002"))
    checkpoint.check(directory, 2)  # its index is plain data: only loading meets the payload
    with pytest.raises(UnsafePickle):
        load_checkpoint(directory, 2, {"w": torch.zeros(2), "note": ""})
    assert not marker.exists()

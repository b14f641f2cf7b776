"""torch.compile per decoder layer and activation checkpointing on a CPU: the same training, one
compiled graph for every batch size, and saved weights without a wrapper's prefix."""

from __future__ import annotations

import shutil

import pytest
import torch

from scalegrid.spec import FaultToleranceSpec, TrainSpec
from scalegrid.storage import layout
from scalegrid.trainers import checkpoint, get_trainer
from scalegrid.trainers.model import build_model
from scalegrid.trainers.parallelize import compile_enabled
from scalegrid.trainers.safe_load import DCP_METADATA, loads
from scalegrid.trial import Status

# 20 sequences in batches of 8: every epoch ends with a batch of 4; evaluations every 2 steps.
TRAIN = {"batch_size": 8, "eval_every": 2, "log_every": 2}


def in_own_results(trial, tmp_path):
    """The trial with its own results directory (its corpus copied in), saving its final model
    and checkpointing every 2 steps."""
    corpus = trial.results.local(*trial.results.token_cache(trial.data_key))
    shutil.copytree(corpus, tmp_path / "cache" / "tokens" / trial.data_key)
    return trial.model_copy(update={
        "trial_id": "compiled", "results": layout(tmp_path), "save_model": True,
        "fault_tolerance": FaultToleranceSpec(checkpoint_every=2, keep_checkpoints=1),
    })


@pytest.mark.slow
def test_compiled_checkpointed_training_matches_eager(lm_trial, tmp_path):
    from safetensors.torch import load_file
    from torch._dynamo.utils import counters

    eager = get_trainer("lm")(lm_trial(unique_tokens=20 * 32, epochs=2, train=TRAIN), lambda row: None)
    trial = in_own_results(
        lm_trial(unique_tokens=20 * 32, epochs=2, train={**TRAIN, "compile": True, "activation_checkpointing": True}), tmp_path
    )
    torch._dynamo.reset()
    counters.clear()
    compiled = get_trainer("lm")(trial, lambda row: None)
    assert compiled.status == eager.status == Status.COMPLETED
    assert compiled.val_loss == pytest.approx(eager.val_loss, rel=1e-4)
    assert [r["step"] for r in compiled.curves] == [r["step"] for r in eager.curves] == [2, 4, 6]
    # batches of 8 and 4 and three eager evaluations: one graph, compiled once
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])

    expected = set(build_model(trial.config.model, 257, 32).state_dict())
    saved = load_file(tmp_path / "models" / "compiled" / "model.safetensors")
    assert set(saved) | {"lm_head.weight"} >= expected and not any("_orig_mod" in k or "_checkpoint" in k for k in saved)
    (step,) = checkpoint.steps(trial.checkpoint_dir)
    index = loads(trial.results.read_bytes(*trial.checkpoint_dir.step_parts(step), checkpoint.METADATA), DCP_METADATA)
    model_keys = {k.removeprefix("model.model.") for k in index.state_dict_metadata if k.startswith("model.")}  # DCP's, then the step's
    assert model_keys == expected


def test_compile_is_on_for_a_gpu_and_off_for_a_cpu_unless_set():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not compile_enabled(TrainSpec(), cpu) and compile_enabled(TrainSpec(), cuda)
    assert compile_enabled(TrainSpec(compile=True), cpu) and not compile_enabled(TrainSpec(compile=False), cuda)

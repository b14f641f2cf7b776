"""Trials on several processes: `resources.workers: 2` runs each trial as a Ray Train TorchTrainer
of two gloo workers on this CPU, and trains what one process trains at the same global batch; its
saved model and tokenizer load with `from_pretrained` and reproduce its validation loss.

One `scalegrid run` (a Train launch costs ~25-60 s on two loaded cores); the one-process reference
is the same trial trained in this process.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from sweep_fixtures import TINY_LM
from scalegrid import load_curves, load_runs
from scalegrid.cli import main
from scalegrid.errors import UserError
from scalegrid.orchestrator.planning.sweep_plan import make_plan
from scalegrid.spec import parse_spec
from scalegrid.trainers import trainer_of
from scalegrid.data.tokenizers import ByteTokenizer

# 21 sequences in batches of 4: the last batch is one sequence, so the second worker's share of it is
# empty (a weight-0 pad); micro-batches of 1 make two per share, the first under no_sync.
SPEC = {
    **TINY_LM,
    "name": "two-workers",
    "data": {**TINY_LM["data"], "unique_tokens": 21 * 32},
    "epochs": 2,
    "train": {**TINY_LM["train"], "batch_size": 4, "micro_batch_size": 1, "eval_every": 4},
    "fault_tolerance": {"max_failures": 0},  # a bug fails fast instead of waiting out retries
}


def test_two_workers_train_what_one_process_trains(ray_local, write_spec, tmp_path):
    """DDP (this process's `run`) and FSDP2 (a second driver joined by address, at the same time:
    the two Train launches' fixed costs overlap), each against the trial trained in one process."""
    two = {"workers": 2, "cpus_per_worker": 0.45}  # two trials of 2 x 0.45 + a driver's 0.01 on the 2 CPUs
    fsdp_spec = write_spec({
        **SPEC, "results": str(tmp_path / "fsdp"), "resources": two, "train": {**SPEC["train"], "parallelism": "fsdp"},
        "fault_tolerance": {"max_failures": 0, "checkpoint_every": 4},  # the gathered (collective) checkpoint, 3 times
    }, "fsdp.yaml")
    fsdp = subprocess.Popen(
        [sys.executable, "-m", "scalegrid.cli", "run", str(fsdp_spec), "--address", ray_local.get_runtime_context().gcs_address, "--no-report"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    spec = write_spec({**SPEC, "resources": two})
    assert main(["run", str(spec), "--no-report"]) == 0
    out = fsdp.communicate(timeout=600)[0]
    assert fsdp.returncode == 0, out[-3000:]

    trial = make_plan(spec).trials[0].model_copy(update={"save_model": False})  # resources are in no trial id
    single = trainer_of(trial)(trial, lambda row: None)
    assert single.world_size == 1
    for results in (tmp_path / "results", tmp_path / "fsdp"):
        row = load_runs(results).iloc[0]
        assert row["status"] == "COMPLETED" and row["world_size"] == 2 and row["trial_id"] == trial.trial_id, row["error"]
        assert row["tokens_seen"] == 2 * 21 * 32
        assert row["val_loss"] == pytest.approx(single.val_loss, abs=1e-4)
        assert row["train_loss"] == pytest.approx(single.train_loss, abs=1e-4)
        curves = load_curves(results)
        assert curves["step"].tolist() == [r["step"] for r in single.curves]  # rank 0's rows, once each
        assert np.allclose(curves["val_loss"], [r["val_loss"] for r in single.curves], atol=1e-4, rtol=0)
        assert_from_pretrained_reproduces(results, row)
    written = tmp_path / "fsdp" / "checkpoints" / trial.trial_id
    assert written.is_dir() and not any(written.iterdir())  # checkpoints were written, and removed once the row was


def assert_from_pretrained_reproduces(results, row) -> None:
    """The final model and its tokenizer, saved by rank 0, load with Hugging Face's Auto classes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved = results / "models" / row["trial_id"]
    model, tokenizer = AutoModelForCausalLM.from_pretrained(saved), AutoTokenizer.from_pretrained(saved)
    text = "Ada Lovelace wrote the first program. Ünïcode too\n"
    assert tokenizer(text)["input_ids"] == ByteTokenizer().encode_documents([text])[:-1].tolist()
    assert tokenizer.eos_token_id == ByteTokenizer.eos_id and model.config.vocab_size == 257
    (cache,) = (results / "cache" / "tokens").iterdir()
    val = torch.from_numpy(np.fromfile(cache / "val.bin", dtype=np.uint16)[:1024].astype(np.int64)).view(-1, 32)
    with torch.no_grad():
        loss = np.mean([model(input_ids=x, labels=x).loss.item() for x in val.split(8)])
    assert loss == pytest.approx(row["val_loss"], abs=1e-4)


@pytest.mark.parametrize(
    "resources, expected",
    [
        ({"workers": 0}, "resources.workers: must be between 1 and 4096 (got 0)"),
        ({"workers": 2.5}, "resources.workers"),
        ({"gpus": 1, "gpus_per_worker": 2, "workers": 2}, "gpus and gpus_per_worker disagree"),
        ({"cpus": 2, "cpus_per_worker": 1}, "cpus and cpus_per_worker disagree"),
        ({"cpus_per_worker": 0}, "resources.cpus_per_worker: must be between 0.0001 and 4096"),
    ],
)
def test_bad_resources_are_one_line_naming_the_field(resources, expected):
    with pytest.raises(UserError) as err:
        parse_spec({**SPEC, "resources": resources}, source="s.yaml")
    assert "\n" not in str(err.value) and expected in str(err.value)


def test_parallelism_is_validated():
    with pytest.raises(UserError, match="train.parallelism"):
        parse_spec({**SPEC, "train": {**SPEC["train"], "parallelism": "zero3"}}, source="s.yaml")
    assert math.isclose(parse_spec({**SPEC, "resources": {"workers": 2, "gpus_per_worker": 1}}).resources.worker["GPU"], 1)

"""Trials on several processes: `resources.workers: 2` runs each trial as a Ray Train TorchTrainer
of two gloo workers on this CPU, and trains what one process trains at the same global batch.

One `scalegrid run` per parallelism (each Train launch costs ~25 s on two loaded cores); the
one-process reference is trained in this process from the same plan.
"""

from __future__ import annotations

import math

import pytest

from sweep_fixtures import TINY_LM
from scalegrid import load_curves, load_runs
from scalegrid.cli import main
from scalegrid.errors import UserError
from scalegrid.spec import parse_spec

# 21 sequences in batches of 4: the last batch is one sequence, so the second worker's share of it is
# empty (a weight-0 pad); micro-batches of 1 make two per share, the first under no_sync.
SPEC = {
    **TINY_LM,
    "name": "two-workers",
    "data": {**TINY_LM["data"], "unique_tokens": 21 * 32},
    "epochs": 2,
    "train": {**TINY_LM["train"], "batch_size": 4, "micro_batch_size": 1, "eval_every": 4},
    "keep_weights": False,
    "fault_tolerance": {"max_failures": 0},  # a bug fails fast instead of waiting out retries
}


def test_two_workers_train_what_one_process_trains(ray_local, write_spec, tmp_path):
    one = write_spec({**SPEC, "results": str(tmp_path / "one")}, "one.yaml")
    assert main(["run", str(one), "--no-report"]) == 0
    two = write_spec({**SPEC, "results": str(tmp_path / "two"), "resources": {"workers": 2, "cpus_per_worker": 0.5}}, "two.yaml")
    assert main(["run", str(two), "--no-report"]) == 0

    single, ddp = load_runs(tmp_path / "one").iloc[0], load_runs(tmp_path / "two").iloc[0]
    assert single["trial_id"] == ddp["trial_id"]  # resources are in no trial id
    assert ddp["status"] == "COMPLETED" and (single["world_size"], ddp["world_size"]) == (1, 2)
    assert ddp["val_loss"] == pytest.approx(single["val_loss"], abs=1e-4)
    assert ddp["train_loss"] == pytest.approx(single["train_loss"], abs=1e-4)
    assert ddp["tokens_seen"] == single["tokens_seen"] == 2 * 21 * 32
    curves_one, curves_two = load_curves(tmp_path / "one"), load_curves(tmp_path / "two")
    assert curves_two["step"].tolist() == curves_one["step"].tolist()  # rank 0's rows, once each
    assert max(abs(a - b) for a, b in zip(curves_one["val_loss"], curves_two["val_loss"])) < 1e-4


@pytest.mark.parametrize(
    "resources, expected",
    [
        ({"workers": 0}, "resources.workers: must be between 1 and 4096 (got 0)"),
        ({"workers": 2.5}, "resources.workers"),
        ({"gpus": 1, "gpus_per_worker": 2, "workers": 2}, "gpus and gpus_per_worker disagree"),
        ({"cpus": 2, "cpus_per_worker": 1}, "cpus and cpus_per_worker disagree"),
        ({"cpus_per_worker": 0}, "resources.cpus_per_worker: must be > 0"),
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

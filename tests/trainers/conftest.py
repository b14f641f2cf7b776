"""A tiny synthetic corpus tokenized once per test session, and trials over it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scalegrid.spec import DataSpec, TrainSpec
from scalegrid.storage import layout
from scalegrid.trial import Trial, TrialConfig
from scalegrid.shapes import PRESETS

TINY_DATA = {
    "source": "synthetic",
    "synthetic": {"documents": 300, "entities": 40, "seed": 1},
    "unique_tokens": [4096],
    "validation": {"fraction": 0.1, "max_tokens": 1024},
}


@pytest.fixture(scope="session")
def tiny_tokens(tmp_path_factory):
    """(DataIdentity, token-cache directory) of TINY_DATA, byte tokenizer."""
    from scalegrid.data.identity import prepare

    results = tmp_path_factory.mktemp("results")
    identity, path = prepare(DataSpec(**TINY_DATA), layout(results))
    return identity, path


@pytest.fixture
def lm_trial(tiny_tokens):
    """A Trial of llama-50k on the tiny corpus; keyword arguments override config and train fields."""
    identity, path = tiny_tokens

    def make(*, model: str = "llama-50k", train: dict | None = None, **config) -> Trial:
        fields = {
            "trainer": "lm",
            "model": PRESETS[model](),
            "data": identity.config,
            "unique_tokens": 2048,
            "epochs": 1,
            "lr": 3e-3,
            "weight_decay": 0.1,
            "seed": 0,
            "train": TrainSpec(**{"batch_size": 8, "seq_len": 32, "eval_every": 4, "log_every": 2, **(train or {})}),
        }
        fields.update(config)
        return Trial(
            trial_id="t", sweep="test", model_label=model, config=TrialConfig(**fields),
            results=layout(path.parent.parent.parent), data_key=identity.key,
        )

    return make


@pytest.fixture
def peak_bytes():
    """Measure a job of `peak_memory.py` in a fresh process: the growth of its peak resident memory."""

    def measure(**job) -> int:
        script = Path(__file__).with_name("peak_memory.py")
        out = subprocess.run([sys.executable, str(script), json.dumps(job)], capture_output=True, text=True, check=True)
        return int(out.stdout.strip().splitlines()[-1])

    return measure

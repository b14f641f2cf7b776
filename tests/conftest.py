"""Shared fixtures: one real local Ray for the session, spec files written into tmp dirs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on 127.0.0.1
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec dict as YAML; `results` defaults to a directory under tmp_path."""

    def write(spec: dict, name: str = "spec.yaml") -> Path:
        spec = {"results": str(tmp_path / "results"), **spec}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return write


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root with the hash of its bytes: to prove a failed command wrote nothing."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


LINREG = {
    "name": "lin",
    "trainer": "linreg",
    "model": {"dims": 64},
    "data": {"source": "gaussian", "unique_tokens": [128, 256]},
    "epochs": [1, 2],
    "lr": 0.05,
    "train": {"batch_size": 8},
    "resources": {"cpus": 1},
}

TINY_LM = {
    "name": "tiny",
    "trainer": "lm",
    "model": "llama-50k",
    "data": {
        "source": "synthetic",
        "synthetic": {"documents": 300, "entities": 40, "seed": 1},
        "unique_tokens": 4096,
        "validation": {"fraction": 0.1, "max_tokens": 1024},
    },
    "epochs": 1,
    "lr": 3e-3,
    "train": {"batch_size": 8, "seq_len": 32, "eval_every": 8},
}

"""Shared fixtures: one real local Ray for the session, spec files written into tmp dirs."""

from __future__ import annotations

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

    ray.init(address="local", num_cpus=2, include_dashboard=False)  # never another `ray start` on this machine
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

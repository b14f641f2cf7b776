"""`scalegrid plan` of the paper's grid: every trial's micro-batch and peak memory on an 80 GB GPU,
and on a 24 GB one the 1.4B model refused in one line that names the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sweep_fixtures import tree_digest
from scalegrid.cli import main

ROOT = Path(__file__).parents[1]


@pytest.fixture
def paper_spec(tmp_path):
    """sweeps/paper-200m.yaml with a local tokenizer of the Llama-3 vocabulary's size (128,256
    entries) and synthetic documents in place of the hub: the plan needs the vocabulary, not text."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": 0, **{f"w{i}": i for i in range(1, 128_256)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>").save_pretrained(tmp_path / "llama3-sized")

    def write(gpu_memory_gb: float) -> Path:
        spec = yaml.safe_load((ROOT / "sweeps" / "paper-200m.yaml").read_text())
        spec["data"] = {"source": "synthetic", "tokenizer": str(tmp_path / "llama3-sized"),
                        "unique_tokens": spec["data"]["unique_tokens"]}
        spec["resources"]["gpu_memory_gb"] = gpu_memory_gb
        spec["results"] = str(tmp_path / "results")
        path = tmp_path / f"paper-{gpu_memory_gb:g}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return write


def test_the_papers_grid_fits_an_80_gb_gpu(paper_spec, capsys):
    assert main(["plan", str(paper_spec(80))]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert "micro_batch" in header and "gpu_gib" in header
    memory = out[out.index("estimated peak GPU memory"):].splitlines()[2:6]
    assert [line.split()[0] for line in memory] == ["llama-150m", "llama-300m", "llama-600m", "llama-1.4b"]
    for line in memory:
        micro, peak = int(line.split()[1]), float(line.split()[-1])
        assert 64 % micro == 0 and peak <= 80
    trial_rows = [line.split() for line in out.splitlines()[1:] if line.split() and len(line.split()) == len(header)]
    assert len(trial_rows) == 4 * 5 * 2 * 4  # every trial has its micro-batch and memory


def test_a_24_gb_gpu_refuses_the_1_4b_model_naming_the_fix(paper_spec, capsys, tmp_path):
    spec = paper_spec(24)
    assert main(["plan", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("scalegrid: error: model llama-1.4b (batch 64 x 4096, vocab 128,256)")
    assert "on a 24 GB GPU" in err and "shard it over several: resources.workers" in err
    before = tree_digest(tmp_path / "results")
    assert main(["run", str(spec)]) == 2 and tree_digest(tmp_path / "results") == before


def test_the_clusters_smallest_gpu_type_bounds_the_plan_when_the_spec_does_not():
    """`run --address` reads Ray's `accelerator_type:` node resources (here declared on a real local Ray)."""
    import os
    import subprocess
    import sys

    code = (
        "import ray; from scalegrid.orchestrator.execution.ray_session import cluster_gpu_memory_gb; "
        "ray.init(num_cpus=1, resources={'accelerator_type:H100': 1, 'accelerator_type:A10G': 1}, include_dashboard=False); "
        "print(cluster_gpu_memory_gb())"
    )
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "24"

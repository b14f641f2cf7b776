"""Sharded checkpoints on several gloo processes: a trial checkpointed by 4 FSDP2 processes, killed,
and resumed on 2 ends where the uninterrupted trial does; saving holds no more than a shard on
rank 0 (`benchmarks/bench_checkpoint.py`, at a small size, measures it).

Costs on the 2 shared cores (load 3-8): the resume test ~60-90 s (6 spawned processes, each
importing torch and transformers), the memory test ~40-60 s (8 processes).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gloo_ranks
from scalegrid.spec import FaultToleranceSpec
from scalegrid.storage import layout
from scalegrid.trainers import checkpoint, get_trainer

BENCH = Path(__file__).parents[2] / "benchmarks" / "bench_checkpoint.py"


def in_own_results(trial, results: Path, **update):
    corpus = trial.results.local(*trial.results.token_cache(trial.data_key))
    shutil.copytree(corpus, results / "cache" / "tokens" / trial.data_key, dirs_exist_ok=True)
    return trial.model_copy(update={"results": layout(results), **update})


def test_fsdp_on_four_processes_killed_then_resumed_on_two_equals_the_uninterrupted_run(lm_trial, tmp_path):
    # 2 epochs x 8 steps of 8 sequences (2 per process on 4, 4 on 2); evaluations every 4 steps
    base = lm_trial(epochs=2, train={"eval_every": 4, "log_every": 2, "parallelism": "fsdp"})
    whole = get_trainer("lm")(in_own_results(base, tmp_path / "whole"), lambda row: None)  # one process, uninterrupted
    trial = in_own_results(base, tmp_path / "cut", trial_id="cut", fault_tolerance=FaultToleranceSpec(checkpoint_every=4, keep_checkpoints=2))
    out = tmp_path / "out"
    out.mkdir()

    four = gloo_ranks.start(4, {"trial": trial, "out": str(out), "hang_at": 12})
    deadline = time.monotonic() + 600
    while not ((out / "hanging").exists() and checkpoint.steps(trial.checkpoint_dir) == [4, 8]):
        assert time.monotonic() < deadline and all(p.is_alive() for p in four), [p.exitcode for p in four]
        time.sleep(0.2)
    gloo_ranks.kill(four)  # kill -9 after its step-8 checkpoint was complete, at step 12
    shards = sorted(p.name for p in (tmp_path / "cut" / "checkpoints" / "cut" / "step-000000008").iterdir())
    assert shards == [".metadata", *(f"__{rank}_0.distcp" for rank in range(4)), "trainer.pt"]  # every process wrote its own

    assert gloo_ranks.wait(gloo_ranks.start(2, {"trial": trial, "out": str(out)})) == [0, 0]
    resumed = gloo_ranks.result(out)
    assert resumed["status"] == "COMPLETED" and resumed["world_size"] == 2 and resumed["resumed_from_step"] == 8
    assert [r["step"] for r in resumed["curves"]] == [4, 8, 12, 16]
    assert [r["resumed_from_step"] for r in resumed["curves"]] == [0, 0, 8, 8]  # two rows of the 4-process attempt
    assert resumed["tokens_seen"] == whole.tokens_seen
    assert resumed["val_loss"] == pytest.approx(whole.val_loss, abs=1e-4)
    assert resumed["train_loss"] == pytest.approx(whole.train_loss, abs=1e-4)
    assert [r["val_loss"] for r in resumed["curves"]] == pytest.approx([r["val_loss"] for r in whole.curves], abs=1e-4)
    print(f"4 -> 2 processes resume error: val {abs(resumed['val_loss'] - whole.val_loss):.3g}")


def test_saving_holds_a_shard_on_rank_0_where_gathering_held_the_whole_state():
    """4 FSDP2 processes of a 3.4M-parameter model (41 MiB of weights and AdamW moments)."""
    done = subprocess.run(
        [sys.executable, str(BENCH), "--workers", "4", "--hidden", "256", "--layers", "4", "--intermediate", "688", "--heads", "4", "--json"],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    gathered, sharded = json.loads(done.stdout.strip().splitlines()[-1])
    full = sharded["full_bytes"]
    assert max(sharded["save_peak"]) < full / 2, sharded  # a quarter's shards staged, plus buffers
    assert gathered["save_peak"][0] > 0.75 * full, gathered  # the old way: the whole state on rank 0 (measured 1.2x)
    print(f"rank-0 peak growth while saving: sharded {sharded['save_peak'][0] / full:.2f}, gathered {gathered['save_peak'][0] / full:.2f} "
          f"of the full state ({full / 2**20:.0f} MiB)")

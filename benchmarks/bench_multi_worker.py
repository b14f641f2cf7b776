"""The cost of a trial on several processes: one tiny lm trial through `scalegrid run` in one
process, then on W Ray Train workers (DDP, gloo on a CPU; NCCL with `--gpus-per-worker 1`).

Prints each trial's `wall_s` (the run row: what the trial took inside its Tune trial, the Train
launch included) and the difference: the fixed overhead of a Train launch, which a multi-worker
trial must win back by training faster. On a GPU machine `--model llama-150m --gpus-per-worker 1`
gives the scaling efficiency of one trial from 1 to W GPUs (tokens/s at W over W x tokens/s at 1).

    python benchmarks/bench_multi_worker.py [--workers 2] [--model llama-50k] [--gpus-per-worker 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def spec(results: Path, model: str, resources: dict, tokens: int, seq_len: int, batch: int) -> dict:
    return {
        "name": "bench-workers", "trainer": "lm", "model": model,
        "data": {"source": "synthetic", "synthetic": {"documents": 3000, "entities": 40, "seed": 1},
                 "unique_tokens": tokens, "validation": {"fraction": 0.1, "max_tokens": 4 * seq_len}},
        "epochs": 1, "lr": 3e-3, "train": {"batch_size": batch, "seq_len": seq_len, "eval_every": 10_000},
        "resources": resources, "keep_weights": False, "results": str(results),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="llama-50k")
    parser.add_argument("--gpus-per-worker", type=float, default=0)
    parser.add_argument("--tokens", type=int, default=64 * 128)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    import ray

    from scalegrid import load_runs
    from scalegrid.commands.run import run_sweep

    gpus = args.gpus_per_worker
    one = {"cpus": 1, "gpus": gpus}
    many = {"workers": args.workers, "cpus_per_worker": 1 if gpus else 0.45, "gpus_per_worker": gpus}
    ray.init(include_dashboard=False)
    print(f"load before: {os.getloadavg()[0]:.1f}; Ray: {ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, resources in (("one process", one), (f"{args.workers} workers", many)):
            results = Path(tmp) / name.replace(" ", "-")
            start = time.perf_counter()
            run_sweep(spec(results, args.model, resources, args.tokens, args.seq_len, args.batch))
            row = load_runs(results).iloc[0]
            rows[name] = row
            print(f"{name}: wall_s {row['wall_s']:.1f} s (run {time.perf_counter() - start:.1f} s), world_size {row['world_size']}, "
                  f"val_loss {row['val_loss']:.6f}, {row['tokens_seen'] / row['wall_s']:,.0f} tokens/s, device {row['device']}")
    first, second = rows.values()
    print(f"overhead of the {args.workers}-worker launch: {second['wall_s'] - first['wall_s']:.1f} s; "
          f"|val_loss difference| {abs(second['val_loss'] - first['val_loss']):.2e}; load after: {os.getloadavg()[0]:.1f}")
    if gpus:
        efficiency = (second["tokens_seen"] / second["wall_s"]) / (args.workers * first["tokens_seen"] / first["wall_s"])
        print(f"scaling efficiency 1 -> {args.workers} GPUs (launch included): {efficiency:.0%}")


if __name__ == "__main__":
    main()

"""What tracking costs per trial: the same tiny lm sweep with no tracker, TensorBoard, MLflow
(a local file store) and W&B (offline), one Ray session, trials one at a time.

Each backend trains the sweep afresh in its own results directory (the token cache is copied in,
so tokenizing is not timed). The cost of a backend is its wall time minus the untracked run's,
per trial; every evaluation row is reported to Tune either way, so the difference is the trackers'
own work (starting a run, logging each row, closing it). Timings are noisy on a loaded machine:
run it twice and print `uptime` beside it.

    python benchmarks/bench_tracking.py [--trials 6] [--eval-every 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("WANDB_SILENT", "true")

BACKENDS = {
    "none": {},
    "tensorboard": {"tensorboard": True},
    "mlflow": {"mlflow": {}},
    "wandb": {"wandb": {"project": "scalegrid-bench", "mode": "offline"}},
}


def spec_for(trials: int, eval_every: int, tracking: dict) -> dict:
    return {
        "name": "bench-tracking",
        "trainer": "lm",
        "model": "llama-50k",
        "data": {"source": "synthetic", "synthetic": {"documents": 300, "entities": 40, "seed": 1},
                 "unique_tokens": 4096, "validation": {"fraction": 0.1, "max_tokens": 1024}},
        "epochs": 1,
        "lr": 3e-3,
        "seed": list(range(trials)),
        "train": {"batch_size": 8, "seq_len": 32, "eval_every": eval_every},
        "tracking": tracking,
    }


def timed_run(spec: dict, results: Path, tokens: Path | None) -> float:
    from scalegrid.commands.run import run_sweep

    if tokens is not None:
        shutil.copytree(tokens, results / "cache" / "tokens")
    start = time.perf_counter()
    run_sweep(spec, results=str(results), max_concurrent=1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--eval-every", type=int, default=8, help="steps between evaluations (16 steps per trial)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    work = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    warm = work / "warm"
    timed_run(spec_for(1, args.eval_every, {}), warm, None)  # tokenize once, import torch in the workers
    tokens = warm / "cache" / "tokens"
    seconds: dict[str, list[float]] = {name: [] for name in BACKENDS}
    for repeat in range(args.repeats):
        for name, tracking in BACKENDS.items():
            results = work / f"{name}-{repeat}"
            seconds[name].append(timed_run(spec_for(args.trials, args.eval_every, tracking), results, tokens))
            print(f"repeat {repeat}: {name:<12} {seconds[name][-1]:7.1f} s", file=sys.stderr, flush=True)
    ray.shutdown()
    base = statistics.median(seconds["none"])
    evals = 16 // args.eval_every + 1
    print(f"\n{args.trials} llama-50k trials one at a time, {evals} evaluations each, median of {args.repeats}; load: {os.getloadavg()[0]:.2f}")
    print(f"{'backend':<12} {'wall s':>8} {'s per trial':>12} {'tracking s per trial':>21}")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"{name:<12} {median:8.1f} {median / args.trials:12.2f} {(median - base) / args.trials:21.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

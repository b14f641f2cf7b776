"""Orchestration overhead: 64 short linreg trials through `scalegrid run` vs a bare `Tuner.fit()`.

Both run the same trials (same trainer function, same resources, one Ray session) so the
difference is what scalegrid adds per trial: planning, the store scan, Parquet writes, progress.
Prints the wall time per trial of each and the ratio (target: scalegrid at most 1.10x bare Tune).

    python benchmarks/bench_orchestration.py [--trials 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def spec_for(trials: int, results: Path) -> dict:
    return {
        "name": "bench",
        "trainer": "linreg",
        "model": {"dims": 128},
        "data": {"source": "gaussian", "unique_tokens": [256]},
        "epochs": [2],
        "lr": 0.05,
        "seed": list(range(trials)),
        "train": {"batch_size": 8},
        "results": str(results),
    }


def bare_tune(trials, storage: Path) -> float:
    from ray import tune

    from scalegrid.trainers import get_trainer

    by_id = {t.trial_id: t for t in trials}

    def trainable(config):
        trial = by_id[config["trial_id"]]
        result = get_trainer("linreg")(trial, lambda row: None)
        tune.report({"val_loss": result.val_loss})

    start = time.perf_counter()
    tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"trial_id": tune.grid_search(list(by_id))},
        run_config=tune.RunConfig(storage_path=str(storage), name="bare", verbose=0),
    ).fit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import ray

    from scalegrid import grid
    from scalegrid.cli import main as cli
    from scalegrid.spec import parse_spec
    from scalegrid.data.identity import describe

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    bare_s, ours_s = [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            raw = spec_for(args.trials, Path(tmp) / "results")
            spec = parse_spec(raw)
            trials = grid.expand(spec, describe(spec.data))
            bare_s.append(bare_tune(trials, Path(tmp) / "bare"))
            spec_path = Path(tmp) / "spec.yaml"
            spec_path.write_text(yaml.safe_dump(raw))
            start = time.perf_counter()
            assert cli(["run", str(spec_path), "--no-report"]) == 0
            ours_s.append(time.perf_counter() - start)
        print(f"repeat {repeat}: bare Tune {bare_s[-1]:.1f} s, scalegrid run {ours_s[-1]:.1f} s", file=sys.stderr)
    bare, ours = min(bare_s), min(ours_s)
    print(f"{args.trials} linreg trials, 2 CPUs, best of {args.repeats}:")
    print(f"  bare Tuner.fit()  {bare:6.1f} s  {bare / args.trials * 1000:6.0f} ms/trial")
    print(f"  scalegrid run     {ours:6.1f} s  {ours / args.trials * 1000:6.0f} ms/trial")
    print(f"  ratio scalegrid / bare: {ours / bare:.3f} (target <= 1.10)")
    ray.shutdown()


if __name__ == "__main__":
    main()

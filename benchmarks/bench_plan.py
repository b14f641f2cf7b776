"""`scalegrid plan` and `scalegrid status` of a grid of N (default 100,000) linreg trials: wall time
and peak memory (the child's max RSS), each command in its own process as a user runs it.

The spec is bench_scale.py's (one seed per trial, so the YAML lists N seeds: the slowest case for
the spec's parsing). `status` reads a results directory that holds a run row for every trial,
written as the driver leaves it after a run: folded into part files of `store.compact.PART_ROWS`
rows (writing N rows' own files first would take ~4 ms each here). `--report` also times
`scalegrid report` of that directory (no curves in it: the runs table's sections only).

    python benchmarks/bench_plan.py [--trials 100000] [--report]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import spec_for  # noqa: E402 - the same grid as the run benchmark


def timed(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one command, its output discarded."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {process.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024


def write_runs(spec_path: Path, results: Path) -> int:
    """A run row for every trial of the spec, as part files; returns how many files."""
    from scalegrid import store
    from scalegrid.orchestrator.planning.sweep_plan import make_plan
    from scalegrid.store.compact import PART_ROWS
    from scalegrid.trial import Status, TrialResult

    plan = make_plan(str(spec_path), results=str(results))
    plan.results.makedirs()
    files = 0
    for first in range(0, len(plan.trials), PART_ROWS):
        rows = []
        for i, trial in enumerate(plan.trials[first:first + PART_ROWS], start=first):
            c = trial.config
            result = TrialResult(Status.COMPLETED, c.num_params, c.num_params_nonembed, c.tokens_seen, c.estimated_flops,
                                 val_loss=0.5 + 1e-6 * i, best_val_loss=0.5, train_loss=0.4)
            rows.append(dataclasses.asdict(store.trial_row(trial, result, wall_s=0.01, provenance={})))
        data = pa.Table.from_pylist(rows, schema=store.RUN_SCHEMA)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        plan.results.write_atomic(plan.results.part_file("runs", stamp, f"{first:08x}"),
                                  lambda path, fs: pq.write_table(data, path, filesystem=fs))
        files += 1
    return files


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--report", action="store_true", help="also time `scalegrid report` of the results")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "scalegrid.cli"]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        spec_path = tmp / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(spec_for(args.trials, tmp / "results")))
        print(f"{args.trials:,} linreg trials, one process per command:")
        seconds, peak = timed([*cli, "plan", str(spec_path)])
        print(f"  plan (nothing run)         {seconds:6.1f} s  peak RSS {peak:5.0f} MB")
        start = time.perf_counter()
        files = write_runs(spec_path, tmp / "results")
        print(f"  (wrote {args.trials:,} run rows in {files} part files in {time.perf_counter() - start:.1f} s)")
        seconds, peak = timed([*cli, "plan", str(spec_path)])
        print(f"  plan (every trial done)    {seconds:6.1f} s  peak RSS {peak:5.0f} MB")
        seconds, peak = timed([*cli, "status", str(tmp / "results")])
        print(f"  status                     {seconds:6.1f} s  peak RSS {peak:5.0f} MB")
        if args.report:
            seconds, peak = timed([*cli, "report", str(tmp / "results"), "-o", str(tmp / "report")])
            print(f"  report                     {seconds:6.1f} s  peak RSS {peak:5.0f} MB")


if __name__ == "__main__":
    main()

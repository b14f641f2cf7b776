"""Driver memory and scheduling throughput of a large grid of short linreg trials.

`scalegrid run` of N (default 2,000) linreg trials on a 2-CPU Ray, in its own process after a
warm-up run that imports everything: the driver's resident memory (VmRSS, sampled every 50 ms for the peak)
before and after, and trials per second. Then a bare `Tuner.fit()` over M (default 60) of the same
trials, one Tune trial each, the way Tune alone runs a grid: its trials per second and its driver
memory per trial. Bare Tune is measured on fewer trials because at ~0.5-2 s per trial 2,000 of
them take most of an hour here; the per-trial figures are compared.

    python benchmarks/bench_scale.py [--trials 2000] [--bare-trials 60]

Measured on the 2-core dev machine (shared, load ~5-7), 2026-11-26:
    scalegrid run  2000 trials  61.1 s  32.7 trials/s  driver RSS +25.4 MB after, peak +95.5 MB
    bare Tune        60 trials 111.7 s   0.54 trials/s  +151 kB/trial (+302 MB at 2,000 if linear)

Issue 27: at 10,000 trials the driver grew by 1.4 GB. Sampled every 0.2 s (a run of 3,000), its
memory was flat while Tune trained and rose by 430 MB in the last three seconds: the end-of-run
read of the store, one pyarrow dataset over 3,000 one-row run files (~140 kB each while read,
freed but kept by glibc: `malloc_trim` gave it back). No Python object outlived the run
(`gc.get_objects` by type before and after). The fix is at the cause: the driver folds the
trials' row files into part files while it trains (`store/compact.py`), and scans read one file at
a time. `--measure scalegrid` alone, 2 CPUs, 2026-12-07 (load average 2-3 throughout):
    arch-dev      10,000 trials  178.0 s  56.2 trials/s  driver RSS 319 -> 1,753 MB (+1,434 MB)
    this change   10,000 trials  185.9 s  53.8 trials/s  driver RSS 313 ->   438 MB (+125 MB, peak +133 MB)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Peak:
    def __init__(self):
        self.peak, self._stop = rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def spec_for(trials: int, results: Path) -> dict:
    return {
        "name": "scale",
        "trainer": "linreg",
        "model": {"dims": 64},
        "data": {"source": "gaussian", "unique_tokens": [256]},
        "epochs": [1],
        "lr": 0.05,
        "seed": list(range(trials)),
        "train": {"batch_size": 16},
        "results": str(results),
    }


def scalegrid_run(trials: int, tmp: Path) -> tuple[float, float, float, float]:
    """(seconds, RSS before, RSS after, peak RSS) of one `scalegrid run` of `trials` trials."""
    from scalegrid.cli import main as cli

    spec_path = tmp / f"spec-{trials}.yaml"
    spec_path.write_text(yaml.safe_dump(spec_for(trials, tmp / f"results-{trials}")))
    gc.collect()
    before = rss_mb()
    with Peak() as peak, contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        code = cli(["run", str(spec_path), "--no-report"])
        elapsed = time.perf_counter() - start
    assert code == 0, code
    gc.collect()
    return elapsed, before, rss_mb(), peak.peak


def bare_tune(trials: int, tmp: Path) -> tuple[float, float, float]:
    """(seconds, RSS before, RSS after) of a bare Tuner.fit() over the same kind of trials."""
    from ray import tune

    from scalegrid import grid
    from scalegrid.spec import parse_spec
    from scalegrid.data.identity import describe

    spec = parse_spec(spec_for(trials, tmp / "bare-results"))
    by_id = {t.trial_id: t for t in grid.expand(spec, describe(spec.data))}

    def trainable(config, by_id):
        from scalegrid.trainers import get_trainer

        result = get_trainer("linreg")(by_id[config["trial_id"]], lambda row: None)
        tune.report({"val_loss": result.val_loss})

    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, by_id=by_id), {"cpu": 1}),
        param_space={"trial_id": tune.grid_search(list(by_id))},
        run_config=tune.RunConfig(storage_path=str(tmp / "bare"), name="bare", verbose=0),
    ).fit()
    elapsed = time.perf_counter() - start
    gc.collect()
    return elapsed, before, rss_mb()


def measure(which: str, trials: int) -> None:
    """One measurement in this (fresh) process: prints `which seconds rss_before rss_after peak`."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if which == "scalegrid":
            scalegrid_run(16, tmp)  # warm-up: imports, Tune's first experiment
            seconds, before, after, peak = scalegrid_run(trials, tmp)
        else:
            bare_tune(4, tmp)  # the same warm-up
            seconds, before, after = bare_tune(trials, tmp)
            peak = after
    print(f"RESULT {which} {seconds} {before} {after} {peak}")
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--bare-trials", type=int, default=60)
    parser.add_argument("--measure", choices=["scalegrid", "bare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure, args.trials if args.measure == "scalegrid" else args.bare_trials)

    import subprocess

    figures = {}
    for which in ("scalegrid", "bare"):  # each in its own process: one's freed memory is not the other's growth
        out = subprocess.run(
            [sys.executable, __file__, "--measure", which, "--trials", str(args.trials), "--bare-trials", str(args.bare_trials)],
            capture_output=True, text=True, check=True,
        ).stdout
        line = next(l for l in out.splitlines() if l.startswith("RESULT "))
        figures[which] = [float(v) for v in line.split()[2:]]
    n, m = args.trials, args.bare_trials
    ours_s, before, after, peak = figures["scalegrid"]
    bare_s, bare_before, bare_after, _ = figures["bare"]
    print(f"{n} linreg trials (scalegrid) / {m} (bare Tune), embedded Ray, 2 CPUs, each after a warm-up run:")
    print(f"  scalegrid run    {ours_s:7.1f} s  {n / ours_s:7.2f} trials/s  driver RSS {before:.0f} -> {after:.0f} MB "
          f"(growth {after - before:+.1f} MB, peak {peak - before:+.1f} MB)")
    per_trial = (bare_after - bare_before) / m
    print(f"  bare Tuner.fit() {bare_s:7.1f} s  {m / bare_s:7.2f} trials/s  driver RSS {bare_before:.0f} -> {bare_after:.0f} MB "
          f"({per_trial * 1000:+.0f} kB/trial: {per_trial * n:+.0f} MB at {n} trials if linear)")
    print(f"  throughput ratio scalegrid / bare: {(n / ours_s) / (m / bare_s):.1f}x")


if __name__ == "__main__":
    main()

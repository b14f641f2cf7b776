"""The multi-epoch testbed whole: `scalegrid run sweeps/linreg-reuse.yaml`, then `scalegrid fit reuse`.

Prints the sweep's wall time and trials/s, the fit's wall time, the E(K, N) table at powers of two,
K*(N) per eps with both laws and R* per N, and the load average (the machine is shared: wall
times under load are upper bounds). `--kernel` times the vectorised linreg kernel instead: one
grid point's 13 lrs, blocked as shipped vs one SGD step at a time, in microseconds per step.

    python benchmarks/bench_reuse.py [--results DIR] [--largest 16384]
    python benchmarks/bench_reuse.py --kernel [--samples 4096] [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "sweeps" / "linreg-reuse.yaml"


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def scalegrid(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "scalegrid.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    if done.returncode:
        sys.exit(f"scalegrid {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, done.stdout


def sweep(results: Path, largest: int) -> None:
    spec = yaml.safe_load(SWEEP.read_text())
    spec["include"] = [p for p in spec["include"] if p["unique_tokens"] <= largest]
    spec["results"] = str(results)
    path = results.parent / "linreg-reuse.yaml"
    path.write_text(yaml.safe_dump(spec))
    trials = len(spec["lr"]) * len(spec["seed"]) * (1 + len(spec["include"]))
    print(f"load average before: {load()}")
    run_s, _ = scalegrid("run", str(path), "--no-report")
    print(f"scalegrid run: {trials} trials in {run_s:.1f} s = {trials / run_s:.2f} trials/s (load after: {load()})")
    fit_s, out = scalegrid("fit", "reuse", str(results), "--json")
    print(f"scalegrid fit reuse --json (1,000 bootstrap resamples over seeds): {fit_s:.1f} s")
    text_s, text = scalegrid("fit", "reuse", str(results), "--bootstrap", "1000")
    print(text)
    doc = json.loads(out)
    print(json.dumps({"fits": [{k: f[k] for k in ("eps", "law", "params", "ci")} for f in doc["fits"]]}, indent=None)[:4000])


def kernel(samples: int, epochs: int) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "trainers"))
    from test_linreg_trainer import TESTBED, make_trial

    from scalegrid.trainers import linreg

    trials = [make_trial(dims=2048, n=samples, epochs=epochs, lr=2.0 ** (-j / 2), data=TESTBED, batch_size=1,
                         schedule="constant", warmup_fraction=0.0) for j in range(1, 14)]
    shipped = linreg.ROWS_PER_BLOCK
    for rows in (shipped, 1):
        linreg.ROWS_PER_BLOCK = rows
        start, cpu = time.perf_counter(), time.process_time()
        linreg.train_many(trials)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        steps = samples * epochs
        print(f"{'blocked, ' + str(rows) + ' rows' if rows > 1 else 'one step at a time'}: 13 lrs, d = 2048, N = {samples}, "
              f"K = {epochs}: {wall:.2f} s wall, {cpu:.2f} s CPU = {1e6 * wall / steps:.1f} us per step "
              f"(data and per-epoch evaluation included); load {load()}")
    linreg.ROWS_PER_BLOCK = shipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="results directory (default: a temporary one)")
    parser.add_argument("--largest", type=int, default=16384, help="leave out larger N (default: none)")
    parser.add_argument("--kernel", action="store_true", help="time the kernel instead of the sweep")
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as in a Ray worker of one CPU
    if args.kernel:
        kernel(args.samples, args.epochs)
        return
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        sweep(args.results, args.largest)
        return
    with tempfile.TemporaryDirectory() as tmp:
        sweep(Path(tmp) / "results", args.largest)


if __name__ == "__main__":
    main()

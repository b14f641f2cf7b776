"""Peak memory and time of `scalegrid fit chinchilla` on synthetic tables of growing size.

    python benchmarks/bench_fit_memory.py              # 1,000 / 5,000 / 10,000 rows, 200 bootstrap resamples
    python benchmarks/bench_fit_memory.py 20000 --bootstrap 1000

Each size runs in a fresh process (`/usr/bin/time -v`-style peak RSS read from resource.getrusage of
the child); the table is a Chinchilla law with noise. Before the fit was chunked
(`least_squares.MAX_ELEMENTS`), 5,000 rows took 2.1 GB and 20,000 a MemoryError.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def table(n_rows: int, path: Path) -> None:
    rng = np.random.default_rng(0)
    n = rng.choice([1e6, 3e6, 1e7, 3e7, 1e8], size=n_rows)
    d = rng.choice([1e8, 3e8, 1e9, 3e9], size=n_rows)
    loss = 1.8 + 400 * n**-0.34 + 410 * d**-0.28 + rng.normal(0, 0.005, size=n_rows)
    pd.DataFrame({"params": n, "tokens": d, "val_loss": loss}).to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="*", type=int, default=[1000, 5000, 10000])
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args()
    print(f"{'rows':>8} {'bootstrap':>9} {'wall s':>8} {'peak RSS MB':>12}  exit")
    with tempfile.TemporaryDirectory() as tmp:
        for n_rows in args.rows:
            path = Path(tmp) / f"t{n_rows}.csv"
            table(n_rows, path)
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "scalegrid.cli", "fit", "chinchilla", str(path), "--tokens", "tokens",
                 "--bootstrap", str(args.bootstrap), "--max-rows", str(max(n_rows, 1))],
                capture_output=True, text=True,
            )
            wall = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far, in KiB
            shown = f"{peak / 1024:.0f}" if peak > before else f"<= {before / 1024:.0f}"
            print(f"{n_rows:>8,} {args.bootstrap:>9} {wall:>8.1f} {shown:>12}  {done.returncode}"
                  + ("" if done.returncode == 0 else f"  {done.stderr.strip().splitlines()[-1][:120]}"))


if __name__ == "__main__":
    main()

"""How fast the scaling-law fits are, against a naive SciPy loop over the same starts.

    python benchmarks/bench_fit.py              # about half a minute
    python benchmarks/bench_fit.py --coverage   # + Chinchilla interval coverage, 100 repeats

Figures printed:
- the 4,500-start Chinchilla fit on Besiroglu et al.'s 240 points (target: < 5 s on 2 cores),
  its parameters against the published ones;
- a naive loop, `scipy.optimize.minimize(method="L-BFGS-B")` once per start with finite-difference
  gradients (and, for reference, with the analytic gradient), timed on an evenly spaced subset of
  the starts and extrapolated to 4,500;
- 1,000 bootstrap refits of a power law (target: < 5 s), of Chinchilla and of the data-constrained
  law;
- with --coverage: how often Chinchilla's 95% intervals cover the truth on synthetic data.

BLAS is pinned to one thread (set OPENBLAS_NUM_THREADS yourself to override): SciPy's L-BFGS-B
calls BLAS on tiny matrices, and a multi-threaded BLAS on a busy machine makes the naive loop
look far slower than it is. The batched fit is single-threaded numpy either way.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from scalegrid.analysis import (  # noqa: E402
    chinchilla_loss,
    drop_highest,
    fit_chinchilla,
    fit_data_constrained,
    fit_power_law,
    power_law,
)
from scalegrid.analysis.chinchilla import chinchilla_model, hoffmann_starts  # noqa: E402
from scalegrid.analysis.least_squares import Objective  # noqa: E402

ANCHORS = Path(__file__).resolve().parents[1] / ".." / "shared" / "anchors"
PUBLISHED = {"A": 482.01, "B": 2085.43, "E": 1.8169, "alpha": 0.3478, "beta": 0.3658}
GRID_FIT = {"A": 477.8, "B": 2143.9, "E": 1.817, "alpha": 0.3473, "beta": 0.3672}


def timed(fn, repeats: int = 3) -> tuple[str, object]:
    """"<wall> s wall, <cpu> s CPU" (medians over `repeats` runs) and the last result. On a busy
    machine the CPU time says what the fit itself costs."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return f"{statistics.median(walls):.2f} s wall, {statistics.median(cpus):.2f} s CPU", result


def chinchilla_points() -> pd.DataFrame:
    df = drop_highest(pd.read_csv(ANCHORS / "chinchilla" / "svg_extracted_data.csv"), "loss", 5)
    return df.rename(columns={"Model Size": "params", "loss": "val_loss"}).assign(
        tokens=lambda f: f["Training FLOP"] / (6 * f["params"])
    )


def bench_chinchilla(df: pd.DataFrame) -> None:
    seconds, res = timed(lambda: fit_chinchilla(df, bootstrap=0))
    print(f"Chinchilla, 4,500 starts, 240 points: {seconds} (median of 3)")
    print(f"  {'':6} {'fitted':>10} {'grid fit':>10} {'published':>10}")
    for name, value in res.params.items():
        print(f"  {name:6} {value:10.4f} {GRID_FIT[name]:10.4f} {PUBLISHED[name]:10.4f}")
    print(f"  objective {res.objective:.10f}, converged {res.converged}")

    seconds, res = timed(lambda: fit_chinchilla(df, bootstrap=1000, seed=0), repeats=1)
    print(f"Chinchilla + 1,000 bootstrap refits: {seconds}; 95% intervals:")
    for name, (lo, hi) in res.ci.items():
        print(f"  {name:6} [{lo:.4f}, {hi:.4f}]  bootstrap SE {np.nanstd(res.sample(name)):.4f}")


def bench_naive_loop(df: pd.DataFrame, every: int) -> None:
    """SciPy L-BFGS-B per start, on every `every`-th start of Hoffmann's grid."""
    model = chinchilla_model(df["params"].to_numpy(), df["tokens"].to_numpy())
    fun = Objective().batch_fun(model, df["val_loss"].to_numpy())
    row = np.zeros(1, dtype=int)
    starts = hoffmann_starts(model)[::every]

    def value(x: np.ndarray) -> float:
        return float(fun(x[None, :], row)[0][0])

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = fun(x[None, :], row)
        return float(f[0]), g[0].copy()

    for label, kwargs in (("finite-difference gradient", {"fun": value}),
                          ("analytic gradient", {"fun": value_and_grad, "jac": True})):
        wall, cpu = time.perf_counter(), time.process_time()
        best = min(minimize(x0=x0, method="L-BFGS-B", **kwargs).fun for x0 in starts)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        scale = 4500 / len(starts)
        print(f"Naive SciPy loop, {label}: {wall:.2f} s wall for {len(starts)} starts "
              f"-> {wall * scale:.0f} s wall, {cpu * scale:.0f} s CPU for 4,500 "
              f"(best objective {best:.10f})")


def bench_power_law_bootstrap() -> None:
    rng = np.random.default_rng(0)
    x = np.geomspace(1e6, 1e9, 20)
    df = pd.DataFrame({"x": x, "y": power_law(x, 400.0, 0.3, 1.8) * np.exp(rng.normal(0, 0.003, 20))})
    fit_power_law(df, "x", "y", bootstrap=10)  # warm-up: first calls pay for imports
    seconds, res = timed(lambda: fit_power_law(df, "x", "y", bootstrap=1000, seed=0))
    print(f"Power law, 20 points, fit + 1,000 bootstrap refits: {seconds} "
          f"({res.n_bootstrap_failed} failed)")


def bench_data_constrained() -> None:
    df = pd.read_csv(ANCHORS / "datablations" / "parametric_fit_runs_outliers_removed_182.csv")
    seconds, res = timed(lambda: fit_data_constrained(df, bootstrap=1000, seed=0), repeats=1)
    ci = {k: f"[{lo:.3g}, {hi:.3g}]" for k, (lo, hi) in res.ci.items()}
    print(f"Data-constrained (182 runs, frozen base law) + 1,000 bootstrap refits: {seconds}")
    print(f"  R*_D {res.params['R_star_D']:.4f} (published 15.3878) 95% {ci['R_star_D']}")
    print(f"  R*_N {res.params['R_star_N']:.4f} (published 5.3097) 95% {ci['R_star_N']}")


def bench_chinchilla_coverage(repeats: int = 100) -> None:
    truth = {"A": 400.0, "B": 2000.0, "E": 1.7, "alpha": 0.34, "beta": 0.28}
    n, d = np.geomspace(7e7, 1.6e10, 8), np.geomspace(5e9, 5e11, 8)
    nn, dd = (a.ravel() for a in np.meshgrid(n, d))
    model = chinchilla_model(nn, dd)
    starts = hoffmann_starts(model)[::150]  # 30 starts: the truth is easy to find here
    covered = dict.fromkeys(truth, 0)
    start = time.perf_counter()
    for seed in range(repeats):
        rng = np.random.default_rng(seed)
        y = chinchilla_loss(nn, dd, **truth) * np.exp(rng.normal(0.0, 0.003, nn.size))
        res = fit_chinchilla(pd.DataFrame({"params": nn, "tokens": dd, "val_loss": y}),
                             bootstrap=200, seed=seed, starts=starts)
        for name, value in truth.items():
            lo, hi = res.ci[name]
            covered[name] += lo <= value <= hi
    print(f"Chinchilla 95% interval coverage, {repeats} synthetic repeats (64 points, 0.3% noise, "
          f"200 resamples): {covered} in {time.perf_counter() - start:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-every", type=int, default=50,
                        help="time the naive loop on every k-th start (default: 50, i.e. 90 starts)")
    parser.add_argument("--coverage", action="store_true", help="also measure Chinchilla coverage")
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.2f}, "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}\n")
    df = chinchilla_points()
    bench_chinchilla(df)
    bench_naive_loop(df, args.naive_every)
    bench_power_law_bootstrap()
    bench_data_constrained()
    if args.coverage:
        bench_chinchilla_coverage()


if __name__ == "__main__":
    main()

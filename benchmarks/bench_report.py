"""Benchmark: a results directory of ~5,000 runs rows -> the full report, in under 30 s.

    python benchmarks/bench_report.py [--rows-dir DIR] [--bootstrap 1000] [--keep]

Writes a synthetic paper grid through the real store (5 sizes x 5 token budgets x 5 epoch
counts x 5 weight decays x 4 learning rates x 2 seeds = 5,000 training runs, plus ensembles of
2-5 members per (size, budget), distilled students and 20 learning curves), then times
`write_report` on it, cold (a fresh process: imports, Parquet reads, every fit with its
bootstrap, every figure as PNG and SVG, HTML, Markdown, fits.json). Exits 1 above the target.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 30.0


def make_results(path: Path) -> int:
    sys.path.insert(0, str(ROOT / "tests" / "report"))
    from synthetic_results import write_paper_grid

    written = write_paper_grid(
        path,
        sizes=(150e6, 300e6, 600e6, 1.4e9, 3e9),
        budgets=(200e6, 400e6, 800e6, 1.6e9, 3.2e9),
        epochs=(1, 2, 4, 8, 16),
        weight_decays=(0.1, 0.2, 0.4, 0.8, 1.6),
        lrs=(1e-3, 3e-3, 6e-3, 1e-2),
        seeds=(0, 1),
        members=(2, 3, 4, 5),
        n_failed=10,
        curves=20,
    )
    return written.n_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-dir", type=Path, help="reuse (or create) the synthetic results here")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--workers", type=int, help="worker processes for the fits (default: one per CPU beyond the first; 0: none)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary results and report")
    args = parser.parse_args()

    tmp = None
    if args.rows_dir is None:
        tmp = tempfile.mkdtemp(prefix="scalegrid-bench-report-")
        results = Path(tmp) / "results"
    else:
        results = args.rows_dir
    if not (results / "runs").is_dir():
        start = time.perf_counter()
        n = make_results(results)
        print(f"wrote {n:,} runs rows in {time.perf_counter() - start:.1f} s (not timed)", file=sys.stderr)
    n_rows = len(list((results / "runs").glob("*.parquet")))

    # a fresh interpreter, so the time includes imports (what `scalegrid report` pays)
    code = (
        "import sys, time; t = time.perf_counter(); "
        "from scalegrid.report import write_report; "
        f"p = write_report(sys.argv[1], bootstrap={args.bootstrap}, workers={args.workers!r}); "
        "print(p); print(f'{time.perf_counter() - t:.2f}')"
    )
    import os
    import resource

    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, str(results)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if out.returncode != 0:
        print(out.stdout + out.stderr, file=sys.stderr)
        return 2
    index, inner = out.stdout.split()[-2:]
    verdict = "ok" if wall < TARGET_S else "OVER TARGET"
    print(f"report of {n_rows:,} runs rows: {wall:.1f} s wall ({float(inner):.1f} s inside write_report), "
          f"{cpu:.1f} s CPU, bootstrap {args.bootstrap}, {len(os.sched_getaffinity(0))} CPUs, "
          f"load average {load:.1f} before; target {TARGET_S:.0f} s: {verdict}")
    print(f"index: {index}")
    if tmp and not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if wall < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())

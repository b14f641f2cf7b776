"""Time from `scalegrid submit` to the first trial running, on a Ray head on 127.0.0.1.

Starts a real head (`ray start --head --block`, its own temp dir and ports, stopped by its process
group), writes a small linreg project, and for each repeat submits it (fresh results each time)
and follows the job's log: when `submit` returned with the job id, when the job's driver started
(`Running entrypoint`), when it had planned the sweep (`N to run`), when the first Tune trial was
running (the first progress line with `1 running`) and when the job ended. The same sweep through
`scalegrid run` on an embedded Ray is the baseline for the first-trial time.

    python benchmarks/bench_submit.py [--repeats 3] [--trials 8]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback head the tests use
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

RUNNING = re.compile(r"\] \d+/\d+ done, [1-9]\d* running")


def write_project(root: Path, trials: int) -> None:
    (root / "sweeps").mkdir(parents=True)
    spec = {
        "name": "bench", "trainer": "linreg", "model": {"dims": 64},
        "data": {"source": "gaussian", "unique_tokens": [256]}, "epochs": [2], "lr": 0.05,
        "seed": list(range(trials)), "train": {"batch_size": 8}, "results": "results/bench",
    }  # fmt: skip
    (root / "sweeps" / "bench.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


def one_submit(head, project: Path) -> dict[str, float]:
    from scalegrid.orchestrator.execution.ray_jobs import job_client

    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "scalegrid.cli", "submit", "sweeps/bench.yaml", "--address", head.dashboard, "--no-report"],
        cwd=project, env=cli_env(), capture_output=True, text=True, check=True,
    )
    marks = {"submit returned": time.perf_counter() - start}
    job_id = out.stdout.strip()
    client = job_client(head.dashboard)
    while True:
        logs = client.get_job_logs(job_id)
        now = time.perf_counter() - start
        if "Running entrypoint" in logs:
            marks.setdefault("driver started", now)
        if " to run" in logs:
            marks.setdefault("sweep planned", now)
        if RUNNING.search(logs):
            marks.setdefault("first trial running", now)
        status = str(client.get_job_status(job_id))
        if any(s in status for s in ("SUCCEEDED", "FAILED", "STOPPED")):
            marks["job finished"] = now
            if "SUCCEEDED" not in status:
                raise RuntimeError(f"job {job_id} {status}:\n{logs[-3000:]}")
            return marks
        time.sleep(0.1)


def one_local_run(project: Path) -> float:
    """`scalegrid run` on an embedded Ray: seconds until the first trial runs."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scalegrid.cli", "run", "sweeps/bench.yaml", "--no-report", "--results", "results/local"],
        cwd=project, env={**cli_env(), "PYTHONUNBUFFERED": "1"}, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    first = None
    for line in proc.stderr:
        if first is None and RUNNING.search(line):
            first = time.perf_counter() - start
    proc.wait()
    return first if first is not None else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()

    from ray_head import RayHead

    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
        project = Path(tmp)
        write_project(project, args.trials)
        local = one_local_run(project)
        t = time.perf_counter()
        with RayHead(num_cpus=2) as head:
            print(f"ray head up in {time.perf_counter() - t:.1f} s ({head.dashboard}); {args.trials} linreg trials per job")
            rows = []
            for i in range(args.repeats):
                subprocess.run(["rm", "-rf", str(project / "results" / "bench")], check=True)
                marks = one_submit(head, project)
                rows.append(marks)
                print(f"  job {i + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in marks.items()))
        print("\nseconds after `scalegrid submit` started (median of", args.repeats, "jobs):")
        for key in rows[0]:
            print(f"  {key:<22} {statistics.median(r[key] for r in rows):6.1f}")
        print(f"  {'baseline: scalegrid run (embedded Ray) to first trial':<22} {local:6.1f}")


if __name__ == "__main__":
    main()

"""A Ray Train worker killed mid-trial: the trial resumes from its checkpoint and ends where an
uninterrupted run ends.

Trains one tiny lm trial in one process (the reference), then the same trial on 2 Train workers
(`scalegrid run` in a subprocess, its own embedded Ray), and SIGKILLs one of that subprocess's
RayTrainWorker processes (found among its descendants only) once the first checkpoint exists.
Ray Train restarts the worker group (`fault_tolerance.max_failures`), the loop resumes from the
checkpoint, and the run row's val_loss is compared with the reference's. Prints the figures.

    python benchmarks/bench_worker_fault.py [--parallelism ddp|fsdp]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def spec(results: Path, resources: dict, parallelism: str) -> dict:
    return {
        "name": "worker-fault", "trainer": "lm", "model": "llama-50k",
        "data": {"source": "synthetic", "synthetic": {"documents": 2000, "entities": 40, "seed": 1},
                 "unique_tokens": 256 * 32, "validation": {"fraction": 0.1, "max_tokens": 1024}},
        "epochs": 4, "lr": 3e-3, "train": {"batch_size": 4, "seq_len": 32, "eval_every": 64, "parallelism": parallelism},
        "resources": resources, "keep_weights": False, "results": str(results),
        "fault_tolerance": {"checkpoint_every": 32, "max_failures": 2},
    }


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc: Linux)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def train_workers(pid: int) -> list[int]:
    """The RayTrainWorker processes among `pid`'s descendants (never anyone else's)."""
    out = []
    for child in descendants(pid):
        try:
            if "RayTrainWorker" in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace"):
                out.append(child)
        except OSError:
            continue
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parallelism", default="ddp", choices=["ddp", "fsdp"])
    args = parser.parse_args()
    from scalegrid import load_runs

    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, resources in (("one", {"cpus": 1}), ("two", {"workers": 2, "cpus_per_worker": 0.9})):
            files[name] = Path(tmp) / f"{name}.yaml"
            files[name].write_text(yaml.safe_dump(spec(Path(tmp) / name, resources, args.parallelism)))
        cli = [sys.executable, "-m", "scalegrid.cli", "run"]
        subprocess.run([*cli, str(files["one"]), "--no-report"], check=True, capture_output=True)
        reference = load_runs(Path(tmp) / "one").iloc[0]
        start = time.perf_counter()
        proc = subprocess.Popen([*cli, str(files["two"]), "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        checkpoints = Path(tmp) / "two" / "checkpoints" / reference["trial_id"]
        killed, before, after = None, set(), set()
        while proc.poll() is None:
            workers = train_workers(proc.pid)
            if killed is None and workers and checkpoints.is_dir() and any(checkpoints.glob("step-*/.metadata")):
                before, killed = set(workers), workers[-1]
                os.kill(killed, signal.SIGKILL)
                print(f"killed RayTrainWorker pid {killed} after {sorted(p.parent.name for p in checkpoints.glob('step-*/.metadata'))} "
                      f"({time.perf_counter() - start:.1f} s into the run)")
            elif killed is not None:
                after |= set(workers) - before  # the restarted worker group's processes
            time.sleep(0.05)
        out = proc.communicate()[0]
        if proc.returncode != 0 or killed is None:
            print(out[-4000:])
            sys.exit(f"run exit {proc.returncode}; killed: {killed}")
        row = load_runs(Path(tmp) / "two").iloc[0]
        print(f"reference (one process): val_loss {reference['val_loss']:.6f}")
        print(f"2 workers, one killed: {row['status']}, val_loss {row['val_loss']:.6f}, world_size {row['world_size']}, "
              f"wall_s {row['wall_s']:.1f}; |difference| {abs(row['val_loss'] - reference['val_loss']):.2e}; load {os.getloadavg()[0]:.1f}")
        print(f"RayTrainWorker processes started after the kill (the restarted group): {len(after)}")


if __name__ == "__main__":
    main()

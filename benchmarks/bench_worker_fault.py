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

import psutil
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


def train_workers(proc: psutil.Process) -> list[psutil.Process]:
    out = []
    for child in proc.children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(child.cmdline()):
                out.append(child)
        except psutil.Error:
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
        killed = None
        while proc.poll() is None and killed is None:
            if checkpoints.is_dir() and any(checkpoints.glob("step-*.pt")):
                workers = train_workers(psutil.Process(proc.pid))
                if workers:
                    killed = workers[-1]
                    killed.send_signal(signal.SIGKILL)
                    print(f"killed RayTrainWorker pid {killed.pid} after {sorted(p.name for p in checkpoints.glob('step-*.pt'))} "
                          f"({time.perf_counter() - start:.1f} s into the run)")
            time.sleep(0.05)
        out = proc.communicate()[0]
        if proc.returncode != 0 or killed is None:
            print(out[-4000:])
            sys.exit(f"run exit {proc.returncode}; killed: {killed}")
        row = load_runs(Path(tmp) / "two").iloc[0]
        print(f"reference (one process): val_loss {reference['val_loss']:.6f}")
        print(f"2 workers, one killed: {row['status']}, val_loss {row['val_loss']:.6f}, world_size {row['world_size']}, "
              f"wall_s {row['wall_s']:.1f}; |difference| {abs(row['val_loss'] - reference['val_loss']):.2e}; load {os.getloadavg()[0]:.1f}")
        print("restarts seen in the run's output:", out.count("Attempting to start training worker group"))


if __name__ == "__main__":
    main()

"""Faults through `scalegrid run` on a real local Ray: retries, corrupt results, two drivers, kill -9.

Every fault is real: a truncated Parquet file, a checkpoint that does not fit the trainer, a second
driver process racing for the same grid, SIGKILL of a driver's whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from sweep_fixtures import LINREG, TINY_LM
from scalegrid import load_runs
from scalegrid.cli import main
from scalegrid.orchestrator import leases
from scalegrid.orchestrator.planning.sweep_plan import make_plan
from scalegrid.storage import layout


def run_files(results: Path) -> dict[str, int]:
    return {p.stem: p.stat().st_mtime_ns for p in (results / "runs").glob("*.parquet")}


def starts(results: Path, trial_id: str) -> list[dict]:
    return leases.history(layout(results), trial_id)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "scalegrid.cli", *args]


def test_corrupt_run_file_is_reported_kept_and_its_trial_rerun(ray_local, write_spec, tmp_path, capsys):
    results = tmp_path / "results"
    spec = write_spec(LINREG)
    assert main(["run", str(spec), "--no-report"]) == 0
    victim = sorted(run_files(results))[0]
    path = results / "runs" / f"{victim}.parquet"
    path.write_bytes(path.read_bytes()[:40])  # truncated mid-file
    capsys.readouterr()

    assert main(["run", str(spec), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert f"{path} is damaged (not a Parquet file" in err and "set aside" in err and "1 to run" in err
    kept = list((results / "runs").glob(f"{victim}.parquet.corrupt-*"))
    assert len(kept) == 1 and kept[0].stat().st_size == 40  # renamed aside, never deleted
    runs = load_runs(results)
    assert len(runs) == 4 and set(runs["status"]) == {"COMPLETED"}  # counted once, from the new row
    assert len(starts(results, victim)) == 2
    assert all(len(starts(results, t)) == 1 for t in runs["trial_id"] if t != victim)


def plant_checkpoint_that_does_not_fit(trial) -> None:
    """A readable checkpoint of the trial's model at step 4 whose loop state does not fit the
    trainer (a loss window of another length): it loads, then every attempt raises applying it."""
    import torch

    from scalegrid.trainers.dcp_checkpoint import Checkpointer
    from scalegrid.trainers.lm_run import build_optimizer
    from scalegrid.trainers.model import build_model
    from scalegrid.trainers.parallelize import TrainingStep, shard_state_dicts

    c, cpu = trial.config, torch.device("cpu")
    step = TrainingStep(build_model(c.model, 257, c.train.seq_len, seed=0))
    optimizer = build_optimizer(step.model, c.lr, c.weight_decay, c.train, cpu)
    window = {"losses": torch.zeros(2, 2), "grad_norms": torch.zeros(2, 2), "count": 0, "first_step": 1}
    with Checkpointer(trial.checkpoint_dir, keep=1) as checkpoints:
        checkpoints.save(4, shard_state_dicts(step, optimizer), {"losses": window})


def test_a_trial_out_of_retries_is_a_failed_row_and_the_rest_finish(ray_local, write_spec, tmp_path, capsys):
    results = tmp_path / "results"
    spec = write_spec({**TINY_LM, "seed": [0, 1], "fault_tolerance": {"checkpoint_every": 4, "max_failures": 1}})
    broken, fine = make_plan(spec).trials
    plant_checkpoint_that_does_not_fit(broken)
    broken, fine = broken.trial_id, fine.trial_id

    assert main(["run", str(spec), "--no-report"]) == 1  # exits non-zero after finishing the other trial
    runs = load_runs(results).set_index("trial_id")
    assert runs.loc[fine, "status"] == "COMPLETED"
    assert runs.loc[broken, "status"] == "FAILED" and "must match the size" in runs.loc[broken, "error"]
    tries = starts(results, broken)
    assert [h["attempt"] for h in tries] == [1, 2] and len({h["owner"] for h in tries}) == 1  # retried once by Tune
    assert "FAILED" in capsys.readouterr().err


def test_two_drivers_on_one_grid_train_every_trial_once(write_spec, tmp_path):
    results = tmp_path / "results"
    spec = write_spec({**TINY_LM, "seed": list(range(6)), "train": {**TINY_LM["train"], "batch_size": 4}})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(cli("run", str(spec), "--no-report"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(2)
    ]
    try:
        outs = [p.communicate(timeout=400)[0].decode() for p in procs]
    finally:
        for p in procs:
            with_group(p.pid, signal.SIGKILL)
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    runs = load_runs(results)
    assert len(runs) == 6 and set(runs["status"]) == {"COMPLETED"}
    histories = {t: starts(results, t) for t in runs["trial_id"]}
    assert all(len(h) == 1 for h in histories.values()), histories  # trained exactly once between them
    owners = {h[0]["owner"] for h in histories.values()}
    print(f"trials per driver: {[sum(h[0]['owner'] == o for h in histories.values()) for o in owners]}")


def test_driver_killed_mid_sweep_then_rerun_loses_nothing_and_trains_nothing_twice(ray_local, write_spec, tmp_path):
    results = tmp_path / "results"
    spec = write_spec({
        **TINY_LM, "seed": [0, 1, 2], "epochs": 3, "train": {**TINY_LM["train"], "batch_size": 4, "eval_every": 32},
        "fault_tolerance": {"checkpoint_every": 8, "lease_expiry_s": 3},
    })
    proc = subprocess.Popen(
        cli("run", str(spec), "--max-concurrent", "1", "--no-report"),
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 300
    interrupted = None
    while time.monotonic() < deadline and proc.poll() is None and interrupted is None:
        done = run_files(results)
        if done:
            ckpts = [p.parent.parent.name for p in (results / "checkpoints").glob("*/step-*/.metadata") if p.parent.parent.name not in done]
            interrupted = ckpts[0] if ckpts else None
        time.sleep(0.05)
    members = group_members(proc.pid)  # the driver, its embedded Ray and its workers
    proc.kill()  # SIGKILL of the driver alone: no `finally` runs in it
    out = proc.communicate(timeout=60)[0].decode()
    assert interrupted is not None, out[-3000:]
    deadline = time.monotonic() + 30  # its reaper (`ray_reaper.py`) stops what the driver started
    while time.monotonic() < deadline and any(alive(m) for m in members):
        time.sleep(0.2)
    assert not [pid for pid in members if alive(pid)], out[-2000:]  # no Ray process of the dead driver is left
    finished = run_files(results)
    assert 1 <= len(finished) < 3 and interrupted not in finished

    assert main(["run", str(spec), "--no-report"]) == 0  # takes the dead driver's lease over once it expires
    after = run_files(results)
    assert len(after) == 3 and all(after[t] == mtime for t, mtime in finished.items())  # nothing trained twice
    assert set(load_runs(results)["status"]) == {"COMPLETED"}
    resumed = starts(results, interrupted)
    assert len(resumed) == 2 and resumed[0]["owner"] != resumed[1]["owner"]
    assert resumed[1]["resumed_from_step"] >= 8  # lost at most one checkpoint interval, not the trial
    assert all(len(starts(results, t)) == 1 for t in after if t != interrupted)


def group_members(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def with_group(pid: int, sig: int) -> list[int]:
    """Signal a process group; returns its members as they were (to check that they are gone)."""
    members = group_members(pid)
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(m) for m in members):
        time.sleep(0.1)
    return members

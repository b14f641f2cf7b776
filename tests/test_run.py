"""`scalegrid run` end to end on a real local Ray: run, re-run, extend, interrupt, diverge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from sweep_fixtures import LINREG, TINY_LM
from scalegrid import load_curves, load_runs
from scalegrid.cli import main

DESIGN_COLUMNS = (
    "trial_id sweep stage status trainer model params params_nonembed unique_tokens epochs tokens_seen lr "
    "weight_decay seed members val_loss best_val_loss train_loss flops wall_s error finished_at"
).split()


def run_files(results: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (results / "runs").glob("*.parquet")}


def test_sweep_rerun_and_extension(ray_local, write_spec, tmp_path, capsys):
    results = tmp_path / "results"
    spec = write_spec(LINREG)
    assert main(["run", str(spec)]) == 0
    assert (results / "report" / "index.html").is_file()  # the run ends with its report
    runs = load_runs(results)
    assert len(runs) == 4 and set(runs["status"]) == {"COMPLETED"}
    assert set(DESIGN_COLUMNS) <= set(runs.columns)
    assert (runs["tokens_seen"] == runs["unique_tokens"] * runs["epochs"]).all()
    assert runs["val_loss"].notna().all() and (runs["params"] == 64).all()
    assert "4 to run" in capsys.readouterr().err
    first = run_files(results)

    # A finished spec re-run schedules nothing and touches no result.
    start = time.monotonic()
    assert main(["run", str(spec), "--no-report"]) == 0
    assert time.monotonic() - start < 10
    assert "0 to run" in capsys.readouterr().err
    assert run_files(results) == first

    # A new value on an axis trains only the new points.
    assert main(["run", str(write_spec({**LINREG, "epochs": [1, 2, 3]})), "--no-report"]) == 0
    assert "2 to run" in capsys.readouterr().err
    after = run_files(results)
    assert len(after) == 6 and all(after[name] == mtime for name, mtime in first.items())

    # Curves are one row per evaluation, and the store reads without scalegrid.
    curves = load_curves(results)
    assert set(curves["trial_id"]) == set(load_runs(results)["trial_id"])
    count = duckdb.sql(f"select count(*) from read_parquet('{results}/runs/*.parquet')").fetchall()[0][0]
    assert count == 6

    assert main(["status", str(results)]) == 0
    assert "6 trials (6 COMPLETED)" in capsys.readouterr().out


def test_plan_shows_status_without_ray(write_spec, tmp_path, capsys):
    spec = write_spec({**LINREG, "epochs": [1, 2, 3]})
    assert main(["plan", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "6 trials (6 pending)" in out and "trial_id" in out and "flops" in out


def test_lm_sweep_and_divergence(ray_local, write_spec, tmp_path):
    results = tmp_path / "results"
    spec = write_spec({**TINY_LM, "lr": [3e-3, 1e4]})
    assert main(["run", str(spec), "--no-report"]) == 0  # DIVERGED is an outcome, not a failure
    runs = load_runs(results).set_index("lr")
    assert runs.loc[3e-3, "status"] == "COMPLETED" and runs.loc[3e-3, "val_loss"] < 5.6  # below uniform over 257
    assert runs.loc[1e4, "status"] == "DIVERGED" and "non-finite" in runs.loc[1e4, "error"]
    assert runs.loc[3e-3, "params"] == runs.loc[3e-3, "params_nonembed"] + 2 * 32 * 257
    assert (results / "cache" / "tokens").is_dir()
    curves = load_curves(results)
    assert len(curves[curves["trial_id"] == runs.loc[3e-3, "trial_id"]]) >= 2


def test_interrupted_run_resumes_only_missing_trials(ray_local, write_spec, tmp_path):
    results = tmp_path / "results"
    spec = write_spec({**TINY_LM, "seed": [0, 1, 2, 3, 4, 5], "train": {**TINY_LM["train"], "batch_size": 4}})
    # Without the test suite's loopback setting: the command itself must keep its Ray on 127.0.0.1.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"} | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scalegrid.cli", "run", str(spec), "--max-concurrent", "1", "--no-report"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(run_files(results)) < 2 and proc.poll() is None:
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    out = proc.communicate(timeout=120)[0].decode()
    finished = run_files(results)
    assert 1 <= len(finished) < 6, out
    assert proc.returncode == 130, out  # Ctrl-C: the shell's code for SIGINT, with one line saying what to do
    assert "scalegrid: interrupted; re-run the same command" in out and "Traceback" not in out, out
    assert "embedded Ray on 127.0.0.1" in out, out

    assert main(["run", str(spec), "--no-report"]) == 0
    after = run_files(results)
    assert len(after) == 6
    assert all(after[name] == mtime for name, mtime in finished.items())  # nothing trained twice


def test_run_joins_a_cluster_by_address(ray_local, write_spec, tmp_path):
    """A second driver process joins the session's Ray by its GCS address and trains there."""
    address = ray_local.get_runtime_context().gcs_address
    spec = write_spec({**LINREG, "epochs": [3]})
    out = subprocess.run(
        [sys.executable, "-m", "scalegrid.cli", "run", str(spec), "--address", address, "--no-report"],
        capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = load_runs(tmp_path / "results")
    assert len(runs) == 2 and set(runs["status"]) == {"COMPLETED"}


def test_relative_results_path(ray_local, write_spec, tmp_path, monkeypatch):
    """`results: results/x` (as the shipped sweeps say) is relative to where `run` is started, not to
    the directory Ray Tune starts a trial in."""
    monkeypatch.chdir(tmp_path)
    spec = write_spec({**TINY_LM, "results": "relative/results"})
    assert main(["run", str(spec), "--no-report"]) == 0
    runs = load_runs(tmp_path / "relative" / "results")
    assert runs["status"].tolist() == ["COMPLETED"]

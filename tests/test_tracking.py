"""Tracking through Ray Tune's own callbacks, offline: W&B (offline mode), MLflow (a local file
store, read back through mlflow's client) and TensorBoard (event files) each hold one run per
trial, named by its trial_id, with its hyperparameters and its val_loss history."""

from __future__ import annotations

import math

import pytest

from sweep_fixtures import LINREG, TINY_LM
from tracking_files import tensorboard_hparams, tensorboard_scalars, wandb_runs
from scalegrid import load_curves, load_runs
from scalegrid.cli import main

TRACKED = {"wandb": {"project": "scalegrid-test", "mode": "offline"}, "mlflow": {}, "tensorboard": True}
HYPERPARAMETERS = ["unique_tokens", "epochs", "lr", "weight_decay", "seed", "member"]
METRICS = {"epoch", "tokens_seen", "train_loss", "val_loss", "lr", "wall_s"}  # an evaluation row; its step is the axis


def val_loss_histories(results) -> dict[str, list[float]]:
    curves = load_curves(results).sort_values("step")
    return {tid: list(rows["val_loss"]) for tid, rows in curves.groupby("trial_id")}


def test_wandb_mlflow_and_tensorboard_hold_one_run_per_trial(ray_local, write_spec, tmp_path, monkeypatch, capsys):
    """Each tracker's files read back: one run per trial named by its trial_id, its real
    hyperparameters (not Tune's `pack` / `trials`), every evaluation row at its optimizer step (not
    Tune's report counter), none of Tune's bookkeeping as metrics, TensorBoard's HParams with the
    final val_loss, and one Tune directory for the sweep however many times it runs."""
    results = tmp_path / "results"
    assert main(["run", str(write_spec({**LINREG, "tracking": TRACKED})), "--no-report"]) == 0
    assert "not packed" in capsys.readouterr().err  # one Tune trial, so one tracked run, per linreg trial
    spec = write_spec({**LINREG, "epochs": [1, 2, 3], "tracking": TRACKED})  # the sweep extended: a second invocation
    assert main(["run", str(spec), "--no-report"]) == 0
    runs = load_runs(results).set_index("trial_id")
    curves = load_curves(results).sort_values("step")
    rows = {tid: frame for tid, frame in curves.groupby("trial_id")}
    assert len(runs) == 6 and all(len(rows[tid]) == runs.loc[tid, "epochs"] for tid in runs.index)
    assert all(list(frame["step"]) != list(range(1, len(frame) + 1)) for frame in rows.values())  # steps, not report counts
    assert sorted(p.name for p in (results / "tune").iterdir() if p.is_dir()) == ["lin"]  # one directory per sweep

    tracked = {run.name: run for run in wandb_runs(results / "wandb")}
    assert sorted(tracked) == sorted(runs.index)
    for tid, run in tracked.items():
        assert run.group == "lin" and run.config["trial_id"] == tid and run.config["params"] == 64
        assert {k: run.config[k] for k in HYPERPARAMETERS} == {k: runs.loc[tid, k] for k in HYPERPARAMETERS}
        assert not set(run.config) & {"pack", "trials", "trial_log_path", "pid", "hostname", "date"}
        logged = [row for row in run.history if "val_loss" in row]
        assert [row["_step"] for row in logged] == list(rows[tid]["step"])
        assert [row["val_loss"] for row in logged] == list(rows[tid]["val_loss"])
        assert {k for row in logged for k in row if not k.startswith("_")} == METRICS

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file store only when asked to
    from mlflow import MlflowClient

    client = MlflowClient((results / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("lin")
    found = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(found) == sorted(runs.index)
    for tid, run in found.items():
        assert run.data.params["trial_id"] == tid and float(run.data.params["lr"]) == runs.loc[tid, "lr"]
        assert int(run.data.params["epochs"]) == runs.loc[tid, "epochs"] and not set(run.data.params) & {"pack", "trials"}
        assert set(run.data.metrics) == METRICS  # no pid, done, time_*, config/*
        logged = sorted(client.get_metric_history(run.info.run_id, "val_loss"), key=lambda m: m.step)
        assert [(m.step, m.value) for m in logged] == list(zip(rows[tid]["step"], rows[tid]["val_loss"]))

    for tid, frame in rows.items():
        (events,) = results.glob(f"tune/lin/{tid}/events.out.tfevents.*")
        scalars = tensorboard_scalars(events)
        assert set(scalars) == METRICS
        assert [step for step, _ in scalars["val_loss"]] == list(frame["step"])
        assert all(math.isclose(v, loss, rel_tol=1e-6) for (_, v), loss in zip(scalars["val_loss"], frame["val_loss"]))
        shown = tensorboard_hparams(events)  # the HParams tab: the real hyperparameters, the final val_loss
        assert shown.metrics == ["val_loss"] and shown.params["trial_id"] == tid and not set(shown.params) & {"pack", "trials"}
        assert {k: shown.params[k] for k in HYPERPARAMETERS} == {k: float(runs.loc[tid, k]) for k in HYPERPARAMETERS}
        assert shown.params["model"] == "dims=64" and math.isclose(scalars["val_loss"][-1][1], runs.loc[tid, "val_loss"], rel_tol=1e-6)


def test_a_tracked_search_logs_one_run_per_trained_trial(ray_local, write_spec, tmp_path, monkeypatch):
    """A search runs under the same launcher as a grid: its trackers see every trial it trains,
    one MLflow run each, with the trial's real hyperparameters and its val_loss history."""
    spec = {**LINREG, "lr": None, "epochs": None, "data": {"source": "gaussian", "unique_tokens": [128]},
            "search": {"axes": {"epochs": [1, 2, 4], "lr": [0.02, 0.05, 0.1]}, "start": {"epochs": 2, "lr": 0.05}},
            "tracking": {"mlflow": {}}}
    results = tmp_path / "results"
    assert main(["run", str(write_spec({k: v for k, v in spec.items() if v is not None})), "--no-report"]) == 0
    runs, histories = load_runs(results).set_index("trial_id"), val_loss_histories(results)
    assert len(runs) >= 5  # the start and its four neighbours at least

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow import MlflowClient

    client = MlflowClient((results / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("lin")
    found = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(found) == sorted(runs.index)  # one tracked run per trained trial, named by its trial_id
    for tid, run in found.items():
        assert run.data.params["trial_id"] == tid and run.data.params["model"] == "dims=64"
        assert float(run.data.params["lr"]) == runs.loc[tid, "lr"] and int(run.data.params["epochs"]) == runs.loc[tid, "epochs"]
        logged = sorted(client.get_metric_history(run.info.run_id, "val_loss"), key=lambda m: m.step)
        assert [m.value for m in logged] == histories[tid]


def test_untracked_runs_write_no_tracker_files(ray_local, write_spec, tmp_path):
    results = tmp_path / "results"
    assert main(["run", str(write_spec(TINY_LM)), "--no-report"]) == 0
    assert not (results / "wandb").exists() and not (results / "mlruns").exists()
    assert not list(results.glob("tune/*/*/events.out.tfevents.*"))  # Tune's own TensorBoard logger is off too
    assert [p.name for p in (results / "tune").iterdir() if p.is_dir()] == ["tiny"]  # the sweep's one directory
    (trial_dir,) = [p for p in results.glob("tune/*/*") if p.is_dir()]
    assert trial_dir.name == load_runs(results)["trial_id"].item()  # a Tune trial is named by its trial_id


@pytest.mark.parametrize("tracking, needle", [
    ({"wandb": {"projet": "x"}}, "tracking.wandb.projet: unknown key (did you mean 'project'?)"),
    ({"wandb": {"project": "x"}}, "tracking.wandb: no W&B credentials"),
    ({"mlflow": {"tracking_uri": "sqlite:///mlflow.db"}}, "needs MLflow's full package"),
    ({"tensorboard": "yes please"}, "tracking.tensorboard"),
])
def test_bad_tracking_is_one_line_before_anything_is_written(tracking, needle, write_spec, tmp_path, monkeypatch, capsys):
    from test_bad_input import assert_one_line_error
    from sweep_fixtures import tree_digest

    for name in ("WANDB_API_KEY", "WANDB_MODE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no `wandb login` netrc
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / "wandb"))
    results = tmp_path / "results"
    results.mkdir()
    (results / "keep.txt").write_text("precious")
    before = tree_digest(results)
    assert_one_line_error(capsys, main(["run", str(write_spec({**LINREG, "tracking": tracking}))]), needle)
    assert tree_digest(results) == before

"""The Python API: `scalegrid.plan` and `scalegrid.run` take a spec file or a dict, return
DataFrames, and raise `scalegrid.UserError` with the command line's one-line message."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import scalegrid
from sweep_fixtures import LINREG, TINY_LM, tree_digest
from scalegrid.api import SweepRows
from scalegrid import store
from scalegrid.cli import main


def test_run_a_dict_spec_from_python(ray_local, tmp_path):
    results = tmp_path / "results"
    assert set(scalegrid.plan(LINREG, results=results)["status"]) == {"pending"}
    rows = scalegrid.run(LINREG, results=results)
    assert len(rows) == 4 and set(rows["status"]) == {"COMPLETED"} and list(rows.columns) == list(store.RUN_COLUMNS)
    assert (rows["tokens_seen"] == rows["unique_tokens"] * rows["epochs"]).all() and rows["val_loss"].notna().all()
    assert set(scalegrid.plan(LINREG, results=results)["status"]) == {"done"}

    # Another sweep in the same results directory: each call returns its own sweep's rows.
    wider = {**LINREG, "name": "lin2", "epochs": [1, 2, 3]}
    again = scalegrid.run(wider, results=results)
    assert len(again) == 6 and set(again["trial_id"]) > set(rows["trial_id"])
    assert len(scalegrid.load_runs(results)) == 6


def test_bad_input_raises_user_error_with_the_cli_message(write_spec, tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "keep.txt").write_text("precious")
    before = tree_digest(results)
    bad = {**LINREG, "epoch": [1, 2], "results": str(results)}
    path = write_spec(bad)
    with pytest.raises(scalegrid.UserError) as raised:
        scalegrid.run(path)
    assert main(["run", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"scalegrid: error: {raised.value}"  # the same one line
    with pytest.raises(scalegrid.UserError, match=r"^spec: epoch: unknown key \(did you mean 'epochs'\?\)$"):
        scalegrid.run(bad)
    with pytest.raises(scalegrid.UserError, match=r"lr\[0\]: must be > 0"):
        scalegrid.plan({**LINREG, "lr": -1})
    assert tree_digest(results) == before


def test_importing_scalegrid_loads_no_torch_ray_or_pandas():
    code = "import sys, scalegrid; print(sorted(m for m in ('torch', 'ray', 'pandas', 'pyarrow') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_run_passes_your_tune_callbacks_and_offers_each_cells_best(ray_local, tmp_path):
    """A Ray Tune callback of your own sees every trial's hyperparameters and every evaluation row;
    the rows returned are a DataFrame with `.best()`: each (model, unique_tokens) cell's lowest loss."""
    from ray.tune import Callback

    class Seen(Callback):
        def __init__(self):
            self.rows, self.configs = [], {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "val_loss" in result:
                self.rows.append((trial.config["trial_id"], result["step"], result["val_loss"]))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.configs[trial.config["trial_id"]] = trial.config

    seen = Seen()
    rows = scalegrid.run({**TINY_LM, "lr": [3e-3, 1e-2]}, results=tmp_path / "results", callbacks=[seen])
    assert isinstance(rows, pd.DataFrame) and len(rows) == 2
    curves = scalegrid.load_curves(tmp_path / "results")
    assert sorted(seen.rows) == sorted(zip(curves["trial_id"], curves["step"], curves["val_loss"]))
    assert {tid: config["lr"] for tid, config in seen.configs.items()} == dict(zip(rows["trial_id"], rows["lr"]))
    best = rows.best()
    assert len(best) == 1 and best["val_loss"].item() == rows["val_loss"].min()
    assert rows.pivot_table(index="lr", values="val_loss").shape == (2, 1)  # still a DataFrame for pandas


def test_best_is_each_cells_lowest_loss_smallest_model_first():
    frame = pd.DataFrame({
        "trial_id": list("abcdef"), "stage": "train", "status": ["COMPLETED"] * 5 + ["DIVERGED"], "member": 0,
        "model": ["llama-1m", "llama-1m", "llama-50k", "llama-50k", "llama-50k", "llama-50k"],
        "params": [1_000_000, 1_000_000, 50_000, 50_000, 50_000, 50_000], "unique_tokens": [8, 8, 8, 8, 16, 16], "lr": [1e-3, 3e-3, 1e-3, 3e-3, 1e-3, 1e-3],
        "val_loss": [2.0, 1.5, 3.0, 2.5, 2.2, float("nan")], "train_loss": [1.0, 1.2, 2.0, 2.1, 2.2, 2.3],
    })
    best = SweepRows(frame).best()
    assert list(best["trial_id"]) == ["d", "e", "b"]  # llama-50k's two cells, then llama-1m's
    assert list(SweepRows(frame).best(by="train_loss")["trial_id"]) == ["c", "e", "a"]

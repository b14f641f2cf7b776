"""The Python API: `scalegrid.plan` and `scalegrid.run` take a spec file or a dict, return
DataFrames, and raise `scalegrid.UserError` with the command line's one-line message."""

from __future__ import annotations

import subprocess
import sys

import pytest

import scalegrid
from sweep_fixtures import LINREG, tree_digest
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

"""`scalegrid run` of a wsd epochs axis on a real local Ray: one Tune trial trains the trunk and
its branch under each trial's lease, and every epoch count gets its own rows and diagnostics."""

from __future__ import annotations

from sweep_fixtures import TINY_LM
from scalegrid import load_curves, load_runs
from scalegrid.cli import main


def test_a_wsd_epochs_axis_runs_as_one_trunk_with_a_row_per_epoch_count(ray_local, write_spec, tmp_path, capsys):
    results = tmp_path / "results"
    spec = write_spec({
        **TINY_LM, "epochs": [1, 2], "data": {**TINY_LM["data"], "unique_tokens": 1024},
        "train": {**TINY_LM["train"], "schedule": "wsd", "diagnostics": True, "probe_batches": 2},
    })
    assert main(["run", str(spec)]) == 0
    runs = load_runs(results).sort_values("epochs")
    assert list(runs["epochs"]) == [1, 2] and set(runs["status"]) == {"COMPLETED"} and runs["trial_id"].is_unique
    assert list(runs["tokens_seen"]) == [1024, 2048] and runs["stopped_epoch"].isna().all()
    curves = load_curves(results)
    ends = curves[curves["grad_norm"].notna()]
    assert sorted(ends["epoch"]) == [1.0, 1.0, 2.0]  # the 1-epoch branch's end, and the trunk's two
    assert not list((results / "trunks").rglob("step-*"))  # the branch consumed its trunk state

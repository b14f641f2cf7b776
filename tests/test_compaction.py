"""Compaction of the store (store/compact.py): many rows' own files folded into part files, on real
Parquet in a temporary results directory. What must hold: every reader sees the same rows before
and after, only final rows are folded, a row written after a fold wins, a row in two files is read
once, and a compacted trial still reads as done to the worker's check (`run_status`)."""

from __future__ import annotations

import pandas as pd

from scalegrid import grid, store
from scalegrid.data.identity import describe
from scalegrid.spec import load_sweep
from scalegrid.storage import layout
from scalegrid.storage.layout import CURVES, RUNS, is_part
from scalegrid.store.compact import MIN_FILES
from scalegrid.trial import Status, TrialResult


def trials_of(tmp_path, seeds: int):
    sweep = load_sweep({
        "name": "fold", "trainer": "linreg", "model": {"dims": 8}, "data": {"source": "gaussian", "unique_tokens": [64]},
        "epochs": 1, "lr": 0.1, "seed": list(range(seeds)), "results": str(tmp_path / "results"),
    })
    return [t for _, t in grid.point_trials(sweep, describe(sweep.data))]


def write(trial, status: Status, val_loss: float) -> None:
    c = trial.config
    curves = [{"step": s, "epoch": s / 2, "tokens_seen": 32 * s, "train_loss": val_loss, "val_loss": val_loss, "lr": c.lr, "wall_s": 0.1 * s}
              for s in (1, 2)]
    result = TrialResult(status, c.num_params, c.num_params_nonembed, c.tokens_seen, c.estimated_flops, val_loss=val_loss,
                         error="boom" if status == Status.FAILED else None, curves=curves)
    store.write_curves(trial.results, trial.trial_id, result.curves)
    store.write_run(trial.results, store.trial_row(trial, result, wall_s=0.1, provenance={}))


def files(results, table: str) -> tuple[int, int]:
    names = results.list(table, suffix=".parquet")
    return sum(is_part(n) for n in names), sum(not is_part(n) for n in names)


def by_trial(frame: pd.DataFrame, sort: list[str]) -> pd.DataFrame:
    return frame.sort_values(sort).reset_index(drop=True)


def test_a_fold_keeps_every_row_and_reads_as_before(tmp_path):
    trials = trials_of(tmp_path, 12)
    for i, t in enumerate(trials):
        write(t, Status.FAILED if i == 3 else Status.COMPLETED, 1.0 + i)
    results = trials[0].results
    before = store.read(results).runs
    curves_before = store.scan(results, CURVES).frame
    assert store.compact(results, min_files=13) == 0  # below the threshold: nothing folded
    folded = store.compact(results, min_files=4)
    assert folded == 11 + 11  # every final run row and its curves; the FAILED trial's files stay
    assert files(results, RUNS) == (1, 1) and files(results, CURVES) == (1, 1)
    pd.testing.assert_frame_equal(by_trial(store.read(results).runs, ["trial_id"]), by_trial(before, ["trial_id"]))
    pd.testing.assert_frame_equal(by_trial(store.scan(results, CURVES).frame, ["trial_id", "step"]), by_trial(curves_before, ["trial_id", "step"]))
    assert store.run_status(results, trials[0].trial_id) == "COMPLETED"  # folded: found in the part
    assert store.run_outcome(results, trials[5].trial_id) == ("COMPLETED", 6.0)
    assert store.run_status(results, trials[3].trial_id) == "FAILED"  # its own file
    assert store.run_status(results, "0" * 16) is None


def test_a_row_written_after_a_fold_wins_and_a_row_in_two_files_is_read_once(tmp_path):
    trials = trials_of(tmp_path, 6)
    for t in trials:
        write(t, Status.COMPLETED, 2.0)
    results = trials[0].results
    store.compact(results, min_files=2)
    write(trials[1], Status.FAILED, float("nan"))  # trained again after the fold: its own file is newer
    write(trials[2], Status.COMPLETED, 2.0)  # the same row again, as after a compactor killed before its deletes
    runs = store.read(results).runs.set_index("trial_id")
    assert len(runs) == 6 and runs.index.is_unique
    assert runs.loc[trials[1].trial_id, "status"] == "FAILED" and runs.loc[trials[2].trial_id, "status"] == "COMPLETED"
    assert store.run_status(results, trials[1].trial_id) == "FAILED"
    curves = store.scan(results, CURVES).frame
    assert len(curves) == 12 and not curves.duplicated(["trial_id", "step"]).any()
    # Folded again: the newest row of each trial is the one kept, in one file or another.
    store.compact(results, min_files=1)
    runs = store.read(results).runs.set_index("trial_id")
    assert len(runs) == 6 and runs.loc[trials[1].trial_id, "status"] == "FAILED"


def test_a_compactor_folds_in_the_background_and_once_more_at_the_end(tmp_path):
    trials = trials_of(tmp_path, 5)
    results = trials[0].results
    with store.Compactor(results, every_s=3600) as compactor:  # no period passes: the fold on leaving
        for t in trials:
            write(t, Status.COMPLETED, 1.0)
    assert compactor.error is None
    assert files(results, RUNS) == (0, 5)  # 5 files: under MIN_FILES, left as they are
    assert store.compact(layout(str(tmp_path / "results")), min_files=5) == 10
    assert files(results, RUNS) == (1, 0) and len(store.read(results).runs) == 5


def test_a_sweep_of_300_trials_ends_folded_and_a_rerun_trains_nothing(ray_local, tmp_path):
    """A real run (linreg trials, packed, on the local Ray): its driver folds the trials' own files
    (300 >= MIN_FILES) into parts, every trial reads as done, and running it again trains nothing."""
    import scalegrid

    spec = {
        "name": "fold-run", "trainer": "linreg", "model": {"dims": 8}, "data": {"source": "gaussian", "unique_tokens": [32]},
        "epochs": 1, "lr": 0.1, "seed": list(range(300)), "results": str(tmp_path / "results"),
    }
    rows = scalegrid.run(spec)
    assert len(rows) == 300 and (rows["status"] == "COMPLETED").all()
    results = layout(str(tmp_path / "results"))
    parts, own = files(results, RUNS)
    assert parts >= 1 and own < MIN_FILES
    assert files(results, CURVES)[0] >= 1
    assert len(store.scan(results, CURVES).frame["trial_id"].unique()) == 300
    again = scalegrid.plan(spec)
    assert (again["status"] == "done").all()
    assert len(scalegrid.run(spec)) == 300 and files(results, RUNS) == (parts, own)  # nothing trained, nothing written

"""Vectorised packs on real files: the lrs of one linreg grid point stay in one pack and train in one
pass, each trial under its own lease and with its own rows; a raising pass is retried, then FAILED."""

from __future__ import annotations

import numpy as np
import pytest

from sweep_fixtures import LINREG
from scalegrid import grid, load_runs, store
from scalegrid.orchestrator import leases
from scalegrid.orchestrator.execution import trial_worker as worker
from scalegrid.orchestrator.execution.trial_feeds import make_packs
from scalegrid.spec import load_sweep
from scalegrid.storage import layout
from scalegrid.trainers import linreg
from scalegrid.data.identity import describe


def sweep(tmp_path, *, lrs=(0.2, 0.1, 0.05), seeds=(0,), sizes=(64,), max_failures=2):
    spec = load_sweep({
        **LINREG, "lr": list(lrs), "seed": list(seeds), "epochs": 3, "results": str(tmp_path / "results"),
        "data": {"source": "gaussian", "unique_tokens": list(sizes)},
        "train": {"batch_size": 1, "schedule": "constant", "warmup_fraction": 0.0},
        "fault_tolerance": {"max_failures": max_failures},
    })
    return grid.expand(spec, describe(spec.data))


def test_packs_never_split_the_lrs_of_a_grid_point(tmp_path):
    trials = sweep(tmp_path, seeds=(0, 1), sizes=(64, 128))  # 4 grid points x 3 lrs
    for slots in (1, 2, 8):
        packs = make_packs(trials, True, slots)
        assert sorted(t.trial_id for p in packs for t in p) == sorted(t.trial_id for t in trials)
        for pack in packs:
            points = {(t.config.unique_tokens, t.config.seed) for t in pack}
            assert len(pack) == 3 * len(points)  # whole grid points only
    assert len(make_packs(trials, True, 8)) == 4 and len(make_packs(trials, True, 1)) == 4  # ceil(12 / 4) = 3: one point each
    single = sweep(tmp_path, lrs=(0.1,), seeds=tuple(range(12)))  # one lr per point: packed as before
    assert [len(p) for p in make_packs(single, True, 1)] == [3, 3, 3, 3]
    assert all(len(p) == 1 for p in make_packs(trials, False, 2))


def test_one_pass_trains_the_trials_this_worker_holds(tmp_path):
    trials = sweep(tmp_path)
    results = layout(tmp_path / "results")
    theirs, _ = leases.acquire(results, trials[1].trial_id, owner="another-driver", expiry_s=60)
    with theirs.heartbeating():
        outcomes = worker.run_leased_group(trials, lambda row: None, {}, owner="me", retry_here=True)
        assert outcomes[1] == worker.ELSEWHERE
        assert [o.status for o in (outcomes[0], outcomes[2])] == ["COMPLETED", "COMPLETED"]
        runs = load_runs(tmp_path / "results").set_index("trial_id")
        assert set(runs.index) == {trials[0].trial_id, trials[2].trial_id}
        for trial in (trials[0], trials[2]):
            alone = linreg.train(trial, lambda row: None)
            assert runs.loc[trial.trial_id, "val_loss"] == pytest.approx(alone.val_loss, rel=1e-9)
            assert len(store.scan(results, "curves").frame.query("trial_id == @trial.trial_id")) == 3
            assert [h["attempt"] for h in leases.history(results, trial.trial_id)] == [1]
            assert leases.holder(results, trial.trial_id, 60) is None  # released
        assert runs["wall_s"].nunique() == 1  # each trial's share of the one pass
        assert leases.holder(results, trials[1].trial_id, 60)["owner"] == "another-driver"
        again = worker.run_leased_group(trials, lambda row: None, {}, owner="me", retry_here=True)
        assert again == [worker.ALREADY_DONE, worker.ELSEWHERE, worker.ALREADY_DONE]
    theirs.release()


def test_a_raising_pass_is_retried_then_every_trial_gets_a_failed_row(tmp_path, monkeypatch):
    trials = sweep(tmp_path, max_failures=1)

    def broken(*args, **kwargs):
        raise OSError("the data generator's disk is full")

    monkeypatch.setattr(linreg, "samples", broken)
    outcomes = worker.run_leased_group(trials, lambda row: None, {}, owner="me", retry_here=True)
    assert [o.status for o in outcomes] == ["FAILED"] * 3
    runs = load_runs(tmp_path / "results")
    assert runs["error"].str.contains("disk is full").all() and np.isnan(runs["val_loss"]).all()
    for trial in trials:
        assert [h["attempt"] for h in leases.history(layout(tmp_path / "results"), trial.trial_id)] == [1, 2]

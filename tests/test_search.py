"""The locally-optimal search on the linreg trainer, whose full grid is cheap enough to know the optimum.

The cells are full-batch gradient descent on noisy over-parameterised linear regression (a smooth
loss surface with an interior optimum in epochs, learning rate and weight decay); every loss is a
real `linreg` run. The walks run here without Ray (`walk_to_end` plays the driver: train what the
walks miss, replay, repeat); `scalegrid run` then does the same on a real local Ray.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import signal
import subprocess
import sys

import pandas as pd
import pytest

from scalegrid import load_runs, store
from scalegrid.analysis.walk import CERTIFIED, DIVERGED, EDGE, local_search
from scalegrid.cli import main
from scalegrid.orchestrator import leases
from scalegrid.orchestrator.execution.provenance import provenance
from scalegrid.orchestrator.planning.cells import losses, replay, search_cells, search_rows
from scalegrid.orchestrator.execution.trial_worker import execute
from scalegrid.spec import load_sweep
from scalegrid.storage import layout
from scalegrid.trainers import linreg
from scalegrid.data.identity import describe

LADDERS = {
    "epochs": [1, 2, 4, 8, 16, 32, 64],
    "lr": [0.03, 0.1, 0.3, 1.0, 3.0],
    "weight_decay": [0, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16],
}
SEARCH = {
    "name": "search",
    "trainer": "linreg",
    "model": [{"dims": 32}, {"dims": 64}],
    "data": {"source": "gaussian", "unique_tokens": [64, 128], "gaussian": {"noise": 0.5}},
    "train": {"batch_size": 1024, "schedule": "constant", "warmup_fraction": 0},  # full-batch GD: no sampling noise
    "search": {"axes": LADDERS},
    "resources": {"cpus": 1},
}


def spec_of(**search) -> object:
    return load_sweep({**SEARCH, "search": {**SEARCH["search"], **search}, "results": "unused"})


def loss_of_run(trial) -> float:
    result = linreg.train(trial, lambda row: None)
    return result.val_loss if result.status == "COMPLETED" else math.inf


def walk_to_end(spec, known: dict[str, float] | None = None):
    """The driver without Ray: train what the walks miss, replay, until every walk has ended."""
    cells, known = search_cells(spec, describe(spec.data)), dict(known or {})
    trained = []
    while True:
        searches = replay(spec, cells, known.get)
        missing = {t.trial_id: t for s in searches.values() for t in s.missing()}
        if not missing:
            return searches, known, trained
        for tid, trial in missing.items():
            known[tid] = loss_of_run(trial)
            trained.append(tid)


def full_grid(cell) -> dict[tuple, float]:
    return {v: loss_of_run(cell.trial_at(dict(zip(LADDERS, v)))) for v in itertools.product(*LADDERS.values())}


def test_search_certifies_the_full_grids_optimum_with_a_tenth_of_its_trials():
    spec = spec_of()
    searches, known, trained = walk_to_end(spec)
    for s in searches.values():
        grid = full_grid(s.cell)
        best, second = sorted(grid.values())[:2]
        optimum = min(grid, key=grid.get)
        assert second > best  # the optimum is unique
        assert tuple(s.path.centre.values()) == optimum, s.cell.label
        at_end = any(optimum[i] in (ladder[0], ladder[-1]) for i, ladder in enumerate(LADDERS.values()))
        assert s.state == (EDGE if at_end else CERTIFIED), s.cell.label
        assert len(s.trials()) <= 0.15 * len(grid), len(s.trials())  # the goal: <= 30%
    assert {s.state for s in searches.values()} == {CERTIFIED, EDGE}  # both kinds of end on this grid
    assert len(trained) == len(set(trained)) == sum(len(s.trials()) for s in searches.values())


def test_an_edge_is_said_and_extended_by_the_ladders_ratio():
    short = {**LADDERS, "weight_decay": [0.0025, 0.005, 0.01]}  # the optima lie at or above its top
    full, _, _ = walk_to_end(spec_of())
    cut, _, _ = walk_to_end(spec_of(axes=short))
    extended, _, _ = walk_to_end(spec_of(axes=short, extend_edges=True))
    certified = [cell_id for cell_id, s in full.items() if s.state == CERTIFIED]
    assert len(certified) == 3
    for cell_id in certified:
        assert cut[cell_id].state == EDGE and "weight_decay+" in cut[cell_id].path.last.edge
        assert extended[cell_id].state == CERTIFIED and extended[cell_id].path.centre == full[cell_id].path.centre
        assert extended[cell_id].path.ladders["weight_decay"][:4] == (0.0025, 0.005, 0.01, 0.02)  # the ratio 2
    capped, _, _ = walk_to_end(spec_of(axes=short, extend_edges=True, max_extensions=1))
    assert any(s.state == EDGE and s.path.ladders["weight_decay"][-1] == 0.02 for s in capped.values())


def test_a_warm_start_begins_at_the_smaller_models_optimum_and_ends_where_a_cold_start_does():
    cold, known, _ = walk_to_end(spec_of())
    warm, _, _ = walk_to_end(spec_of(start="from_smaller"), known)  # the trials the cold walks ran are reused
    for cell_id, s in warm.items():
        if s.cell.smaller is None:
            assert s.path.steps[0].centre == spec_of().search.start_values()
        else:
            assert s.path.steps[0].centre == warm[s.cell.smaller].path.centre  # where the smaller model's walk ended
        assert s.path.centre == cold[cell_id].path.centre, s.cell.label
    assert sum(s.cell.smaller is not None for s in warm.values()) == 2


def test_confirm_seeds_train_more_seeds_of_each_optimum_and_the_walk_ends_on_their_mean():
    spec = load_sweep({**SEARCH, "train": {**SEARCH["train"], "batch_size": 16},  # minibatches: seeds differ
                       "search": {"axes": LADDERS, "confirm_seeds": 2}, "results": "unused"})
    searches, known, trained = walk_to_end(spec)
    for s in searches.values():
        assert s.finished and s.state in (CERTIFIED, EDGE)
        centre = s.path.centre
        seeds = [known[s.cell.trial_at(centre, m).trial_id] for m in range(3)]
        assert len(set(seeds)) == 3  # three seeds, three losses
        assert s.path.last.seeds == tuple(seeds) and s.path.last.loss == pytest.approx(sum(seeds) / 3, rel=1e-12)
        assert {s.cell.trial_at(centre, m).trial_id for m in (1, 2)} <= {t.trial_id for t in s.trials()}
        row = search_rows("search", s)[-1]
        assert row.seed_losses == list(seeds) and row.noise > 0 and "lr × epochs diagonals" in row.neighbourhood
    # Each trial once. A confirmed centre whose seeds' mean is worse than its first seed sends the
    # replayed walk another way: the trials of the earlier way stay in the store, off the final path.
    assert len(trained) == len(set(trained)) and set(trained) >= {t.trial_id for s in searches.values() for t in s.trials()}


def test_confirmation_seeds_run_through_ray_as_members_of_the_cells_optimum(ray_local, write_spec, tmp_path):
    one_cell = {**SEARCH, "model": [{"dims": 32}], "data": {**SEARCH["data"], "unique_tokens": [64]},
                "train": {**SEARCH["train"], "batch_size": 16},
                "search": {"axes": {"epochs": [4, 8, 16], "lr": [0.1, 0.3, 1.0], "weight_decay": [0.01, 0.02, 0.04]},
                           "confirm_seeds": 2}}
    assert main(["run", str(write_spec(one_cell)), "--no-report"]) == 0
    results = layout(tmp_path / "results")  # the walk replayed over the run's own losses: where it must have ended
    spec = load_sweep({**one_cell, "results": str(tmp_path / "results")})
    (expected,) = replay(spec, search_cells(spec, describe(spec.data)), losses(store.read(results), failed_count=True).get).values()
    assert expected.finished and not expected.missing()
    runs = load_runs(tmp_path / "results")
    seeds = {m: expected.cell.trial_at(expected.path.centre, m).trial_id for m in (1, 2)}
    assert set(runs.loc[runs["member"] > 0, "trial_id"]) >= set(seeds.values())  # rebuilt on the worker, ids checked
    assert set(runs["trial_id"]) >= {t.trial_id for t in expected.trials()}
    last = store.load_search(tmp_path / "results").sort_values("step").iloc[-1]
    assert last["outcome"] == expected.state and len(last["seed_losses"]) == 3
    assert last["loss"] == pytest.approx(sum(last["seed_losses"]) / 3, rel=1e-12)


def test_diverged_or_failed_neighbours_count_as_worse_and_a_diverged_cell_stops():
    ladders = {"lr": [0.1, 0.3, 1.0, 3.0]}
    losses = {0.1: 2.0, 0.3: 1.0, 1.0: math.nan, 3.0: math.inf}  # NaN: DIVERGED, inf: FAILED
    path = local_search(ladders, {"lr": 1.0}, lambda p: losses[p["lr"]])
    assert path.state == CERTIFIED and path.centre == {"lr": 0.3}
    assert [s.outcome for s in path.steps] == ["moved", "certified"]
    everything_diverged = local_search(ladders, {"lr": 1.0}, lambda p: math.inf)
    assert everything_diverged.state == DIVERGED


def test_ties_go_to_the_cheaper_run():
    path = local_search({"epochs": [1, 2, 4, 8]}, {"epochs": 4}, lambda p: 1.0, cost=lambda p: p["epochs"])
    assert path.centre == {"epochs": 1} and path.state == EDGE


def test_a_run_reuses_the_grid_resumes_from_the_store_and_says_each_cells_state(ray_local, write_spec, tmp_path, capsys):
    results = tmp_path / "results"
    box = {"epochs": [4, 8, 16], "lr": [0.3, 1.0], "weight_decay": [0.01, 0.02, 0.04]}
    grid = write_spec({**{k: v for k, v in SEARCH.items() if k != "search"}, **box}, "grid.yaml")
    assert main(["run", str(grid), "--no-report"]) == 0  # a grid run earlier: 4 cells x 18 trials
    earlier = run_files(results)
    assert len(earlier) == 72

    # Interrupted: the store holds the rows of the trials finished before the kill, nothing else.
    expected, known, _ = walk_to_end(spec_of())
    by_id = {t.trial_id: t for s in expected.values() for t in s.trials()}
    partial = tmp_path / "partial"
    shutil.copytree(results, partial)
    for tid in sorted(set(by_id) - set(earlier))[::2]:  # half of the search's own trials, trained by the real worker
        trial = by_id[tid].model_copy(update={"results": layout(partial)})
        execute(trial, lambda row: None, provenance())
    walked = set(by_id)
    before = run_files(partial)
    spec = write_spec({**SEARCH, "results": str(partial)}, "search.yaml")
    assert main(["run", str(spec), "--no-report"]) == 0
    after = run_files(partial)
    assert set(after) == set(earlier) | walked  # the walk's trials, each once; the grid's reused
    assert all(after[t] == mtime for t, mtime in before.items())  # nothing already there trained again
    out = capsys.readouterr().out
    assert "search: 4 cells (" in out

    steps = store.load_search(partial)
    last = steps.sort_values("step").groupby("cell_id").tail(1).set_index("cell")
    for s in expected.values():  # the run's walks end where the pure replay's do
        row = last.loc[s.cell.label]
        assert row["outcome"] == s.state and row["certified"] == (s.state == CERTIFIED)
        assert row["centre_trial_id"] == s.centre()[1].trial_id
    assert main(["status", str(partial)]) == 0
    assert "searches: 4 cells (3 certified, 1 at edge)" in capsys.readouterr().out
    assert main(["plan", str(spec)]) == 0
    plan_out = capsys.readouterr().out
    assert "4 cells (3 certified, 1 at edge)" in plan_out and "waiting" not in plan_out
    assert main(["run", str(spec), "--no-report"]) == 0 and run_files(partial) == after  # finished: nothing to do


def run_files(results) -> dict[str, int]:
    return {p.stem: p.stat().st_mtime_ns for p in (results / "runs").glob("*.parquet")}


def test_two_drivers_on_one_search_train_each_trial_once(write_spec, tmp_path):
    results = tmp_path / "results"
    spec = write_spec({**SEARCH, "model": [{"dims": 64}]})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-m", "scalegrid.cli", "run", str(spec), "--no-report"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(2)
    ]
    try:
        outs = [p.communicate(timeout=400)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    expected, _, _ = walk_to_end(load_sweep({**SEARCH, "model": [{"dims": 64}], "results": "unused"}))
    runs = load_runs(results)
    assert set(runs["trial_id"]) == {t.trial_id for s in expected.values() for t in s.trials()}
    histories = {t: leases.history(layout(results), t) for t in runs["trial_id"]}
    assert all(len(h) == 1 for h in histories.values()), {t: len(h) for t, h in histories.items() if len(h) != 1}
    owners = pd.Series([h[0]["owner"] for h in histories.values()]).value_counts()
    print(f"trials per driver: {owners.tolist()}")


def test_train_fields_and_data_order_are_axes_and_single_values_keep_ids():
    from scalegrid.grid import expand

    base = {k: v for k, v in SEARCH.items() if k != "search"} | {"epochs": 2, "lr": 0.1, "results": "unused"}
    plain = expand(load_sweep(base), describe(load_sweep(base).data))
    same = expand(load_sweep({**base, "train": {**base["train"], "batch_size": [1024]}, "data": {**base["data"], "order": "shuffled"}}),
                  describe(load_sweep(base).data))
    assert [t.trial_id for t in same] == [t.trial_id for t in plain]
    wider = load_sweep({**base, "train": {**base["train"], "batch_size": [8, 1024]}, "data": {**base["data"], "order": ["shuffled", "sequential"]}})
    trials = expand(wider, describe(wider.data))
    assert len(trials) == 4 * len(plain) and len({t.trial_id for t in trials}) == len(trials)
    small = [t for t in trials if t.config.train.batch_size == 8 and t.config.model.dims == 32 and t.config.unique_tokens == 64]
    by_order = {t.config.data_order: loss_of_run(t) for t in small}
    assert by_order["shuffled"] != by_order["sequential"]  # the order of minibatches changes the result


def test_lm_search_then_its_ensemble_and_student_at_the_optimum_and_the_report(ray_local, write_spec, tmp_path):
    from sweep_fixtures import TINY_LM

    results = tmp_path / "results"
    spec = write_spec({
        **TINY_LM, "search": {"axes": {"weight_decay": [0.01, 0.3, 10.0]}},
        "ensemble": {"members": [1, 2]}, "distill": [{"teacher": {"model": "llama-50k", "members": 2}, "method": "token"}],
    })
    assert main(["run", str(spec)]) == 0
    steps = store.load_search(results)
    last = steps.sort_values("step").iloc[-1]
    assert last["outcome"] in (CERTIFIED, EDGE)
    runs = load_runs(results)
    optimum = last["centre_trial_id"]
    ensembles = runs[runs["stage"] == "ensemble"]
    assert len(ensembles) == 2 and all(list(ids)[0] == optimum for ids in ensembles["member_trial_ids"])
    student = runs[runs["stage"] == "distill"].iloc[0]
    assert optimum in list(student["teacher_trial_ids"])
    trained = runs[runs["stage"] == "train"]
    assert len(trained) == len(set(steps["centre_trial_id"]) | {t for ids in steps["neighbour_trial_ids"] for t in ids if t}) + 1  # + member 1
    report = (results / "report" / "report.md").read_text()
    assert "Locally-optimal hyper-parameters, searched" in report and "Each cell's search" in report
    assert (results / "report" / "figures" / "search_paths.png").is_file() is False  # one searched axis: no plane to draw
    assert "fewer than two of epochs, weight decay and learning rate" in report


def test_plan_shows_each_cells_state_without_ray(write_spec, capsys):
    spec = write_spec({**SEARCH, "search": {"axes": LADDERS, "start": "from_smaller"}})
    assert main(["plan", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "search over epochs, lr, weight_decay: 4 cells (2 searching, 2 waiting)" in out
    assert "waiting for the smaller model" in out
    assert "22 trials (22 pending)" in out  # the smallest model's two walks: centre, 6 axis and 4 lr x epochs neighbours each


def test_a_ladder_grows_by_the_ratio_of_its_last_step():
    from scalegrid.spec.ladders import extended_value

    assert extended_value([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4], +1) == 12.8
    assert extended_value([1e-4, 3e-4, 1e-3, 3e-3, 1e-2], +1) == 0.0333  # 1e-2 x (1e-2 / 3e-3), 3 digits
    assert extended_value([1, 2, 4, 8], -1) is None  # 0.5 epochs: an integer ladder rounds to 0 or 1, not below 1
    assert extended_value([2, 4, 8], -1) == 1
    assert extended_value([0, 0.1, 0.2], -1) is None and extended_value(["shuffled", "sequential"], +1) is None

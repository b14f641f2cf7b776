"""The trial ids of the shipped sweeps are pinned: a refactor that changes them would orphan every
result users already have. A change that means to change them (new presets, a new data recipe)
updates `tests/data/sweep_trial_ids.json` in the same commit, and says why. A searched sweep
(`search:`, the quickstart) is pinned at its cells' start points: the first trials its walks run,
and the ensembles and students the stage graph would hold there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scalegrid.orchestrator.planning.stage_graph import build
from scalegrid.spec import load_sweep
from scalegrid.data.identity import describe

ROOT = Path(__file__).parents[1]
PINNED = json.loads((ROOT / "tests" / "data" / "sweep_trial_ids.json").read_text())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_sweeps_keep_their_trial_ids(name):
    spec = load_sweep(ROOT / "sweeps" / f"{name}.yaml")
    graph = build(spec, describe(spec.data))
    found = {
        "trials": sorted(t.trial_id for t in graph.trials),
        "students": sorted(s.trial_id for s in graph.students),
        "ensembles": sorted(row for e in graph.ensembles for row in e.row_ids),
    }
    assert found == PINNED[name]

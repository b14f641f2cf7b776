"""The Python API: plan and run a sweep from a notebook or a script, as `scalegrid plan` and `run` do.

    import scalegrid
    spec = {"name": "lin", "trainer": "linreg", "model": {"dims": 64},
            "data": {"source": "gaussian", "unique_tokens": [128, 256]}, "epochs": [1, 2], "lr": 0.05}
    scalegrid.plan(spec, results="results/lin")   # one row per trial: axes, size, FLOPs, status
    runs = scalegrid.run(spec, results="results/lin")   # trains what is missing; its rows (a DataFrame)
    runs.best()                                         # the lowest val_loss of each (model, unique_tokens) cell

A spec is a YAML file or a dict of the same keys. Bad input raises `scalegrid.UserError` with the
one-line message the command line prints, before anything is written. Progress goes to stderr.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from scalegrid.analysis import best_runs
from scalegrid.orchestrator.pipeline import run_sweep
from scalegrid.orchestrator.planning.sweep_plan import SweepPlan, make_plan

Spec = str | Path | dict
CELL = ("model", "unique_tokens")  # the paper's locally-optimal hyperparameters are found per (size, budget)


class SweepRows(pd.DataFrame):
    """What `scalegrid.run` returns: the sweep's rows as a DataFrame (anything pandas does works on
    it), with `best`."""

    @property
    def _constructor(self):
        return SweepRows

    def best(self, by: str = "val_loss", per: Sequence[str] = CELL, stage: str = "train") -> pd.DataFrame:
        """Each cell's best row: the lowest `by` among the COMPLETED rows of `stage` (train: single
        models, extra ensemble members left out) per value of `per`, smallest model first."""
        return best_runs(pd.DataFrame(self), by=per, loss=by, stage=stage)


def plan(spec: Spec, results: str | Path | None = None) -> pd.DataFrame:
    """Every trial of the spec (trial_id, axes, params, tokens seen, estimated FLOPs, status); starts no Ray."""
    return make_plan(_spec(spec), results=_str(results)).table()


def run(
    spec: Spec,
    results: str | Path | None = None,
    address: str | None = None,
    max_concurrent: int | None = None,
    *,
    report: bool = False,
    callbacks: Sequence = (),
) -> SweepRows:
    """Train what the results store lacks (on an embedded local Ray, or the cluster at `address`;
    a Ray already started in this process is used as it is) and return the sweep's rows: one per
    trial, ensemble and student, as `scalegrid.load_runs` reads them, with `.best()` per cell.
    `report`: also write the scaling report (RESULTS/report/); `callbacks`: Ray Tune callbacks of
    your own (each sees every trial's config: its hyperparameters, beside `pack` and `trials`, and
    every evaluation row), beside the progress and the spec's trackers."""
    done = run_sweep(_spec(spec), results=_str(results), address=address, max_concurrent=max_concurrent,
                     report=report, callbacks=callbacks)
    return SweepRows(sweep_rows(done.plan))


def sweep_rows(plan: SweepPlan) -> pd.DataFrame:
    """The store's rows of this sweep's trials, ensembles and students (other sweeps' rows left out)."""
    graph = plan.graph
    ids = {t.trial_id for t in graph.trials} | {s.trial_id for s in graph.students} | {r for e in graph.ensembles for r in e.row_ids}
    rows = plan.snapshot.all_runs
    return rows[rows["trial_id"].isin(ids)].drop_duplicates("trial_id", keep="last").reset_index(drop=True)


def _spec(spec: Spec) -> str | Path | dict:
    return spec if isinstance(spec, (dict, Path)) else str(spec)


def _str(path: str | Path | None) -> str | None:
    return None if path is None else str(path)

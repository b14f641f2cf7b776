"""The evaluate stage's jobs: the models `evaluate.which` names, each on each task, each named by
its own identity, and what the store says of it. Pure: no Ray, no torch, no reads.

    jobs = evaluation_jobs(sweep, graph, tasks, snapshot, has_model)   # every (model, task): its state
    [j for j in jobs if j.state == "pending"]                         # what the stage runs now

A model is one trial (`best`: each cell's best; `trials`: every trained trial), an ensemble of a
grid point's first k members (`ensembles`: each k > 1 of `ensemble.members`), or a student. An
evaluation's id (`grid.evaluation_id`) is the model's id (its trial_id, or its ensemble row's id),
the task and its version, `num_fewshot`, `limit` and the harness's version: a re-run evaluates
nothing twice, a task added later evaluates only what is missing, and neither `batch_size` nor the
device changes an id.

A job is `done` (its rows say COMPLETED), `pending` (its model is trained and saved: the stage runs
it), `waiting` (its model, or a cell's other points, are not trained yet; a re-run gets to it) or
`blocked` (a member FAILED or DIVERGED, or its weights are not kept), with the reason. A cell's best
is its lowest validation loss among its COMPLETED points, chosen once every point has a run row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from scalegrid import grid
from scalegrid.data.eval_tasks import TaskRef
from scalegrid.orchestrator.planning.stage_graph import Cell, StageGraph, blocker
from scalegrid.spec import Sweep
from scalegrid.store import Snapshot
from scalegrid.trial import Stage, Status, Trial

DONE, PENDING, WAITING, BLOCKED = "done", "pending", "waiting", "blocked"


@dataclass(frozen=True)
class EvalModel:
    """A model the evaluate stage scores: one trial, a student, or the ensemble of a point's first k members."""

    model_id: str  # the trial's id, or the ensemble row's (`grid.ensemble_id`)
    stage: Stage  # TRAIN (a single model), ENSEMBLE or DISTILL, as the model's run row
    label: str  # in words, for the progress lines and `status`
    members: tuple[Trial, ...]  # one trial, or the ensemble's k members
    combine: str = "probs"


@dataclass(frozen=True)
class EvalJob:
    """One model on one task."""

    eval_id: str  # "" for a cell whose best is not chosen yet
    model: EvalModel | None  # None: a cell whose best is not chosen yet
    task: TaskRef
    state: str  # done | pending | waiting | blocked
    why: str = ""
    cell: str = ""  # the cell in words, while its best is not chosen

    @property
    def what(self) -> str:
        return f"{self.model.label if self.model else f'best of {self.cell}'} on {self.task.name}"


def evaluation_jobs(
    sweep: Sweep, graph: StageGraph, tasks: tuple[TaskRef, ...], snapshot: Snapshot, has_model: Callable[[str], bool],
    harness: str,
) -> list[EvalJob]:
    """Every evaluation `evaluate:` asks for, with its state from the store (`has_model`: whether a
    trial's final weights are saved)."""
    e = sweep.evaluate
    if e is None or not tasks:
        return []
    models: list[EvalModel | str] = []  # a str: a cell whose best is not chosen yet, in words
    if "best" in e.which:
        models += [_best(cell, snapshot) for cell in graph.cells]
    if "trials" in e.which:
        models += [_single(t) for t in graph.trials]
    if "ensembles" in e.which and sweep.ensemble is not None:
        ks = [k for k in sorted(set(sweep.ensemble.recipe.members)) if k > 1]
        models += [_ensemble(job.members[:k], job.combine, job.point) for job in graph.ensembles for k in ks if k <= len(job.members)]
    if "students" in e.which:
        models += [EvalModel(s.trial_id, Stage.DISTILL, f"student {s.model_label} from k={len(s.config.distill.teacher)}", (s,))
                   for s in graph.students]
    unique = {m.model_id if isinstance(m, EvalModel) else m: m for m in models}  # a cell's best may also be a trial
    jobs = []
    for model in unique.values():
        for task in tasks:
            if isinstance(model, str):
                jobs.append(EvalJob("", None, task, WAITING, "its points have not all run", cell=model))
                continue
            eval_id = grid.evaluation_id(model.model_id, task.name, task.version, e.num_fewshot, e.limit, harness)
            state, why = _state(eval_id, model, snapshot, has_model)
            jobs.append(EvalJob(eval_id, model, task, state, why))
    return jobs


def _single(trial: Trial) -> EvalModel:
    return EvalModel(trial.trial_id, Stage.TRAIN, f"{trial.model_label} at {_where(trial)}", (trial,))


def _ensemble(members: tuple[Trial, ...], combine: str, point: str) -> EvalModel:
    return EvalModel(grid.ensemble_id([m.trial_id for m in members], combine), Stage.ENSEMBLE, f"K={len(members)} at {point}",
                     members, combine)


def _where(trial: Trial) -> str:
    c = trial.config
    return f"unique_tokens={c.unique_tokens}, epochs={c.epochs}, weight_decay={c.weight_decay:g}, seed={c.seed}"


def _best(cell: Cell, snapshot: Snapshot) -> EvalModel | str:
    """The cell's point of lowest validation loss, once each has a run row; else the cell in words."""
    status = snapshot.status
    if any(t.trial_id not in status for t in cell.candidates):
        return cell.label
    loss = _losses(snapshot)
    finished = [t for t in cell.candidates if status[t.trial_id] == Status.COMPLETED.value and math.isfinite(loss.get(t.trial_id, math.nan))]
    best = min(finished, key=lambda t: loss[t.trial_id]) if finished else cell.candidates[0]  # none finished: blocked below
    c = best.config
    return EvalModel(best.trial_id, Stage.TRAIN, f"best of {cell.label} (epochs={c.epochs}, lr={c.lr:g}, weight_decay={c.weight_decay:g})",
                     (best,))


def _losses(snapshot: Snapshot) -> dict[str, float]:
    runs = snapshot.runs
    return dict(zip(runs["trial_id"], pd.to_numeric(runs["val_loss"], errors="coerce"))) if len(runs) else {}


def _state(eval_id: str, model: EvalModel, snapshot: Snapshot, has_model: Callable[[str], bool]) -> tuple[str, str]:
    if eval_id in snapshot.evals_done:
        return DONE, ""
    ids = [m.trial_id for m in model.members]
    bad = blocker(ids, snapshot.status)
    if bad:
        return BLOCKED, bad
    if any(snapshot.status.get(t) != Status.COMPLETED.value for t in ids):
        return WAITING, "its model is not trained yet"
    unsaved = [t for t in ids if not has_model(t)]
    if unsaved:
        return BLOCKED, f"no saved weights for {', '.join(unsaved)} (trained with keep_weights: false, or before students kept theirs)"
    return PENDING, ""


def jobs_table(jobs: list[EvalJob]) -> pd.DataFrame:
    """One row per evaluation: the model and task in words, its state and why (for `plan`)."""
    rows = [{"stage": "evaluate", "what": j.what, "id": j.eval_id, "state": j.state, "why": j.why} for j in jobs]
    return pd.DataFrame(rows, columns=["stage", "what", "id", "state", "why"])


def jobs_json(jobs: list[EvalJob]) -> list[dict]:
    """The evaluations of a run, for RESULTS/stages/<sweep>.json: `status` reads their states from it."""
    return [{"id": j.eval_id, "what": j.what, "members": [m.trial_id for m in j.model.members] if j.model else []} for j in jobs]


def recorded_states(records: list[dict], snapshot: Snapshot) -> pd.DataFrame:
    """`status`: each recorded evaluation's state now (done, pending, waiting, blocked), from the store."""
    rows = []
    for r in records:
        bad = blocker(r["members"], snapshot.status)
        ready = r["members"] and all(snapshot.status.get(t) == Status.COMPLETED.value for t in r["members"])
        state = DONE if r["id"] in snapshot.evals_done else BLOCKED if bad else PENDING if ready else WAITING
        rows.append({"stage": "evaluate", "what": r["what"], "id": r["id"], "state": state, "why": bad if state == BLOCKED else ""})
    return pd.DataFrame(rows, columns=["stage", "what", "id", "state", "why"])

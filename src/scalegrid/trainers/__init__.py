"""Trainers by name. Each module has `train(trial, report) -> TrialResult` (see `scalegrid/trial.py`).

A trainer that can train several trials in one pass (`linreg`: every lr of one grid point; `lm`:
the epoch counts of one `wsd` trunk, `trunks.py`) also has `vector_key(config) -> str` (lm's in
`trunk_groups.py`) and `train_many(trials, reports) -> list[TrialResult]`; trials with equal keys may be
handed to one `train_many` call (`vector_groups`).

The stages after training reach their torch code here too (`evaluate_ensemble`,
`make_teacher_corpus`, `evaluate_downstream`). Modules are imported only when a trial or a stage runs, so `scalegrid plan`
never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from types import ModuleType

from scalegrid.data.eval_tasks import TaskRef
from scalegrid.spec import TRAINER_NAMES
from scalegrid.storage import ResultsLayout
from scalegrid.trial import Report, Stage, TaskScores, TeacherCorpusRequest, Trial, TrainerFn, TrialResult

TRAINERS: dict[str, str] = {"lm": "scalegrid.trainers.lm", "linreg": "scalegrid.trainers.linreg"}
STUDENT_TRAINER = "scalegrid.trainers.distill"  # students are lm trials with a teacher: not a spec trainer
assert set(TRAINERS) == set(TRAINER_NAMES), "every trainer a spec may name has a module"


def get_trainer(name: str) -> TrainerFn:
    """The trainer function of a spec's `trainer:` name (or "distill" for students)."""
    return importlib.import_module(STUDENT_TRAINER if name == "distill" else TRAINERS[name]).train


def evaluate_ensemble(members: Sequence[Trial], combine: str) -> tuple[list[float], list[float], str]:
    """The ensembles of the first k members, k = 1..K: (losses, seconds per member, device) (`ensemble.py`)."""
    return importlib.import_module("scalegrid.trainers.ensemble").evaluate_first_k(members, combine)


def make_teacher_corpus(results: ResultsLayout, corpus_id: str, request: TeacherCorpusRequest, data_key: str) -> dict:
    """A sequence-level student's teacher corpus, sampled and cached (`distill.make_corpus`)."""
    return importlib.import_module(STUDENT_TRAINER).make_corpus(results, corpus_id, request, data_key)


def evaluate_downstream(
    members: Sequence[Trial], *, combine: str, tasks: Sequence[TaskRef], num_fewshot: int, limit: int | None, batch_size: int,
) -> list[TaskScores]:
    """One model (or the ensemble of `members`) scored on lm-evaluation-harness tasks (`harness.py`)."""
    return importlib.import_module("scalegrid.trainers.harness").evaluate_models(
        members, combine=combine, tasks=tasks, num_fewshot=num_fewshot, limit=limit, batch_size=batch_size,
    )


def trainer_of(trial: Trial) -> TrainerFn:
    return _module(trial).train


def _module(trial: Trial) -> ModuleType:
    return importlib.import_module(STUDENT_TRAINER if trial.stage == Stage.DISTILL else TRAINERS[trial.config.trainer])


def _keys_module(trial: Trial) -> ModuleType:
    """Where a trial's `vector_key` lives: lm's in `trunk_groups.py` (grouping imports no torch)."""
    if trial.stage == Stage.TRAIN and trial.config.trainer == "lm":
        return importlib.import_module("scalegrid.trainers.trunk_groups")
    return _module(trial)


ManyTrainerFn = Callable[[Sequence[Trial], Sequence[Report]], list[TrialResult]]


def many_trainer_of(trial: Trial) -> ManyTrainerFn | None:
    """The trainer's `train_many`, or None when it trains one trial at a time."""
    return getattr(_module(trial), "train_many", None)


def vector_groups(trials: Sequence[Trial]) -> list[list[Trial]]:
    """`trials` split into groups one `train_many` call trains together, in first-seen order; a
    trainer without one gives one group per trial."""
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        module = _keys_module(trial)
        key = module.vector_key(trial.config) if hasattr(module, "vector_key") else trial.trial_id
        groups.setdefault(f"{trial.stage}:{key}", []).append(trial)
    return list(groups.values())

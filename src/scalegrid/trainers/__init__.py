"""Trainers by name. Each module has `train(trial, report) -> TrialResult` (see `scalegrid/trial.py`).

Modules are imported only when a trial runs, so `scalegrid plan` never imports torch.
"""

from __future__ import annotations

import importlib

from scalegrid.spec import TRAINER_NAMES
from scalegrid.trial import Stage, Trial, TrainerFn

TRAINERS: dict[str, str] = {"lm": "scalegrid.trainers.lm", "linreg": "scalegrid.trainers.linreg"}
STUDENT_TRAINER = "scalegrid.trainers.distill"  # students are lm trials with a teacher: not a spec trainer
assert set(TRAINERS) == set(TRAINER_NAMES), "every trainer a spec may name has a module"


def get_trainer(name: str) -> TrainerFn:
    """The trainer function of a spec's `trainer:` name (or "distill" for students)."""
    return importlib.import_module(STUDENT_TRAINER if name == "distill" else TRAINERS[name]).train


def trainer_of(trial: Trial) -> TrainerFn:
    return get_trainer("distill" if trial.stage == Stage.DISTILL else trial.config.trainer)

"""Trainers by name. Each module has `train(trial, report) -> TrialResult` (see `base.py`).

Modules are imported only when a trial runs, so `scalegrid plan` never imports torch.
"""

TRAINERS: dict[str, str] = {"lm": "scalegrid.trainers.lm", "linreg": "scalegrid.trainers.linreg"}

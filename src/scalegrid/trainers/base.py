"""What a trainer receives and returns, and the registry of trainers by name.

A trainer is a plain function `train(trial, report) -> TrialResult`. It knows nothing of grids,
Ray or the results store: the orchestrator builds the `Trial`, calls the trainer inside a Ray Tune
worker, and writes the returned result (and the curve rows it reported) to Parquet.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from pydantic import BaseModel, ConfigDict

from scalegrid.spec import FaultToleranceSpec, TrainSpec
from scalegrid.trainers import TRAINERS


class TrialConfig(BaseModel):
    """Every field that changes a trial's result; its canonical JSON is hashed into `trial_id`.

    `model` holds the resolved shape (sizes, not the preset's name), `data` the identity of the
    tokenized corpus (content hash and vocabulary) or of the generated data, so two specs that
    describe the same experiment in different words share one trial.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    trainer: str
    model: dict[str, Any]
    data: dict[str, Any]
    unique_tokens: int
    epochs: int
    lr: float
    weight_decay: float
    seed: int
    train: TrainSpec
    # Left out of the hash at their defaults (`grid.trial_id`): member 0 of a grid point is the
    # grid point's own trial, and adding ensembles or students leaves every existing id as it was.
    member: int = 0  # ensemble member index: its seed draws the initialisation and data order
    distill: dict[str, Any] | None = None  # a student's teacher and method (`trainers/distill.py`)

    @property
    def member_seed(self) -> int:
        """The seed of initialisation and data order: `seed` for member 0, a hash of (seed, member) else."""
        if self.member == 0:
            return self.seed
        digest = hashlib.sha256(f"scalegrid-member:{self.seed}:{self.member}".encode()).digest()
        return int.from_bytes(digest[:4], "little")


class Trial(BaseModel):
    """A trial as scheduled: its identity and config plus where things live (not hashed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trial_id: str
    sweep: str
    model_label: str  # the `model` column: preset name or compact sizes
    config: TrialConfig
    results_dir: str  # the results store root
    data_dir: str | None = None  # the token cache of this trial's corpus (lm), None for generated data
    fault_tolerance: FaultToleranceSpec = FaultToleranceSpec()  # checkpoints, retries, leases
    save_model: bool = False  # keep the final weights in RESULTS/models/<trial_id>/ (ensemble members, teachers)
    stage: str = "train"  # train | distill: the `stage` column

    @property
    def local_results(self) -> Path | None:
        """The results directory when it is mounted here (a path or file://); None on an object store."""
        from scalegrid.storage import location

        return location(self.results_dir).local_path

    @property
    def checkpoint_dir(self):
        """Where this trial's checkpoints live (`checkpoint.CheckpointDir`), on any results store."""
        from scalegrid.storage import location
        from scalegrid.trainers.checkpoint import CheckpointDir

        return CheckpointDir(location(self.results_dir), self.trial_id)


@dataclass
class TrialResult:
    """What a trainer returns. `status` is COMPLETED, or DIVERGED on a NaN / infinite loss."""

    status: str
    params: int
    params_nonembed: int
    tokens_seen: int
    flops: float
    val_loss: float = math.nan
    best_val_loss: float = math.nan
    train_loss: float = math.nan
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # trainer-specific scalar columns


class Report(Protocol):
    """Called by a trainer at every evaluation with one curve row; forwards live progress."""

    def __call__(self, row: dict[str, Any]) -> None: ...


# One curve row per evaluation has at least these keys.
CURVE_COLUMNS = ("step", "epoch", "tokens_seen", "train_loss", "val_loss", "lr", "wall_s")

TrainerFn = Callable[[Trial, Report], TrialResult]


def get_trainer(name: str) -> TrainerFn:
    """Import a trainer's module only when it is used: `plan` must not pay for torch."""
    import importlib

    module = "scalegrid.trainers.distill" if name == "distill" else TRAINERS[name]  # students: not a spec trainer
    return importlib.import_module(module).train


def cache_dir(results_dir: str | Path) -> Path:
    return Path(results_dir) / "cache"

"""The rows of the results store, and their Parquet schemas: a column is declared once, in a
row dataclass (docs/results.md says what each column means; tests/test_results_schema.py pins it)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import platform
import typing
from dataclasses import dataclass

import pyarrow as pa

from scalegrid.storage.layout import CURVES, ENSEMBLES, EVALS, RUNS, SEARCH
from scalegrid.grid import canonical_json, ensemble_id, identity
from scalegrid.trial import Stage, Status, TaskScores, Trial, TrialResult


@dataclass(frozen=True)
class RunRow:
    """One row of `runs/` or `ensembles/` (docs/results.md says what each column means)."""

    trial_id: str
    sweep: str
    stage: str  # train | ensemble | distill
    status: str  # COMPLETED | DIVERGED | FAILED
    trainer: str
    model: str
    params: int
    params_nonembed: int
    unique_tokens: int
    epochs: int
    tokens_seen: int
    lr: float
    weight_decay: float
    seed: int
    members: int  # 1 for a single model; an ensemble's k; a student's teacher's k
    member: int | None  # train: the ensemble member index (0: the grid point's own trial)
    val_loss: float
    best_val_loss: float
    train_loss: float
    flops: float
    wall_s: float
    error: str | None
    finished_at: dt.datetime
    config_json: str  # the hashed TrialConfig (or an ensemble's members), canonical JSON
    scalegrid_version: str | None
    git_commit: str | None
    hostname: str
    device: str
    member_trial_ids: list[str] | None = None  # ensemble: its members, in member order
    teacher_id: str | None = None  # distill: the teacher's ensemble row (k > 1) or trial (k = 1)
    teacher_kind: str | None = None  # distill: ensemble | model
    teacher_trial_ids: list[str] | None = None  # distill: the teacher's members
    distill_method: str | None = None  # distill: token | sequence
    combine: str | None = None  # k > 1 members averaged (an ensemble, a student's teacher): probs | logits
    world_size: int = 1  # processes that trained the trial: Ray Train's workers (`resources.workers`); 1 otherwise
    resumed_from_step: int | None = None  # the checkpoint step its last attempt started from (0: from scratch); null for an ensemble
    restarts: int | None = None  # attempts before its last one (Tune's retries, its workers' restarts, earlier runs); null for an ensemble
    stopped_epoch: int | None = None  # an adaptive stop (train.stop): the epoch after which it entered the decay
    memorised_train: float | None = None  # train.memorisation_samples: generated n-grams found in the training data, after training prompts
    memorised_val: float | None = None  # ... after validation prompts


@dataclass(frozen=True)
class CurveRow:
    """One row of `curves/`: one evaluation of a trial."""

    trial_id: str
    step: int
    epoch: float
    tokens_seen: int
    train_loss: float
    val_loss: float
    lr: float
    wall_s: float
    resumed_from_step: int | None = None  # the checkpoint step of the attempt that evaluated it (0: from scratch)
    # train.diagnostics: at each epoch's end (trainers/diagnostics.py); null elsewhere
    grad_norm: float | None = None
    grad_cosine: float | None = None
    grad_snr: float | None = None
    grad_gram_top: list[float] | None = None
    val_curvature: float | None = None


@dataclass(frozen=True)
class SearchRow:
    """One row of `search/`: one step of a cell's search (`orchestrator/planning/cells.py`)."""

    cell_id: str
    sweep: str
    cell: str  # the cell's axes in words: "model=llama-50k, unique_tokens=8192, seed=0"
    model: str
    params: int
    unique_tokens: int
    seed: int
    step: int  # 0, 1, ...: the step's place in the walk
    outcome: str  # moved | extended | searching | confirming | certified | edge | diverged
    centre: str  # every searched axis of the centre: "epochs=8, weight_decay=0.4"
    centre_trial_id: str
    epochs: int
    lr: float
    weight_decay: float
    loss: float  # the centre's val_loss (the mean over its seeds); inf when DIVERGED or FAILED, NaN when not run yet
    seed_losses: list[float]  # the centre's val_loss per seed, seed 0 first (one: no extra seeds)
    noise: float  # the seed spread of the step's neighbourhood (NaN: no point of it has two seeds)
    neighbourhood: str  # the neighbourhood checked, in words: "each axis ±1 and the lr × epochs diagonals (10 neighbours)"
    neighbours: list[str]  # "epochs=4", "epochs=16, lr=0.01" (a diagonal), "weight_decay- (edge)"
    neighbour_trial_ids: list[str]  # "" beyond a ladder's end
    neighbour_losses: list[float]
    neighbour_status: list[str]  # no_worse | better | missing | edge | run
    moved_to: str | None  # the next centre, "epochs=16, weight_decay=0.4"; null unless moved
    moved_to_trial_id: str | None
    certified: bool
    edge: bool
    edge_axes: list[str]  # the ladder ends the centre sits at: "weight_decay+"
    ladders_json: str  # the ladders of this step (grown ones after an extension), JSON
    finished_at: dt.datetime


@dataclass(frozen=True)
class EvalRow:
    """One row of `evals/`: one metric of one model on one downstream task (docs/results.md)."""

    eval_id: str  # the evaluation: model, task, task version, few-shot, limit, harness version (`grid.evaluation_id`)
    sweep: str
    model_id: str  # the trial (a single model or a student) or the ensemble row it scored: runs'/ensembles' trial_id
    stage: str  # train | ensemble | distill, as the model's run row
    status: str  # COMPLETED | FAILED
    model: str
    params: int
    unique_tokens: int
    epochs: int
    members: int  # 1; an ensemble's k; a student's teacher's k
    combine: str | None  # how an ensemble's k > 1 members were averaged: probs | logits
    task: str
    task_version: str
    num_fewshot: int
    limit: int | None  # the first `limit` examples; null: all
    metric: str | None  # acc, acc_norm, ... (`name,filter` when the harness filtered); null when FAILED
    value: float
    stderr: float  # NaN when the harness reports none
    samples: int
    truncated: int  # loglikelihood requests whose context was cut from the left to fit the model's context
    max_length: int  # the model's context in tokens
    harness_version: str
    device: str
    wall_s: float
    error: str | None
    finished_at: dt.datetime
    scalegrid_version: str | None
    git_commit: str | None
    hostname: str


def eval_rows(
    eval_id: str, members: list[Trial], *, stage: Stage, model_id: str, combine: str | None, scores: TaskScores,
    num_fewshot: int, limit: int | None, harness_version: str, provenance: dict[str, str],
) -> list[EvalRow]:
    """The rows of one evaluation: a row per metric, or one FAILED row with the error. `members`:
    the model's trials (one for a single model or a student)."""
    first = members[0]
    c = first.config
    shared = dict(
        eval_id=eval_id, sweep=first.sweep, model_id=model_id, stage=stage.value, model=first.model_label,
        params=c.num_params, unique_tokens=c.unique_tokens, epochs=c.epochs,
        members=len(c.distill.teacher) if c.distill else len(members), combine=combine if len(members) > 1 else None,
        task=scores.task, task_version=scores.version, num_fewshot=num_fewshot, limit=limit, samples=scores.samples,
        truncated=scores.truncated, max_length=scores.max_length, harness_version=harness_version, device=scores.device,
        wall_s=scores.seconds, finished_at=dt.datetime.now(dt.timezone.utc), scalegrid_version=provenance.get("scalegrid_version"),
        git_commit=provenance.get("git_commit"), hostname=platform.node(),
    )
    if scores.error is not None or not scores.metrics:
        error = scores.error or "the harness reported no metric"
        return [EvalRow(**shared, status=Status.FAILED.value, metric=None, value=math.nan, stderr=math.nan, error=error)]
    return [
        EvalRow(**shared, status=Status.COMPLETED.value, metric=metric, value=value, stderr=stderr, error=None)
        for metric, (value, stderr) in sorted(scores.metrics.items())
    ]


def trial_row(trial: Trial, result: TrialResult, *, wall_s: float, provenance: dict[str, str], restarts: int = 0) -> RunRow:
    """The run row of a trained trial (stage train or distill); `restarts`: its attempts before this one."""
    config = trial.config
    return RunRow(
        **_point_columns(trial, provenance),
        trial_id=trial.trial_id, stage=Stage(trial.stage).value, status=Status(result.status).value,
        params=result.params, params_nonembed=result.params_nonembed, tokens_seen=result.tokens_seen,
        members=len(config.distill.teacher) if config.distill else 1,  # a student's: its teacher's k
        member=config.member, val_loss=result.val_loss, best_val_loss=result.best_val_loss,
        train_loss=result.train_loss, flops=result.flops, wall_s=wall_s, error=result.error,
        config_json=canonical_json(identity(config)), device=result.device, world_size=result.world_size,
        resumed_from_step=result.resumed_from_step, restarts=restarts, **_teacher_columns(config),
        stopped_epoch=result.stopped_epoch, memorised_train=result.memorised_train, memorised_val=result.memorised_val,
    )


def ensemble_row(
    members: list[Trial], loss: float, *, wall_s: float, error: str | None, provenance: dict[str, str], device: str,
    combine: str = "probs",
) -> RunRow:
    """The row of the ensemble of `members` (k = len(members)): the grid point's columns, the
    members' size, k times their tokens and FLOPs, `member_trial_ids` and how they were averaged."""
    first, k = members[0], len(members)
    ids = [m.trial_id for m in members]
    averaged = {"combine": combine} if k > 1 else {}
    return RunRow(
        **_point_columns(first, provenance),
        trial_id=ensemble_id(ids, combine), stage=Stage.ENSEMBLE.value,
        status=(Status.FAILED if error else Status.COMPLETED).value,
        params=first.config.num_params, params_nonembed=first.config.num_params_nonembed,
        tokens_seen=k * first.config.tokens_seen, members=k, member=None, val_loss=loss, best_val_loss=loss,
        train_loss=math.nan, flops=k * first.config.estimated_flops, wall_s=wall_s, error=error,
        config_json=canonical_json({"stage": "ensemble", "members": ids} | averaged), device=device, member_trial_ids=ids,
        combine=averaged.get("combine"),
    )


def _point_columns(trial: Trial, provenance: dict[str, str]) -> dict:
    """The columns every row of a grid point shares: its axes and where and by what it was made."""
    c = trial.config
    return {
        "sweep": trial.sweep, "trainer": c.trainer, "model": trial.model_label, "unique_tokens": c.unique_tokens,
        "epochs": c.epochs, "lr": c.lr, "weight_decay": c.weight_decay, "seed": c.seed,
        "finished_at": dt.datetime.now(dt.timezone.utc), "scalegrid_version": provenance.get("scalegrid_version"),
        "git_commit": provenance.get("git_commit"), "hostname": platform.node(),
    }


def _teacher_columns(config) -> dict:
    """A student's teacher; nothing for other trials."""
    if config.distill is None:
        return {}
    teacher, combine = list(config.distill.teacher), config.distill.combine
    return {
        "teacher_id": teacher[0] if len(teacher) == 1 else ensemble_id(teacher, combine),
        "teacher_kind": "model" if len(teacher) == 1 else "ensemble",
        "teacher_trial_ids": teacher,
        "distill_method": config.distill.method,
        "combine": combine if len(teacher) > 1 else None,
    }


_ARROW_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(),
                dt.datetime: pa.timestamp("us", tz="UTC"), list[str]: pa.list_(pa.string()),
                list[float]: pa.list_(pa.float64())}


def schema_of(row_type: type) -> pa.Schema:
    """The Parquet schema of a row dataclass: one column per field, in field order."""
    hints = typing.get_type_hints(row_type)
    columns = []
    for f in dataclasses.fields(row_type):
        kind = hints[f.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if type(None) in typing.get_args(kind) and len(args) == 1:  # X | None: a nullable X
            kind = args[0]
        columns.append(pa.field(f.name, _ARROW_TYPES[kind]))
    return pa.schema(columns)


RUN_SCHEMA = schema_of(RunRow)
CURVE_SCHEMA = schema_of(CurveRow)
SEARCH_SCHEMA = schema_of(SearchRow)
EVAL_SCHEMA = schema_of(EvalRow)
RUN_COLUMNS = tuple(RUN_SCHEMA.names)
SCHEMAS = {RUNS: RUN_SCHEMA, ENSEMBLES: RUN_SCHEMA, CURVES: CURVE_SCHEMA, SEARCH: SEARCH_SCHEMA, EVALS: EVAL_SCHEMA}



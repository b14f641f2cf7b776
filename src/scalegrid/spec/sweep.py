"""The sweep spec: a YAML file validated once into typed, frozen models.

    name: quickstart
    trainer: lm                       # lm | linreg
    model: [llama-50k, llama-200k]    # preset names and/or explicit shapes
    data:
      source: synthetic               # synthetic | files | hub | tokens | gaussian (linreg)
      tokenizer: byte                 # byte | bpe | {kind: hf, path: ./my-tokenizer}
      unique_tokens: [32768, 262144]
    epochs: [1, 4, 16]                # each axis: a value or a list; the grid is their product
    lr: 3e-3
    weight_decay: [0.1, 0.8]
    seed: 0
    include: [{model: llama-1m, unique_tokens: 32768}]   # extra sub-grids (omitted axes: all values)
    exclude: [{epochs: 16, weight_decay: 0.1}]            # remove every point matching all keys
    train: {batch_size: [8, 16], seq_len: 64}   # result-changing train fields are axes too
    resources: {cpus: 1, gpus: 0}     # or {workers: 8, gpus_per_worker: 1, cpus_per_worker: 8}: Ray Train workers
    fault_tolerance: {checkpoint_every: 200, keep_checkpoints: 2, max_failures: 2, lease_expiry_s: 60}
    results: results/quickstart
    tracking: {wandb: {project: my-project}, mlflow: {}, tensorboard: true}   # not in trial ids
    ensemble: {members: [1, 2, 4], where: [{model: llama-50k}], combine: probs}   # K members per matching point
    distill:                          # students of a teacher: a grid point's ensemble of k, or one model
      - {teacher: {model: llama-50k, members: 4}, student: {model: llama-50k}, method: token}
    search:                           # instead of grid lists: locally-optimal values per cell
      axes: {epochs: [1, 2, 4, 8, 16], weight_decay: [0, 0.1, 0.2, 0.4, 0.8, 1.6]}
      start: {epochs: 4, weight_decay: 0.1}   # or `from_smaller`: the next smaller model's optimum

Paths in a spec are relative to the current directory. Every error is raised as a one-line
`UserError` naming the field (`data.unique_tokens[1]`) and how to fix it.

Every section is a `strict.Strict` model: strict types and a range for every number (`strict.py`);
the `data:` section lives in `data_spec.py`. Names of both are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator

from scalegrid.spec.data import SHUFFLE_SEED, DataSpec, GaussianDataSpec, SyntheticCorpusSpec, TokenizerSpec, ValidationSpec  # noqa: F401 - re-exported
from scalegrid.errors import UserError
from scalegrid.spec.strict import (  # noqa: F401 - hashed_fields and describe_error re-exported
    MAX_EPOCHS, MAX_NAME, MAX_TOKENS, Fraction, Seed, Steps, Strict, as_axis, closest, describe_error, format_error,
    hashed_fields, hashed_unless_default, not_hashed, schema_of,
)
from scalegrid.spec.ladders import SearchSpec, monotone, on_ladder
from scalegrid.shapes import PRESETS, LinregShape, LlamaShape, ModelShape
from scalegrid.spec.stopping import StopSpec, epochs_section

AXES = ("model", "unique_tokens", "epochs", "lr", "weight_decay", "seed")
TRAINER_NAMES = ("lm", "linreg")  # `trainers/__init__.py` maps each to its module


class TrainSpec(Strict):
    batch_size: int = Field(16, ge=1, le=1 << 20)  # sequences per optimizer step (samples for linreg)
    seq_len: int = Field(64, ge=2, le=1 << 20)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)  # of all optimizer steps
    schedule: Literal["cosine", "linear", "constant", "wsd"] = "cosine"  # wsd: warmup, stable, decay (schedule.py)
    min_lr_ratio: Fraction = 0.1  # lr at the end of the decay, relative to peak
    decay_fraction: float = hashed_unless_default(0.2, gt=0, le=1)  # wsd: the last fraction of the steps decays
    clip: float = Field(1.0, ge=0, le=1e6)  # gradient-norm clip; 0 turns it off
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0, le=1)
    eval_every: Steps = 100  # optimizer steps between validation evals (and one at the end)
    log_every: Steps = 10  # steps between train-loss reads (each is a device sync)
    # Weight decay on the input embedding: the paper's recipe (Levanter's default mask) leaves it
    # out; scalegrid decayed it before this field existed (`trainers/model.param_groups`).
    decay_embeddings: bool = hashed_unless_default(True)
    # How a trial runs, never what it computes (float noise aside): in no trial id.
    micro_batch_size: Annotated[int, Field(ge=1, le=1 << 20)] | Literal["auto"] = not_hashed("auto")  # sequences per forward/backward; auto: the largest that fits
    activation_checkpointing: bool = not_hashed(False)  # recompute each decoder layer in backward: less memory, ~1/3 more compute
    compile: bool | None = not_hashed(None)  # torch.compile each decoder layer; None: on a GPU, off on a CPU
    loss_chunk_tokens: int | None = not_hashed(None, ge=1, le=1 << 30)  # positions per lm-head + loss chunk; None: by vocab (memory.py)
    parallelism: Literal["auto", "ddp", "fsdp"] = not_hashed("auto")  # with resources.workers > 1; auto: FSDP2 when the memory plan says one GPU cannot hold the model, else DDP
    diagnostics: bool = not_hashed(False)  # per-epoch gradient statistics on a fixed probe set (trainers/diagnostics.py)
    stop: StopSpec | None = hashed_unless_default(None)  # an adaptive stop (stopping.py); written `epochs: {max: N, stop: {...}}`
    memorisation_samples: int = not_hashed(0, ge=0, le=65536)  # > 0: generated n-grams found in the training data, at the end (trainers/memorisation.py)
    memorisation_ngram: int = not_hashed(8, ge=1, le=1 << 19)  # tokens per n-gram of memorisation_samples
    probe_batches: int = not_hashed(8, ge=2, le=1024)  # diagnostics: probe batches of batch_size; each epoch costs that many forward-backwards more

    @field_validator("micro_batch_size", mode="before")
    @classmethod
    def _micro_batch(cls, value: Any):
        return _micro_batch_count(value)

    @model_validator(mode="after")
    def _wsd_fields(self):
        if self.decay_fraction != 0.2 and self.schedule != "wsd":
            raise ValueError(f"decay_fraction is for schedule wsd, not {self.schedule}; leave it out or set schedule: wsd")
        if self.stop and (self.schedule != "wsd" or self.decay_fraction == 1):
            raise ValueError("an adaptive stop (epochs.stop) needs train.schedule: wsd with decay_fraction below 1 (it decays where the rule stops)")
        if self.memorisation_samples and self.memorisation_ngram > self.seq_len - self.seq_len // 2:
            raise ValueError(f"memorisation_ngram {self.memorisation_ngram} is longer than the generated half of a sequence "
                             f"({self.seq_len - self.seq_len // 2} tokens); use at most that, or a longer seq_len")
        if self.stop and self.stop.rule == "grad_stats" and not self.diagnostics:
            raise ValueError("the stop rule grad_stats reads the gradient statistics: set train.diagnostics: true")
        if self.schedule == "wsd" and self.warmup_fraction + self.decay_fraction > 1:
            raise ValueError(
                f"warmup_fraction {self.warmup_fraction:g} + decay_fraction {self.decay_fraction:g} exceed 1 "
                "(warmup and decay of a one-epoch run would overlap); lower one of them"
            )
        return self

    @model_validator(mode="after")
    def _micro_batch_within_batch(self):
        if self.micro_batch_size != "auto" and self.micro_batch_size > self.batch_size:
            raise ValueError(
                f"micro_batch_size {self.micro_batch_size} is larger than batch_size {self.batch_size} "
                f"(the sequences of one optimizer step); use at most {self.batch_size}, or auto"
            )
        return self


def _train_axes() -> tuple[str, ...]:
    """The `train` fields that may be axes: every result-changing one but `seq_len` (the unit the
    corpus is cut into, which `unique_tokens` must be a multiple of) and `stop` (written as
    `epochs: {max: N, stop: ...}`, one rule per spec)."""
    return tuple(
        name for name, info in TrainSpec.model_fields.items()
        if name not in ("seq_len", "stop") and (info.json_schema_extra or {}).get("identity") != "never"
    )


def _micro_batch_count(value: Any) -> Any:
    if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 20):
        raise ValueError(f"must be an integer between 1 and {1 << 20} or auto (got {value!r})")
    return value


class _ListedTrain(Strict):
    @field_validator("*", mode="before")
    @classmethod
    def _listed(cls, value: Any, info: ValidationInfo):
        if info.field_name not in TRAIN_AXES:
            if isinstance(value, list):
                raise ValueError("one value only (it is not an axis)" + (
                    ": the corpus is cut into sequences of it; use one spec per value" if info.field_name == "seq_len" else ""))
            return _micro_batch_count(value) if info.field_name == "micro_batch_size" else value
        return as_axis(value)

    @model_validator(mode="after")
    def _each_value_a_train_spec(self):
        """Every value of every train axis, the other fields at their first values, passes
        TrainSpec's checks across fields (a micro-batch no larger than the batch)."""
        first = {name: value[0] if name in TRAIN_AXES else value for name, value in self}
        for variant in [first] + [first | {axis: v} for axis in TRAIN_AXES for v in getattr(self, axis)[1:]]:
            try:
                TrainSpec.model_validate(variant)
            except ValidationError as err:
                raise ValueError(format_error(err.errors()[0])) from None
        return self


def _train_grid() -> type[BaseModel]:
    """`train:` of a spec: TrainSpec's fields, each result-changing one a value or a list (an
    axis), checked element by element with TrainSpec's own constraints."""
    fields: dict[str, Any] = {}
    for name, info in TrainSpec.model_fields.items():
        if name in TRAIN_AXES:
            element = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
            fields[name] = (list[element], [info.default])
        else:
            fields[name] = (info.annotation, info)
    return create_model("TrainGrid", __base__=_ListedTrain, __doc__="The spec's `train:` (lists are axes).", **fields)


TRAIN_AXES = _train_axes()
TrainGrid = _train_grid()
EXTRA_AXES = (*TRAIN_AXES, "data_order")  # axes beyond AXES: in a grid point only where they vary or are searched
POINT_AXES = (*AXES, *EXTRA_AXES)  # what a grid point holds, and selectors (include, exclude, where, teacher) may name
SEARCHABLE = ("epochs", "lr", "weight_decay", *EXTRA_AXES)  # what `search.axes` may name; the rest make the cells


class ResourcesSpec(Strict):
    cpus: float = Field(1.0, gt=0, le=4096)
    gpus: float = Field(0.0, ge=0, le=1024)
    gpu_memory_gb: float | None = Field(None, gt=0, le=100_000)  # memory of one GPU: `plan` checks every trial fits (default: detected)
    # A trial on several processes: Ray Train workers (`orchestrator/train_launch.py`); `cpus`/`gpus` are the one-worker form.
    workers: int = Field(1, ge=1, le=4096)  # > 1: the trial is a TorchTrainer of this many workers (DDP, or FSDP2)
    gpus_per_worker: float | None = Field(None, ge=0, le=1024)  # default: `gpus`
    cpus_per_worker: float | None = Field(None, gt=0, le=4096)  # default: `cpus`

    @model_validator(mode="after")
    def _one_way_to_say_it(self):
        for per_worker, one in (("gpus_per_worker", "gpus"), ("cpus_per_worker", "cpus")):
            if getattr(self, per_worker) is not None and one in self.model_fields_set and getattr(self, one) != getattr(self, per_worker):
                raise ValueError(f"{one} and {per_worker} disagree; give one of them ({per_worker}: what each of the {self.workers} workers holds)")
        return self

    @property
    def worker(self) -> dict[str, float]:
        """What one worker (the whole trial when workers is 1) reserves: {"CPU": c, "GPU": g}."""
        gpus = self.gpus if self.gpus_per_worker is None else self.gpus_per_worker
        return {"CPU": self.cpus if self.cpus_per_worker is None else self.cpus_per_worker, "GPU": gpus}


class FaultToleranceSpec(Strict):
    """How a trial survives faults. Not part of any trial's identity: none of it changes a result."""

    checkpoint_every: Steps = 200  # lm optimizer steps between checkpoints
    keep_checkpoints: int = Field(2, ge=1, le=1000)  # the newest this many are kept per trial
    max_failures: int = Field(2, ge=0, le=100)  # retries of a raising (or lost) trial before its FAILED row
    lease_expiry_s: float = Field(60.0, gt=0, le=7 * 86400)  # a lease without a heartbeat this long is taken over


class WandbSpec(Strict):
    """Weights & Biases, through Ray's `WandbLoggerCallback`: one W&B run per trial (run name = trial_id,
    group = the sweep's name)."""

    project: str = Field(min_length=1)
    entity: str | None = None
    mode: Literal["online", "offline"] | None = None  # default: $WANDB_MODE, else online
    dir: str | None = None  # W&B's local files; default: RESULTS/wandb (a results directory on this machine)


class MlflowSpec(Strict):
    """MLflow, through Ray's `MLflowLoggerCallback`: one MLflow run per trial in one experiment."""

    tracking_uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else the file store RESULTS/mlruns
    experiment: str | None = None  # default: the sweep's name


class TrackingSpec(Strict):
    """Where every trial's hyperparameters and evaluation rows are sent as they happen (Ray Tune's
    logger callbacks). None of it is in a trial id: tracking never changes a result."""

    wandb: WandbSpec | None = None
    mlflow: MlflowSpec | None = None
    tensorboard: bool = False  # Tune's TensorBoard logger: event files under RESULTS/tune/<run>/<trial_id>/

    @field_validator("mlflow", mode="before")
    @classmethod
    def _mlflow_shorthand(cls, value: Any):
        if value is True:  # `mlflow: true`: every default
            return {}
        return None if value is False else value

    @property
    def enabled(self) -> bool:
        return bool(self.wandb or self.mlflow or self.tensorboard)


class EnsembleSpec(Strict):
    """Ensembles of independently trained members ("Pre-training under infinite compute", seeds/002).

    Every grid point matching `where` (all points when empty) trains max(members) members that
    differ only by member seed (initialisation and data order); member 0 without overrides is the
    grid point's own trial. The overrides are the paper's tuned ensemble recipe (members trained
    longer with less weight decay than the best single model); they change the members' epochs
    and weight decay, hence their identity. `combine` is how members' predictions are averaged, for
    the ensemble's loss and for a teacher: `probs` (the mean of the members' next-token
    probabilities) or `logits` (softmax of the mean of their logits, as in the paper's code); both
    are used in the literature, and it is part of the ensemble rows' and the students' identity.
    """

    members: list[Annotated[int, Field(ge=1, le=1024)]]
    where: list[dict[str, Any]] = []  # grid points that get members: like `exclude:` entries
    epochs_scale: float = Field(1.0, gt=0, le=1000)
    weight_decay_scale: float = Field(1.0, ge=0, le=1000)
    combine: Literal["probs", "logits"] = "probs"
    resources: ResourcesSpec | None = None  # of an ensemble evaluation, a teacher's sampling (one process); default: one trial worker's

    @field_validator("members", mode="before")
    @classmethod
    def _axis(cls, value: Any):
        return as_axis(value)

    @field_validator("resources")
    @classmethod
    def _one_process(cls, value: ResourcesSpec | None):
        if value is not None and value.workers != 1:
            raise ValueError(f"workers: an ensemble evaluation is one process (got {value.workers}); give its cpus and gpus")
        return value

    @field_validator("where")
    @classmethod
    def _points(cls, value: list[dict]):
        return _check_points(value)

    @property
    def max_members(self) -> int:
        return max(self.members)


class DistillSpec(Strict):
    """One distilled student: a teacher named by its grid point, a student config and a method.

    `teacher` holds axis values picking one grid point (an axis with a single value may be left
    out) and `members`: k > 1 is the ensemble of that point's first k members, 1 one model
    (self-distillation). `student` overrides axes of the teacher's point (default: the same).
    `token`: loss = (1 - kl_weight) CE(data) + kl_weight T^2 KL(teacher_T || student_T).
    `sequence`: the teacher samples a corpus of `synthetic_tokens` tokens (default: as many as
    the real ones, seeded, cached) and a fraction `synthetic_weight` of the student's training
    sequences are drawn from it.
    """

    teacher: dict[str, Any]
    student: dict[str, Any] = {}
    method: Literal["token", "sequence"] = "token"
    temperature: float = Field(1.0, gt=0, le=100)
    kl_weight: Fraction = 0.5  # token
    synthetic_weight: float = Field(0.5, gt=0, lt=1)  # sequence: w
    synthetic_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)  # sequence
    sample_temperature: float = Field(1.0, gt=0, le=100)  # sequence
    sample_seed: Seed = 0  # sequence

    @field_validator("teacher")
    @classmethod
    def _teacher(cls, value: dict):
        for key in value:
            if key not in (*POINT_AXES, "members"):
                raise ValueError(f"{key!r} is not an axis or `members`{closest(key, (*POINT_AXES, 'members'))}")
        members = value.get("members", 1)
        if not isinstance(members, int) or isinstance(members, bool) or not 1 <= members <= 1024:
            raise ValueError(f"members must be an integer between 1 and 1024 (got {members!r})")
        return value

    @field_validator("student")
    @classmethod
    def _student(cls, value: dict):
        _check_points([value])
        for key, v in value.items():
            if isinstance(v, list):
                raise ValueError(f"{key}: one value per student, not a list")
        return value

    @property
    def teacher_members(self) -> int:
        return int(self.teacher.get("members", 1))


class SweepSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=MAX_NAME)
    trainer: str
    model: list[str | dict[str, Any]]
    data: DataSpec
    epochs: list[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]] | None = None  # required unless searched
    lr: list[Annotated[float, Field(gt=0, le=1e6)]] | None = None  # required unless searched; past any sane one: divergence tests use 1e4
    weight_decay: list[Annotated[float, Field(ge=0, le=100)]] | None = None  # [0.0] unless searched
    seed: list[Seed] = [0]
    include: list[dict[str, Any]] = []
    exclude: list[dict[str, Any]] = []
    train: TrainGrid = TrainGrid()
    resources: ResourcesSpec = ResourcesSpec()
    fault_tolerance: FaultToleranceSpec = FaultToleranceSpec()
    results: str | None = None  # default: results/<name>
    keep_weights: bool = True  # every lm trial's final model in Hugging Face format under RESULTS/models/ (members and teachers always)
    tracking: TrackingSpec = TrackingSpec()
    ensemble: EnsembleSpec | None = None
    distill: list[DistillSpec] = []
    search: SearchSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _adaptive_epochs(cls, data: Any):
        """`epochs: {max: N, stop: {...}}` is the epochs axis [N] and `train.stop` (stopping.py)."""
        if not isinstance(data, dict) or not isinstance(data.get("epochs"), dict):
            return data
        epochs, stop = epochs_section(data["epochs"])
        try:
            StopSpec.model_validate(stop)
        except ValidationError as err:
            raise ValueError(f"epochs.stop.{describe_error(err, StopSpec)}") from None
        if data.get("trainer") != "lm":
            raise ValueError("epochs.stop: the adaptive stop is built for trainer lm")
        train = data.get("train", {})
        return {**data, "epochs": epochs, "train": {**train, "stop": stop}} if isinstance(train, dict) else data

    @field_validator("distill", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any):
        return [value] if isinstance(value, dict) else value

    @field_validator("model", "epochs", "lr", "weight_decay", "seed", mode="before")
    @classmethod
    def _axis(cls, value: Any):
        return None if value is None else as_axis(value)

    @field_validator("trainer")
    @classmethod
    def _trainer(cls, value: str):
        if value not in TRAINER_NAMES:
            raise ValueError(f"unknown trainer {value!r}{closest(value, TRAINER_NAMES)}; choose one of {', '.join(TRAINER_NAMES)}")
        return value

    @field_validator("model")
    @classmethod
    def _models(cls, value: list):
        for i, m in enumerate(value):
            if isinstance(m, str) and m not in PRESETS:
                raise ValueError(f"unknown model preset {m!r}{closest(m, PRESETS)}; presets: {', '.join(PRESETS)}")
            if isinstance(m, dict):
                try:
                    shape_from_dict(m)
                except ValueError as err:  # names the size: `model[1].hidden_size: ...`
                    raise ValueError(f"[{i}]{'' if str(err).startswith('.') else ': '}{err}") from None
        return value

    @field_validator("include", "exclude")
    @classmethod
    def _points(cls, value: list[dict]):
        return _check_points(value)

    @model_validator(mode="after")
    def _one_process_measures(self):
        """Diagnostics and memorisation read the whole model in one process: a multi-worker trial's
        is replicated or sharded over Ray Train's workers."""
        for name in ("diagnostics", "memorisation_samples"):
            if self.resources.workers > 1 and getattr(self.train, name):
                raise ValueError(f"train.{name} needs a one-process trial; use resources.workers: 1 or turn it off")
        return self

    @model_validator(mode="after")
    def _trainer_fits(self):
        is_linreg = self.trainer == "linreg"
        for m in self.model:
            shape = model_shape(m)
            if is_linreg != isinstance(shape, LinregShape):
                want = "{dims: N}" if is_linreg else "a Llama preset or {hidden_size, num_layers, num_heads, intermediate_size}"
                raise ValueError(f"model {m!r} does not fit trainer {self.trainer}: give {want}")
        if is_linreg != (self.data.source == "gaussian"):
            raise ValueError(
                "trainer linreg needs data.source gaussian" if is_linreg
                else "data.source gaussian is for trainer linreg; the lm trainer needs synthetic, files, hub or tokens"
            )
        if self.trainer != "lm" and self.train.memorisation_samples:
            raise ValueError("train.memorisation_samples needs trainer lm (a model that generates text)")
        if self.trainer != "lm" and (self.ensemble is not None or self.distill):
            raise ValueError(f"ensemble: and distill: need trainer lm (models to average), not {self.trainer}")
        return self

    @model_validator(mode="after")
    def _search_fits(self):
        searched = set(self.search.axes) if self.search else set()
        for axis in searched - set(SEARCHABLE):
            cells = " (it makes the cells: give it as a grid value or list)" if axis in AXES else ""
            raise ValueError(f"search.axes.{axis}: not a searchable axis{closest(axis, SEARCHABLE)}{cells}; searchable: {', '.join(SEARCHABLE)}")
        for axis, default in (("epochs", None), ("lr", None), ("weight_decay", [0.0])):
            if axis in searched and getattr(self, axis) is not None:
                raise ValueError(f"{axis}: searched by search.axes.{axis}; remove `{axis}:` here (the ladder gives its values)")
            if axis not in searched and getattr(self, axis) is None:
                if default is None:
                    raise ValueError(f"{axis}: required field is missing (or search it: search.axes.{axis})")
                object.__setattr__(self, axis, default)  # frozen: the default, set once while validating
        for axis in searched & set(EXTRA_AXES):
            if len(self.values(axis)) > 1:
                where = "data.order" if axis == "data_order" else f"train.{axis}"
                raise ValueError(f"{where}: a grid list and a ladder in search.axes.{axis}; keep one of them")
        for i, point in enumerate(self.include + self.exclude):
            for axis in searched & set(point):
                which = f"include[{i}]" if i < len(self.include) else f"exclude[{i - len(self.include)}]"
                raise ValueError(f"{which}.{axis}: searched by search.axes.{axis}; select cells by the other axes")
        if self.search:
            object.__setattr__(self, "search", _typed_search(self, self.search))
        return self

    def values(self, axis: str) -> list:
        """The grid's values on an axis (one value for an axis that does not vary)."""
        if axis == "unique_tokens":
            return self.data.unique_tokens
        if axis == "data_order":
            return self.data.order
        if axis in TRAIN_AXES:
            return getattr(self.train, axis)
        return getattr(self, axis)

    @property
    def base_train(self) -> TrainSpec:
        """The trial's `train` at the first value of every train axis."""
        return TrainSpec(**{name: (value[0] if name in TRAIN_AXES else value) for name, value in self.train})

    @property
    def results_dir(self) -> str:
        return self.results or f"results/{self.name}"


def _typed_search(spec: SweepSpec, search: SearchSpec) -> SearchSpec:
    """The ladders typed by the axes' own checks and sorted (checked monotone); the start on them."""
    ladders = {axis: monotone(f"search.axes.{axis}", typed_axis(spec, axis, ladder, f"search.axes.{axis}")) for axis, ladder in search.axes.items()}
    start: dict[str, Any] = {}
    for axis, value in search.start.items():
        if axis != "from_smaller" and axis not in ladders:
            raise ValueError(f"search.start.{axis}: not a searched axis; start values are for {', '.join(ladders)}")
        start[axis] = bool(value) if axis == "from_smaller" else on_ladder(ladders[axis], typed_axis(spec, axis, [value], f"search.start.{axis}")[0])
        if start[axis] is None:
            shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in ladders[axis])
            raise ValueError(f"search.start.{axis}: {value} is not on its ladder [{shown}]; start at one of its values")
    return search.model_copy(update={"axes": ladders, "start": start})


def typed_axis(spec: SweepSpec, axis: str, values: list, where: str) -> list:
    """`values` validated and typed as values of `axis` by the spec's own validators."""
    raw = spec.model_dump(mode="json", exclude={"search", "include", "exclude", "ensemble", "distill"})
    raw |= {"epochs": raw["epochs"] or [1], "lr": raw["lr"] or [1.0], "weight_decay": raw["weight_decay"] or [0.0]}
    raw = raw_with(raw, axis, values)
    try:
        typed = SweepSpec.model_validate(raw)
        for value in typed.values(axis) if axis in TRAIN_AXES else ():  # with the other train fields, too
            TrainSpec.model_validate(typed.base_train.model_dump() | {axis: value})
        return typed.values(axis)
    except ValidationError as err:
        loc, _, message = format_error(err.errors()[0], schema_of(SweepSpec)).partition(": ")
        index = loc[loc.index("["):] if "[" in loc else ""
        raise ValueError(f"{where}{index}: {message}") from None


def raw_with(raw: dict[str, Any], axis: str, values: Any) -> dict[str, Any]:
    """A raw (dumped) spec with `axis` set to `values` where the axis lives: top level, `data:` or `train:`."""
    if axis == "unique_tokens":
        return raw | {"data": raw["data"] | {"unique_tokens": values}}
    if axis == "data_order":
        return raw | {"data": raw["data"] | {"order": values}}
    if axis in TRAIN_AXES:
        return raw | {"train": raw["train"] | {axis: values}}
    return raw | {axis: values}


def _check_points(value: list[dict]) -> list[dict]:
    for i, point in enumerate(value):
        for key in point:
            if key not in POINT_AXES:
                raise ValueError(f"[{i}]: {key!r} is not an axis{closest(key, POINT_AXES)}; axes: {', '.join(AXES)}, the train fields, data_order")
    return value


def shape_from_dict(sizes: dict[str, Any]) -> ModelShape:
    """A shape from explicit sizes, validated by the shape itself (strict types, ranges); a
    `ValueError` names the size (`.hidden_size: must be between 1 and 131072 (got 0)`)."""
    known = set(LlamaShape.__dataclass_fields__) | set(LinregShape.__dataclass_fields__)
    for key in sizes:
        if key not in known:
            raise ValueError(f"unknown model size {key!r}{closest(key, known)}")
    kind = LinregShape if "dims" in sizes else LlamaShape
    try:
        return kind(**sizes)
    except ValidationError as err:
        message = format_error(err.errors()[0], schema_of(kind))
        raise ValueError(f".{message}" if err.errors()[0]["loc"] else message) from None

def model_shape(model: str | dict[str, Any]) -> ModelShape:
    return PRESETS[model]() if isinstance(model, str) else shape_from_dict(model)


def model_label(model: str | dict[str, Any]) -> str:
    """The `model` column: the preset name, or the explicit sizes written compactly."""
    if isinstance(model, str):
        return model
    return ",".join(f"{k}={v}" for k, v in sorted(model.items()))


def parse_spec(raw: Any, *, source: str = "spec") -> SweepSpec:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: the spec must be a YAML mapping (name:, trainer:, model:, ...)")
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise UserError(f"{source}: {describe_error(err, SweepSpec)}") from None


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: spec file not found; pass the path of a sweep YAML such as sweeps/quickstart.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise UserError(f"{path}: YAML syntax error{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read the spec ({err.__class__.__name__}); check the file") from None
    return parse_spec(raw, source=str(path))

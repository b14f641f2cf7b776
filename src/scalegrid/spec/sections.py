"""The spec's sections beside the grid's axes: what a trial reserves (`resources`), how it survives
faults (`fault_tolerance`), where it is tracked (`tracking`), the adaptive-epoch runs beside the
grid (`adaptive`), and the stages after the train stage (`ensemble`, `distill`, `evaluate`). None
of `resources`, `fault_tolerance`, `tracking` or `evaluate` is in a trial id.
Selectors (`adaptive.where`, `ensemble.where`, a student's `teacher` and `student`) are kept as written here and
typed by the axes' own checks in `resolve.py`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from scalegrid.spec.axes import POINT_AXES, Epochs, check_axes_named
from scalegrid.spec.stopping import StopSpec
from scalegrid.spec.strict import MAX_TOKENS, Fraction, Seed, Steps, Strict, WrittenSelector, as_axis, closest


RAY_UNIT = 1e-4  # Ray's smallest share of a resource: a reservation below it is refused by Ray itself


class ResourcesSpec(Strict):
    cpus: float = Field(1.0, ge=RAY_UNIT, le=4096)
    gpus: float = Field(0.0, ge=0, le=1024)
    gpu_memory_gb: float | None = Field(None, ge=2, le=100_000)  # memory of one GPU: `plan` checks every trial fits (default: detected)
    # A trial on several processes: Ray Train workers (`orchestrator/execution/train_workers.py`); `cpus`/`gpus` are the one-worker form.
    workers: int = Field(1, ge=1, le=4096)  # > 1: the trial is a TorchTrainer of this many workers (DDP, or FSDP2)
    gpus_per_worker: float | None = Field(None, ge=0, le=1024)  # default: `gpus`
    cpus_per_worker: float | None = Field(None, ge=RAY_UNIT, le=4096)  # default: `cpus`

    @field_validator("gpus", "gpus_per_worker")
    @classmethod
    def _a_share_ray_can_hold(cls, value: float | None):
        """Ray holds GPUs in units of 0.0001: a share of one GPU, or whole GPUs."""
        if value and value < RAY_UNIT:
            raise ValueError(f"must be 0 or at least {RAY_UNIT:g}, Ray's smallest share (got {value:g})")
        if value and value > 1 and value != int(value):
            raise ValueError(f"a share of one GPU (at most 1) or whole GPUs (got {value:g})")
        return value

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


def one_process(value: ResourcesSpec | None, what: str) -> ResourcesSpec | None:
    """The resources of a stage's Ray task: one process, never Ray Train workers."""
    if value is not None and value.workers != 1:
        raise ValueError(f"workers: {what} is one process (got {value.workers}); give its cpus and gpus")
    return value


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
    """Ensembles of independently trained members ("Pre-training under infinite compute", Kim et al. 2025).

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
    where: list[WrittenSelector] = []  # grid points that get members: like `exclude:` entries
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
        return one_process(value, "an ensemble evaluation")

    @field_validator("where")
    @classmethod
    def _points(cls, value: list[WrittenSelector]):
        return check_axes_named(value)

    @property
    def max_members(self) -> int:
        return max(self.members)


class AdaptiveSpec(Strict):
    """Adaptive-epoch runs beside the fixed ones (seeds/000's proposal, measured against the grid).

    At every grid point matching `where` (all when empty; a searched spec: each cell's optimum), one
    run per `stop` rule of at most `max` epochs (what `epochs: {max: N, stop: ...}` makes, for the
    whole spec), and the fixed runs of `epochs` at the same point, which train as one `wsd` trunk:
    the report sets each adaptive run against them. They are train-stage trials like any other
    (their ids are those of the same points written as a grid); the spec's `train.schedule` must be
    `wsd`."""

    stop: list[StopSpec] = Field(min_length=1)
    max: Epochs
    epochs: list[Epochs] = []  # the fixed epoch counts to compare with, trained at each point too
    where: list[WrittenSelector] = []  # grid points (or cells) that get them: like `exclude:` entries

    @field_validator("stop", "epochs", mode="before")
    @classmethod
    def _axis(cls, value: Any):
        return as_axis(value)

    @field_validator("where")
    @classmethod
    def _points(cls, value: list[WrittenSelector]):
        return check_axes_named(value)


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

    teacher: WrittenSelector
    student: WrittenSelector = {}
    method: Literal["token", "sequence"] = "token"
    temperature: float = Field(1.0, gt=0, le=100)
    kl_weight: Fraction = 0.5  # token
    synthetic_weight: float = Field(0.5, gt=0, lt=1)  # sequence: w
    synthetic_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)  # sequence
    sample_temperature: float = Field(1.0, gt=0, le=100)  # sequence
    sample_seed: Seed = 0  # sequence

    @field_validator("teacher")
    @classmethod
    def _teacher(cls, value: WrittenSelector):
        for key in value:
            if key not in (*POINT_AXES, "members"):
                raise ValueError(f"{key!r} is not an axis or `members`{closest(key, (*POINT_AXES, 'members'))}")
        members = value.get("members", 1)
        if not isinstance(members, int) or isinstance(members, bool) or not 1 <= members <= 1024:
            raise ValueError(f"members must be an integer between 1 and 1024 (got {members!r})")
        return value

    @field_validator("student")
    @classmethod
    def _student(cls, value: WrittenSelector):
        check_axes_named([value])
        for key, v in value.items():
            if isinstance(v, list):
                raise ValueError(f"{key}: one value per student, not a list")
        return value

    @property
    def teacher_members(self) -> int:
        return int(self.teacher.get("members", 1))


EVAL_WHICH = ("best", "trials", "ensembles", "students")  # what `evaluate.which` may name
MAX_EXAMPLES = 10**9


class EvaluateSpec(Strict):
    """Downstream evaluation with lm-evaluation-harness, after the other stages.

    `which` models are scored on `tasks`: `best` (each cell's best model: the searched optimum, or
    the lowest validation loss among a grid cell's points: the axes a search could tune varied, the
    others fixed), `trials` (every trained trial), `ensembles` (each ensemble of k > 1 members that
    `ensemble.members` lists) and `students`. Not in any trial id: an evaluation is named by its own
    identity (the model, the task and its version, `num_fewshot`, `limit`, the harness's version),
    so a re-run evaluates nothing twice and a new task evaluates only what is missing. A task is a
    name of the harness's task list, of a task directory in `include` (lm-evaluation-harness YAML;
    relative `dataset_kwargs.data_files` there are relative to the YAML file), or `synthetic_facts`:
    scalegrid's own multiple-choice task made from a synthetic corpus's fact table.
    """

    tasks: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=lambda: ["arc_easy", "piqa", "sciq"], min_length=1, max_length=1000,
    )
    num_fewshot: int = Field(0, ge=0, le=1000)
    limit: int | None = Field(None, ge=1, le=MAX_EXAMPLES)  # the first `limit` examples of each task; None: all
    batch_size: int = Field(32, ge=1, le=65536)  # sequences per forward pass (not in the identity: it changes no score)
    which: list[Literal["best", "trials", "ensembles", "students"]] = Field(
        default_factory=lambda: ["best", "ensembles", "students"], min_length=1,
    )
    include: list[Annotated[str, Field(min_length=1, max_length=4096)]] = []  # directories of local task YAMLs
    resources: ResourcesSpec | None = None  # of one evaluation (one process); default: one trial worker's

    @field_validator("tasks", "which", "include", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any):
        return [value] if isinstance(value, str) else value

    @field_validator("tasks", "which")
    @classmethod
    def _once_each(cls, value: list[str]):
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed twice; name each once")
        return value

    @field_validator("resources")
    @classmethod
    def _one_process(cls, value: ResourcesSpec | None):
        return one_process(value, "an evaluation")

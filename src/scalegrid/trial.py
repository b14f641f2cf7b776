"""What a trial is: its identity (`TrialConfig`), where it runs (`Trial`), what it returns (`TrialResult`).

A trainer is a plain function `train(trial, report) -> TrialResult`. It knows nothing of grids,
Ray or the results store: the orchestrator builds the `Trial`, calls the trainer inside a Ray Tune
worker, and writes the returned result (and the curve rows it reported) to Parquet.

`TrialConfig` holds every field that changes a result, typed all the way down (the model's shape,
the data's identity, a student's teacher), and its canonical JSON is hashed into the `trial_id`
(`grid.py`). `Trial` adds what does not change a result: names, where results live (one
`ResultsLayout`, resolved once), fault tolerance.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Annotated, Any, Callable, Literal, Protocol, Union

from pydantic import BaseModel, ConfigDict, Field

from scalegrid.shapes import LinregShape, LlamaShape
from scalegrid.spec import (
    SHUFFLE_SEED,
    FaultToleranceSpec,
    GaussianDataSpec,
    ResourcesSpec,
    DataSpec,
    SyntheticCorpusSpec,
    TrainSpec,
    ValidationSpec,
    hashed_fields,
    hashed_unless_default,
)
from scalegrid.payloads import JsonObject

Scalar = str | int | float | bool | None  # a hyperparameter's value as trackers take it
from scalegrid.storage import ResultsLayout
from scalegrid.storage.layout import CheckpointDir

# --- the status vocabulary ------------------------------------------------------------------------


class Status(str, Enum):
    """A run row's `status`. A trial is done when COMPLETED or DIVERGED (a NaN loss is a result)."""

    COMPLETED = "COMPLETED"
    DIVERGED = "DIVERGED"
    FAILED = "FAILED"


DONE_STATUSES = (Status.COMPLETED.value, Status.DIVERGED.value)  # plain strings: DataFrame filters
STATE_OF_STATUS = {"COMPLETED": "done", "DIVERGED": "diverged", "FAILED": "failed"}  # plan/status tables; else "pending"


class Stage(str, Enum):
    """A run row's `stage`: trained on the grid, an ensemble of trained members, or a distilled student."""

    TRAIN = "train"
    ENSEMBLE = "ensemble"
    DISTILL = "distill"


# --- typed identities ------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ByteTokenizerId(_Frozen):
    kind: Literal["byte"] = "byte"
    vocab_size: int


class BpeTokenizerId(_Frozen):
    kind: Literal["bpe"] = "bpe"
    vocab_size: int
    recipe: str


class HfTokenizerId(_Frozen):
    kind: Literal["hf"] = "hf"
    vocab_size: int
    sha256: str


TokenizerId = Annotated[Union[ByteTokenizerId, BpeTokenizerId, HfTokenizerId], Field(discriminator="kind")]


class FileId(_Frozen):
    sha256: str
    format: str


class _CorpusData(_Frozen):
    tokenizer: TokenizerId
    validation: ValidationSpec
    recipe: str  # data/corpus/build.py DATA_VERSION
    vocab_size: int
    # The training documents' order: a seed permutes the whole corpus, None keeps the stream's order.
    shuffle_seed: int | None = hashed_unless_default(SHUFFLE_SEED)


class SyntheticData(_CorpusData):
    source: Literal["synthetic"] = "synthetic"
    generator: str
    synthetic: SyntheticCorpusSpec


class FilesData(_CorpusData):
    source: Literal["files"] = "files"
    files: tuple[FileId, ...]
    text_field: str


class HubData(_CorpusData):
    source: Literal["hub"] = "hub"
    hub: str
    hub_config: str | None
    hub_split: str
    revision: str | None  # the commit read (resolved when planned)
    text_field: str
    hub_files: tuple[str, ...] = hashed_unless_default(())  # the data files streamed (globs), () for the split's all


class TokensData(_Frozen):
    """Token ids tokenized elsewhere (nanoGPT's .bin, .npy, Parquet/Arrow `input_ids`), in file order."""

    source: Literal["tokens"] = "tokens"
    files: tuple[FileId, ...]
    vocab_size: int  # part of the cache key too: the meta of the cache tells the model its vocabulary
    validation: ValidationSpec
    recipe: str


class GaussianData(GaussianDataSpec):
    """Generated linear-regression data: the spec's fields, the generator's version."""

    source: Literal["gaussian"] = "gaussian"
    generator: str
    vocab_size: int = 0


DataConfig = Annotated[Union[SyntheticData, FilesData, HubData, TokensData, GaussianData], Field(discriminator="source")]


@dataclass(frozen=True)
class DataIdentity:
    """A corpus' identity (`config`, part of every trial id) and `key`, the name of its token cache."""

    key: str
    config: Any  # DataConfig

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def fields(self) -> JsonObject:
        return self.fields_of(self.config)

    @staticmethod
    def fields_of(config) -> JsonObject:
        """What `key` hashes: the hashed fields (`strict.hashed_fields`), without the vocabulary size
        where it follows from the tokenizer (token arrays name theirs)."""
        fields = hashed_fields(config)
        if not isinstance(config, TokensData):
            fields.pop("vocab_size", None)
        return fields


# One evaluation of a trial, as its trainer reports it: step, epoch, tokens_seen, losses, lr,
# wall_s, and at epoch ends the gradient diagnostics (`store.CurveRow` names every column).
EvalRow = dict[str, int | float | list[float] | None]

Combine = Literal["probs", "logits"]  # spec.EnsembleSpec.combine: how members' predictions are averaged


class TokenDistill(_Frozen):
    """loss = (1 - kl_weight) CE(data) + kl_weight T^2 KL(teacher_T || student_T)."""

    method: Literal["token"] = "token"
    teacher: tuple[str, ...]  # the teacher's members' trial ids
    temperature: float
    kl_weight: float
    combine: Combine = hashed_unless_default("probs")  # how the teacher's members are averaged (k > 1)


class SequenceDistill(_Frozen):
    """A fraction `synthetic_weight` of the student's sequences come from the teacher's corpus."""

    method: Literal["sequence"] = "sequence"
    teacher: tuple[str, ...]
    synthetic_weight: float
    corpus: str  # the teacher corpus' id (RESULTS/cache/teacher/<corpus>/)
    combine: Combine = hashed_unless_default("probs")  # how the teacher's members were averaged (k > 1)


CORPUS_VERSION = "teacher-corpus-v1"  # in a teacher corpus' id: bump when what a request generates changes


class TeacherCorpusRequest(_Frozen):
    """What a sequence-level student's teacher samples: `sequences` of `seq_len` tokens, seeded."""

    teacher: tuple[str, ...]  # the members' trial ids
    sequences: int
    seq_len: int
    temperature: float
    seed: int
    combine: Combine = hashed_unless_default("probs")  # the members' average: of probabilities or of logits


DistillConfig = Annotated[Union[TokenDistill, SequenceDistill], Field(discriminator="method")]


class TrialConfig(_Frozen):
    """Every field that changes a trial's result; its canonical JSON is hashed into `trial_id`.

    `model` holds the resolved shape (sizes, not the preset's name), `data` the identity of the
    tokenized corpus (content hash and vocabulary) or of the generated data, so two specs that
    describe the same experiment in different words share one trial.
    """

    trainer: str
    model: Union[LlamaShape, LinregShape]
    data: DataConfig
    unique_tokens: int
    epochs: int
    lr: float
    weight_decay: float
    seed: int
    train: TrainSpec
    # Left out of the hash at their defaults: member 0 of a grid point is the grid point's own
    # trial, and adding ensembles or students leaves every existing id as it was.
    member: int = hashed_unless_default(0)  # ensemble member index: its seed draws the initialisation and data order
    distill: DistillConfig | None = hashed_unless_default(None)  # a student's teacher and method (`trainers/distill.py`)
    # The order each epoch visits the training data in: `shuffled` (drawn from the seed and the
    # epoch; what every trial did before this field existed) or `sequential` (the corpus' order).
    data_order: Literal["shuffled", "sequential"] = hashed_unless_default("shuffled")

    @property
    def member_seed(self) -> int:
        """The seed of initialisation and data order: `seed` for member 0, a hash of (seed, member) else."""
        if self.member == 0:
            return self.seed
        digest = hashlib.sha256(f"scalegrid-member:{self.seed}:{self.member}".encode()).digest()
        return int.from_bytes(digest[:4], "little")

    @property
    def vocab_size(self) -> int:
        return self.data.vocab_size

    @property
    def tokens_seen(self) -> int:
        """Tokens (samples, for linreg) the trial will train on: epochs x unique_tokens."""
        return self.epochs * self.unique_tokens

    @property
    def num_params(self) -> int:
        return self.model.num_params(self.vocab_size)

    @property
    def num_params_nonembed(self) -> int:
        return self.model.num_params(self.vocab_size, non_embedding=True)

    @property
    def estimated_flops(self) -> float:
        return float(self.model.flops_per_token(self.vocab_size, self.train.seq_len)) * self.tokens_seen


class Trial(BaseModel):
    """A trial as scheduled: its identity and config plus where things live (not hashed)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    trial_id: str
    sweep: str
    model_label: str  # the `model` column: preset name or compact sizes
    config: TrialConfig
    results: ResultsLayout  # the results store, parsed once
    data_key: str | None = None  # the token cache of this trial's corpus (lm); None for generated data
    data_spec: DataSpec | None = None  # how to build that cache again, should it vanish or be damaged mid-sweep
    fault_tolerance: FaultToleranceSpec = FaultToleranceSpec()  # checkpoints, retries, leases
    resources: ResourcesSpec = ResourcesSpec()  # what it reserves: one process, or `workers` Ray Train workers
    save_model: bool = False  # keep the final weights in RESULTS/models/<trial_id>/
    stage: Stage = Stage.TRAIN

    @property
    def checkpoint_dir(self) -> CheckpointDir:
        """Where this trial's checkpoints live, on any results store."""
        return self.results.checkpoints(self.trial_id)

    def hyperparameters(self) -> dict[str, Scalar]:
        """The trial as trackers and model cards show it: flat names, plain values."""
        c = self.config
        params: dict[str, Scalar] = {
            "trial_id": self.trial_id, "sweep": self.sweep, "stage": Stage(self.stage).value, "trainer": c.trainer,
            "model": self.model_label, "params": c.num_params, "params_nonembed": c.num_params_nonembed,
            "unique_tokens": c.unique_tokens, "epochs": c.epochs, "lr": c.lr, "weight_decay": c.weight_decay,
            "seed": c.seed, "member": c.member, "tokens_seen": c.tokens_seen, "flops": c.estimated_flops,
            **{f"train.{name}": value for name, value in c.train.model_dump(mode="json").items()},
        }
        if c.distill is not None:
            params |= {"teacher_members": len(c.distill.teacher), "distill_method": c.distill.method, "combine": c.distill.combine}
        return params


@dataclass
class TrialResult:
    """What a trainer returns. `status` is COMPLETED, or DIVERGED on a NaN / infinite loss."""

    status: Status
    params: int
    params_nonembed: int
    tokens_seen: int
    flops: float
    val_loss: float = math.nan
    best_val_loss: float = math.nan
    train_loss: float = math.nan
    error: str | None = None
    device: str = "cpu"  # what it computed on: "cpu", or the GPU's name (`trainers/devices.device_name`)
    curves: list[EvalRow] = field(default_factory=list)  # one row per evaluation (CURVE_COLUMNS)
    steps: int = 0  # optimizer steps (SGD steps for linreg)
    resumed_from_step: int = 0  # the checkpoint's step this attempt started from (0: from scratch)
    world_size: int = 1  # processes that trained it: Ray Train's workers
    stopped_epoch: int | None = None  # an adaptive stop: the epoch after which it entered the decay
    memorised_train: float | None = None  # train.memorisation_samples: generated n-grams found in the training data
    memorised_val: float | None = None  # ... after validation prompts

    @classmethod
    def failed(cls, config: TrialConfig, error: str) -> TrialResult:
        """The result of a trial whose trainer raised: sizes from the config, no losses (and the
        device unknown: the trainer did not say)."""
        return cls(Status.FAILED, config.num_params, config.num_params_nonembed, 0, 0.0, error=error, device="unknown")

    def with_status(self, status: Status, error: str | None) -> TrialResult:
        return replace(self, status=status, error=error)


@dataclass
class TaskScores:
    """What one downstream task scored for one model (`trainers/harness.py`): every metric the
    harness reported with its standard error (NaN when it gives none), or the error it raised."""

    task: str
    version: str  # the task's version as the harness reported it
    metrics: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> (value, stderr)
    samples: int = 0  # examples scored
    truncated: int = 0  # loglikelihood requests whose context was cut from the left to fit `max_length`
    max_length: int = 0  # the model's context, in tokens
    seconds: float = 0.0
    device: str = "cpu"
    error: str | None = None


class Report(Protocol):
    """Called by a trainer at every evaluation with one curve row; forwards live progress."""

    def __call__(self, row: EvalRow) -> None: ...


# One curve row per evaluation has at least these keys (`store.CurveRow` declares every column).
CURVE_COLUMNS = ("step", "epoch", "tokens_seen", "train_loss", "val_loss", "lr", "wall_s")

TrainerFn = Callable[[Trial, Report], TrialResult]

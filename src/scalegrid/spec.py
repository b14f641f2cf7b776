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
    train: {batch_size: 16, seq_len: 64}
    resources: {cpus: 1, gpus: 0}
    fault_tolerance: {checkpoint_every: 200, keep_checkpoints: 2, max_failures: 2, lease_expiry_s: 60}
    results: results/quickstart
    tracking: {wandb: {project: my-project}, mlflow: {}, tensorboard: true}   # not in trial ids
    ensemble: {members: [1, 2, 4], where: [{model: llama-50k}], combine: probs}   # K members per matching point
    distill:                          # students of a teacher: a grid point's ensemble of k, or one model
      - {teacher: {model: llama-50k, members: 4}, student: {model: llama-50k}, method: token}

Paths in a spec are relative to the current directory. Every error is raised as a one-line
`UserError` naming the field (`data.unique_tokens[1]`) and how to fix it.

Types are strict and every number has a range (`tests/test_spec_properties.py` holds both, for
every field of the schema): a boolean is never a number, an integer field takes integers only
(`2.0` and `"2"` are refused: integers here count things, and a float there is a slip worth
naming), a float field takes integers, floats and numbers written as text (`1e-3` is a string to
YAML 1.1), never NaN or infinity. A range names its ends in the error (`epochs[0]: must be between
1 and 100000 (got 0)`).
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from scalegrid.errors import UserError
from scalegrid.shapes import PRESETS, LinregShape, LlamaShape, ModelShape
from scalegrid.stopping import StopSpec, epochs_section

AXES = ("model", "unique_tokens", "epochs", "lr", "weight_decay", "seed")
TRAINER_NAMES = ("lm", "linreg")  # `trainers/__init__.py` maps each to its module


# Ranges: generous, but finite: a value past them is a slip (10**30 epochs trains forever; a seed
# past int64 cannot be written to its row), and every product of them fits int64.
SEED_MAX = 2**32 - 1  # every generator seeded from a spec (numpy, torch, Python) takes it
MAX_EPOCHS = 100_000
MAX_TOKENS = 10**13  # unique tokens, and any token count; x MAX_EPOCHS still fits int64
MAX_STEPS = 10**9  # step intervals (eval_every, checkpoint_every, ...)
MAX_NAME = 100  # a sweep's name is part of file names under RESULTS (255 bytes at most)

Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
Fraction = Annotated[float, Field(ge=0, le=1)]

_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class _Strict(BaseModel):
    """Every spec model: unknown keys refused, strict types (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _floats_written_as_text(cls, data: Any):
        """YAML 1.1 reads `1e-3` as a string: a float field (alone or in a list) takes it as a number."""
        if not isinstance(data, dict):
            return data
        floats = _float_fields(cls)
        return {key: _float_of_text(value) if key in floats else value for key, value in data.items()}


@functools.cache
def _float_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, info in model.model_fields.items() if _holds_float(info.annotation))


def _holds_float(annotation: Any) -> bool:
    """float, float | None, list[float], Annotated[float, ...], ... (not inside a dict or a model)."""
    if annotation is float:
        return True
    if typing.get_origin(annotation) is Annotated:
        return _holds_float(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is dict:
        return False
    return any(_holds_float(arg) for arg in typing.get_args(annotation))


def _float_of_text(value: Any) -> Any:
    if isinstance(value, list):
        return [_float_of_text(v) for v in value]
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)
    return value


# What a trial id covers (`grid.identity`): every field of the trial's config, except those
# declared with one of these. Declare every new field with the right one, or trial ids change.
def not_hashed(default: Any, **kwargs: Any) -> Any:
    """A field that changes how a trial runs, never its result (micro-batches, compilation):
    left out of every trial id."""
    return Field(default, json_schema_extra={"identity": "never"}, **kwargs)


def hashed_unless_default(default: Any, **kwargs: Any) -> Any:
    """A result-changing field added after trial ids existed: in the id only when it differs from
    its default, so every existing trial keeps its id."""
    return Field(default, json_schema_extra={"identity": "unless_default"}, **kwargs)


def hashed_fields(config: BaseModel) -> dict[str, Any]:
    """The fields of a config that an identity hashes, nested models included: all but those
    declared `not_hashed`, and those declared `hashed_unless_default` only when set."""
    dumped = config.model_dump(mode="json")
    fields = {}
    for name, info in type(config).model_fields.items():
        rule = (info.json_schema_extra or {}).get("identity")
        value = getattr(config, name)
        if rule == "never" or (rule == "unless_default" and value == info.default):
            continue
        fields[name] = hashed_fields(value) if isinstance(value, BaseModel) else dumped[name]
    return fields


class SyntheticCorpusSpec(_Strict):
    """The synthetic corpus of `trainers/synthetic.py`: entity-attribute facts in templated sentences."""

    documents: int = Field(4000, ge=10, le=10_000_000)
    entities: int = Field(400, ge=1, le=1_000_000)
    attributes: int = Field(6, ge=1, le=1000)
    values_per_attribute: int = Field(50, ge=2, le=100_000)
    filler_words: int = Field(1000, ge=10, le=1_000_000)
    zipf_exponent: float = Field(1.1, gt=0, le=10)
    facts_per_document: int = Field(6, ge=1, le=1000)
    redundancy: Fraction = 0.0  # fraction of documents that repeat/paraphrase another
    seed: Seed = 0


class GaussianDataSpec(_Strict):
    """Linear-regression data: x ~ N(0, H), H_ii ~ (i + spectrum_offset)^-spectrum_decay, y = <w*, x> + noise.

    w*_i ~ (i + spectrum_offset)^-target_decay, scaled so the signal <w*, x> has unit variance.
    The three fields after `seed` came later: at their defaults a trial keeps the id it had.
    """

    spectrum_decay: float = Field(1.5, gt=0, le=100)
    target_decay: float = Field(1.0, ge=0, le=100)  # w*_i ~ (i + offset)^-target_decay (source condition)
    noise: float = Field(0.1, ge=0, le=1e6)
    seed: Seed = 0
    spectrum_offset: float = hashed_unless_default(0.0, ge=0, le=1e6)  # i + offset, i = 1..d: flattens the top of the spectrum
    spectrum_scale: Literal["top", "trace"] = hashed_unless_default("top")  # H scaled so its top eigenvalue, or its trace, is 1
    data_per_seed: bool = hashed_unless_default(False)  # each trial seed draws its own samples (else: only its own order)


class TokenizerSpec(_Strict):
    kind: Literal["byte", "bpe", "hf"] = "byte"
    vocab_size: int | None = Field(None, ge=257, le=1 << 20)  # bpe only: 256 bytes + EOS at least
    path: str | None = None  # hf only: a local directory or a hub id

    @model_validator(mode="after")
    def _check(self):
        if self.kind == "hf" and not self.path:
            raise ValueError("a tokenizer of kind hf needs `path` (a local directory or hub id)")
        if self.kind != "hf" and self.path:
            raise ValueError(f"`path` is only for kind hf, not {self.kind}")
        if self.kind != "bpe" and self.vocab_size is not None:
            raise ValueError(f"`vocab_size` is only for kind bpe, not {self.kind}")
        return self


class ValidationSpec(_Strict):
    fraction: float = Field(0.05, gt=0, lt=1)  # of documents held out, chosen by a seeded hash
    max_tokens: int = Field(32768, ge=64, le=MAX_TOKENS)  # validation tokens used for val_loss


SHUFFLE_SEED = 0x5CA1E7  # the default order of a finite corpus' training documents (trainers/corpus)


class DataSpec(_Strict):
    """The corpus: documents (`synthetic`, `files`, `hub`) tokenized by `tokenizer`, token arrays
    (`tokens`), or generated regression data (`gaussian`). Read by `trainers/corpus/`."""

    source: Literal["synthetic", "files", "hub", "tokens", "gaussian"] = "synthetic"
    files: list[str] = []  # files and tokens: paths and globs
    format: Literal["auto", "text", "json", "parquet", "npy", "bin", "arrow"] = "auto"
    text_field: str = "text"
    hub: str | None = None
    hub_config: str | None = None
    hub_split: str = "train"
    hub_files: list[str] = []  # data files inside the hub repository (globs): stream a subset of it
    revision: str | None = None  # hub: a branch, tag or commit; resolved to its commit when planned
    # The training documents' order: a seed shuffles the whole corpus (every document is read
    # once); null keeps the stream's order and reads only as far as the largest budget needs.
    # Default: SHUFFLE_SEED for synthetic and files, null for hub (see the before-validator).
    shuffle_seed: Seed | None = None
    tokenize_cpus: int | None = Field(None, ge=1, le=1024)  # tokenizer processes; on a cluster, the CPUs of its Ray task
    vocab_size: int | None = Field(None, ge=2, le=2**32)  # tokens: the vocabulary the ids come from (uint32 ids)
    eos_id: int | None = Field(None, ge=0, le=2**32 - 1)  # tokens: the end-of-document id (teacher samples start from it)
    synthetic: SyntheticCorpusSpec = SyntheticCorpusSpec()
    gaussian: GaussianDataSpec = GaussianDataSpec()
    tokenizer: TokenizerSpec = TokenizerSpec()
    unique_tokens: list[Annotated[int, Field(ge=1, le=MAX_TOKENS)]]
    validation: ValidationSpec = ValidationSpec()

    @model_validator(mode="before")
    @classmethod
    def _default_order(cls, value: Any):
        if isinstance(value, dict) and "shuffle_seed" not in value:
            finite = value.get("source", "synthetic") in ("synthetic", "files")
            value = {**value, "shuffle_seed": SHUFFLE_SEED if finite else None}
        return value

    @field_validator("tokenizer", mode="before")
    @classmethod
    def _tokenizer_shorthand(cls, value: Any):
        if isinstance(value, str):  # `tokenizer: byte` / `bpe` / a path
            return {"kind": value} if value in ("byte", "bpe") else {"kind": "hf", "path": value}
        return value

    @field_validator("unique_tokens", mode="before")
    @classmethod
    def _axis(cls, value: Any):
        return _as_axis(value)

    @model_validator(mode="after")
    def _check_source(self):
        if self.source in ("files", "tokens") and not self.files:
            raise ValueError(f"source `{self.source}` needs `files: [path, ...]`")
        if self.source == "hub" and not self.hub:
            raise ValueError("source `hub` needs `hub: <dataset id>`")
        if self.source in ("gaussian", "tokens") and self.tokenizer != TokenizerSpec():
            raise ValueError(f"source `{self.source}` takes no tokenizer" + (" (its ids are already tokens)" if self.source == "tokens" else ""))
        if (self.source == "tokens") != (self.vocab_size is not None):
            raise ValueError("source `tokens` needs `vocab_size` (of the tokenizer that made the ids)"
                             if self.source == "tokens" else "`vocab_size` is for source tokens; a tokenizer's goes under `tokenizer:`")
        if self.eos_id is not None and (self.source != "tokens" or self.eos_id >= self.vocab_size):
            raise ValueError("`eos_id` is for source tokens, below its vocab_size")
        if self.source == "tokens" and self.shuffle_seed is not None:
            raise ValueError("source `tokens` is read in its order: leave out `shuffle_seed`")
        if self.shuffle_seed is None and self.tokenizer.kind == "bpe":
            raise ValueError(
                "a bpe tokenizer is trained on the whole training corpus, which shuffle_seed: null does not read; "
                "set shuffle_seed or use an hf tokenizer"
            )
        if self.hub_files and self.source != "hub":
            raise ValueError("`hub_files` is for source hub; local files go under `files:`")
        return self

    @property
    def max_unique_tokens(self) -> int:
        return max(self.unique_tokens)


class TrainSpec(_Strict):
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
    diagnostics: bool = not_hashed(False)  # per-epoch gradient statistics on a fixed probe set (trainers/diagnostics.py)
    stop: StopSpec | None = hashed_unless_default(None)  # an adaptive stop (stopping.py); written `epochs: {max: N, stop: {...}}`
    memorisation_samples: int = not_hashed(0, ge=0, le=65536)  # > 0: generated n-grams found in the training data, at the end (trainers/memorisation.py)
    memorisation_ngram: int = not_hashed(8, ge=1, le=1 << 19)  # tokens per n-gram of memorisation_samples
    probe_batches: int = not_hashed(8, ge=2, le=1024)  # diagnostics: probe batches of batch_size; each epoch costs that many forward-backwards more

    @field_validator("micro_batch_size", mode="before")
    @classmethod
    def _micro_batch(cls, value: Any):
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 20):
            raise ValueError(f"must be an integer between 1 and {1 << 20} or auto (got {value!r})")
        return value

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


class ResourcesSpec(_Strict):
    cpus: float = Field(1.0, gt=0, le=4096)
    gpus: float = Field(0.0, ge=0, le=1024)
    gpu_memory_gb: float | None = Field(None, gt=0, le=100_000)  # memory of one GPU: `plan` checks every trial fits (default: detected)


class FaultToleranceSpec(_Strict):
    """How a trial survives faults. Not part of any trial's identity: none of it changes a result."""

    checkpoint_every: Steps = 200  # lm optimizer steps between checkpoints
    keep_checkpoints: int = Field(2, ge=1, le=1000)  # the newest this many are kept per trial
    max_failures: int = Field(2, ge=0, le=100)  # retries of a raising (or lost) trial before its FAILED row
    lease_expiry_s: float = Field(60.0, gt=0, le=7 * 86400)  # a lease without a heartbeat this long is taken over


class WandbSpec(_Strict):
    """Weights & Biases, through Ray's `WandbLoggerCallback`: one W&B run per trial (run name = trial_id,
    group = the sweep's name)."""

    project: str = Field(min_length=1)
    entity: str | None = None
    mode: Literal["online", "offline"] | None = None  # default: $WANDB_MODE, else online
    dir: str | None = None  # W&B's local files; default: RESULTS/wandb (a results directory on this machine)


class MlflowSpec(_Strict):
    """MLflow, through Ray's `MLflowLoggerCallback`: one MLflow run per trial in one experiment."""

    tracking_uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else the file store RESULTS/mlruns
    experiment: str | None = None  # default: the sweep's name


class TrackingSpec(_Strict):
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


class EnsembleSpec(_Strict):
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

    @field_validator("members", mode="before")
    @classmethod
    def _axis(cls, value: Any):
        return _as_axis(value)

    @field_validator("where")
    @classmethod
    def _points(cls, value: list[dict]):
        return _check_points(value)

    @property
    def max_members(self) -> int:
        return max(self.members)


class DistillSpec(_Strict):
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
            if key not in (*AXES, "members"):
                raise ValueError(f"{key!r} is not an axis or `members`{_closest(key, (*AXES, 'members'))}")
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


class SweepSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=MAX_NAME)
    trainer: str
    model: list[str | dict[str, Any]]
    data: DataSpec
    epochs: list[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]]
    lr: list[Annotated[float, Field(gt=0, le=1e6)]]  # past any sane one: divergence tests use 1e4
    weight_decay: list[Annotated[float, Field(ge=0, le=100)]] = [0.0]
    seed: list[Seed] = [0]
    include: list[dict[str, Any]] = []
    exclude: list[dict[str, Any]] = []
    train: TrainSpec = TrainSpec()
    resources: ResourcesSpec = ResourcesSpec()
    fault_tolerance: FaultToleranceSpec = FaultToleranceSpec()
    results: str | None = None  # default: results/<name>
    tracking: TrackingSpec = TrackingSpec()
    ensemble: EnsembleSpec | None = None
    distill: list[DistillSpec] = []

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
        return _as_axis(value)

    @field_validator("trainer")
    @classmethod
    def _trainer(cls, value: str):
        if value not in TRAINER_NAMES:
            raise ValueError(f"unknown trainer {value!r}{_closest(value, TRAINER_NAMES)}; choose one of {', '.join(TRAINER_NAMES)}")
        return value

    @field_validator("model")
    @classmethod
    def _models(cls, value: list):
        for i, m in enumerate(value):
            if isinstance(m, str) and m not in PRESETS:
                raise ValueError(f"unknown model preset {m!r}{_closest(m, PRESETS)}; presets: {', '.join(PRESETS)}")
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

    @property
    def results_dir(self) -> str:
        return self.results or f"results/{self.name}"


def _as_axis(value: Any) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError("empty axis: give one value or a non-empty list")
    return values


def _check_points(value: list[dict]) -> list[dict]:
    for i, point in enumerate(value):
        for key in point:
            if key not in AXES:
                raise ValueError(f"[{i}]: {key!r} is not an axis{_closest(key, AXES)}; axes: {', '.join(AXES)}")
    return value


def _closest(name: str, choices) -> str:
    match = difflib.get_close_matches(str(name), list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def shape_from_dict(sizes: dict[str, Any]) -> ModelShape:
    """A shape from explicit sizes, validated by the shape itself (strict types, ranges); a
    `ValueError` names the size (`.hidden_size: must be between 1 and 131072 (got 0)`)."""
    known = set(LlamaShape.__dataclass_fields__) | set(LinregShape.__dataclass_fields__)
    for key in sizes:
        if key not in known:
            raise ValueError(f"unknown model size {key!r}{_closest(key, known)}")
    kind = LinregShape if "dims" in sizes else LlamaShape
    try:
        return kind(**sizes)
    except ValidationError as err:
        message = _format_error(err.errors()[0], _schema_of(kind))
        raise ValueError(f".{message}" if err.errors()[0]["loc"] else message) from None

def model_shape(model: str | dict[str, Any]) -> ModelShape:
    return PRESETS[model]() if isinstance(model, str) else shape_from_dict(model)


def model_label(model: str | dict[str, Any]) -> str:
    """The `model` column: the preset name, or the explicit sizes written compactly."""
    if isinstance(model, str):
        return model
    return ",".join(f"{k}={v}" for k, v in sorted(model.items()))


_UNION_TAGS = ("str", "int", "float", "bool")  # pydantic's names of a union's members in an error's loc
_RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _format_error(err: dict, schema: dict | None = None) -> str:
    """One pydantic error as `field.path: what is wrong (got value)`; a range error names both
    ends of the range, read from `schema` (the model's JSON schema)."""
    loc = ""
    for part in err["loc"]:
        if isinstance(part, int):
            loc += f"[{part}]"
        elif part not in _UNION_TAGS and not str(part).startswith(("function-", "dict[", "list[")):
            loc += f".{part}" if loc else str(part)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        parent_fields = err.get("ctx", {}).get("fields", ())
        return f"{loc}: unknown key{_closest(err['loc'][-1], parent_fields)}"
    if err["type"] == "missing":
        return f"{loc}: required field is missing"
    got = err.get("input")
    shown = "" if got is None or isinstance(got, (dict, list)) or "got" in message or repr(got) in message else f" (got {_short(got)})"
    if err["type"] in _RANGE_ERRORS and schema is not None:
        message, shown = f"must be {_range_text(_schema_at(schema, err['loc']))}", f" (got {_short(got)})"
    separator = "" if message.startswith("[") else ": "
    return f"{loc}{separator}{message}{shown}" if loc else message


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


@functools.cache
def _schema_of(model: type) -> dict:
    return TypeAdapter(model).json_schema()


def _schema_at(schema: dict, loc: tuple) -> dict:
    """The JSON schema node of the field at `loc` (list indices go to `items`)."""
    node = _resolved(schema, schema)
    for part in loc:
        if isinstance(part, int) and "items" in node:
            node = _resolved(node["items"], schema)
        elif isinstance(part, str) and part in node.get("properties", {}):
            node = _resolved(node["properties"][part], schema)
    return node


def _resolved(node: dict, schema: dict) -> dict:
    """Follow `$ref`s and pick the non-null branch of an `anyOf` (an optional field)."""
    for _ in range(10):
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        elif "anyOf" in node:
            node = next((n for n in node["anyOf"] if n.get("type") != "null"), node["anyOf"][0])
        else:
            break
    return node


def _range_text(node: dict) -> str:
    """`between 1 and 100000`, `> 0 and <= 100`, ... from a schema node's bounds."""
    def number(v):
        return str(v) if isinstance(v, int) else f"{v:g}"

    low = (">=", node["minimum"]) if "minimum" in node else (">", node["exclusiveMinimum"]) if "exclusiveMinimum" in node else None
    high = ("<=", node["maximum"]) if "maximum" in node else ("<", node["exclusiveMaximum"]) if "exclusiveMaximum" in node else None
    if low and high and low[0] == ">=" and high[0] == "<=":
        return f"between {number(low[1])} and {number(high[1])}"
    return " and ".join(f"{op} {number(v)}" for op, v in (bound for bound in (low, high) if bound))


def _known_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys at `loc`'s parent, for the closest-name hint of an unknown key."""
    fields = model.model_fields
    for part in loc[:-1]:
        if isinstance(part, int) or part not in fields:
            return list(fields)
        annotation = fields[part].annotation
        models = [a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not models:  # `X | None` counts as X
            return list(fields)
        fields = models[0].model_fields
    return list(fields)


def describe_error(err: ValidationError, model: type[BaseModel]) -> str:
    """A pydantic error of `model` as one line: `field.path: what is wrong (got value)`. An unknown
    key comes first: a misspelt required key is also reported as missing."""
    errors = err.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    if first["type"] == "extra_forbidden":
        first = {**first, "ctx": {"fields": _known_fields(model, first["loc"])}}
    return _format_error(first, _schema_of(model))


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

"""The sweep spec: a YAML file validated once into typed, frozen models.

    name: quickstart
    trainer: lm                       # lm | linreg
    model: [llama-50k, llama-200k]    # preset names and/or explicit shapes
    data:
      source: synthetic               # synthetic | files | hub | gaussian (linreg)
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
    ensemble: {members: [1, 2, 4], where: [{model: llama-50k}]}   # K members per matching point
    distill:                          # students of a teacher: a grid point's ensemble of k, or one model
      - {teacher: {model: llama-50k, members: 4}, student: {model: llama-50k}, method: token}

Paths in a spec are relative to the current directory. Every error is raised as a one-line
`UserError` naming the field (`data.unique_tokens[1]`) and how to fix it.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from scalegrid.errors import UserError
from scalegrid.shapes import PRESETS, LinregShape, LlamaShape, ModelShape

AXES = ("model", "unique_tokens", "epochs", "lr", "weight_decay", "seed")
TRAINER_NAMES = ("lm", "linreg")  # `trainers/__init__.py` maps each to its module


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class SyntheticCorpusSpec(_Strict):
    """The synthetic corpus of `trainers/synthetic.py`: entity-attribute facts in templated sentences."""

    documents: int = Field(4000, ge=10)
    entities: int = Field(400, ge=1)
    attributes: int = Field(6, ge=1)
    values_per_attribute: int = Field(50, ge=2)
    filler_words: int = Field(1000, ge=10)
    zipf_exponent: float = Field(1.1, gt=0)
    facts_per_document: int = Field(6, ge=1)
    redundancy: float = Field(0.0, ge=0, le=1)  # fraction of documents that repeat/paraphrase another
    seed: int = 0


class GaussianDataSpec(_Strict):
    """Linear-regression data: x ~ N(0, diag(i^-spectrum_decay)), y = <w*, x> + noise."""

    spectrum_decay: float = Field(1.5, gt=0)
    target_decay: float = Field(1.0, ge=0)  # w*_i ~ i^-target_decay (source condition)
    noise: float = Field(0.1, ge=0)
    seed: int = 0


class TokenizerSpec(_Strict):
    kind: Literal["byte", "bpe", "hf"] = "byte"
    vocab_size: int | None = Field(None, ge=64)  # bpe only
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
    max_tokens: int = Field(32768, ge=64)  # validation tokens used for val_loss


class DataSpec(_Strict):
    source: Literal["synthetic", "files", "hub", "gaussian"] = "synthetic"
    files: list[str] = []
    format: Literal["auto", "text", "json", "parquet"] = "auto"
    text_field: str = "text"
    hub: str | None = None
    hub_config: str | None = None
    hub_split: str = "train"
    revision: str | None = None
    synthetic: SyntheticCorpusSpec = SyntheticCorpusSpec()
    gaussian: GaussianDataSpec = GaussianDataSpec()
    tokenizer: TokenizerSpec = TokenizerSpec()
    unique_tokens: list[int]
    validation: ValidationSpec = ValidationSpec()

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

    @field_validator("unique_tokens")
    @classmethod
    def _positive(cls, value: list[int]):
        for v in value:
            if v < 1:
                raise ValueError(f"must be positive integers (got {v})")
        return value

    @model_validator(mode="after")
    def _check_source(self):
        if self.source == "files" and not self.files:
            raise ValueError("source `files` needs `files: [path, ...]`")
        if self.source == "hub" and not self.hub:
            raise ValueError("source `hub` needs `hub: <dataset id>`")
        if self.source == "gaussian" and self.tokenizer != TokenizerSpec():
            raise ValueError("source `gaussian` (linreg) takes no tokenizer")
        return self


class TrainSpec(_Strict):
    batch_size: int = Field(16, ge=1)  # sequences per optimizer step (samples for linreg)
    seq_len: int = Field(64, ge=2)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)  # of all optimizer steps
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.1, ge=0, le=1)  # lr at the end of the decay, relative to peak
    clip: float = Field(1.0, ge=0)  # gradient-norm clip; 0 turns it off
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    eval_every: int = Field(100, ge=1)  # optimizer steps between validation evals (and one at the end)
    log_every: int = Field(10, ge=1)  # steps between train-loss reads (each is a device sync)
    # Weight decay on the input embedding: the paper's recipe (Levanter's default mask) leaves it
    # out; scalegrid decayed it before this field existed (`trainers/model.param_groups`).
    decay_embeddings: bool = hashed_unless_default(True)
    # How a trial runs, never what it computes (float noise aside): in no trial id.
    micro_batch_size: int | Literal["auto"] = not_hashed("auto")  # sequences per forward/backward; auto: the largest that fits
    activation_checkpointing: bool = not_hashed(False)  # recompute each decoder layer in backward: less memory, ~1/3 more compute
    compile: bool | None = not_hashed(None)  # torch.compile each decoder layer; None: on a GPU, off on a CPU
    loss_chunk_tokens: int | None = not_hashed(None, ge=1)  # positions per lm-head + loss chunk; None: by vocab (memory.py)

    @field_validator("micro_batch_size", mode="before")
    @classmethod
    def _micro_batch(cls, value: Any):
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"must be a positive integer or auto (got {value!r})")
        return value

    @model_validator(mode="after")
    def _micro_batch_within_batch(self):
        if self.micro_batch_size != "auto" and self.micro_batch_size > self.batch_size:
            raise ValueError(
                f"micro_batch_size {self.micro_batch_size} is larger than batch_size {self.batch_size} "
                f"(the sequences of one optimizer step); use at most {self.batch_size}, or auto"
            )
        return self


class ResourcesSpec(_Strict):
    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)
    gpu_memory_gb: float | None = Field(None, gt=0)  # memory of one GPU: `plan` checks every trial fits (default: detected)


class FaultToleranceSpec(_Strict):
    """How a trial survives faults. Not part of any trial's identity: none of it changes a result."""

    checkpoint_every: int = Field(200, ge=1)  # lm optimizer steps between checkpoints
    keep_checkpoints: int = Field(2, ge=1)  # the newest this many are kept per trial
    max_failures: int = Field(2, ge=0)  # retries of a raising (or lost) trial before its FAILED row
    lease_expiry_s: float = Field(60.0, gt=0)  # a lease without a heartbeat this long is taken over


class EnsembleSpec(_Strict):
    """Ensembles of independently trained members ("Pre-training under infinite compute", seeds/002).

    Every grid point matching `where` (all points when empty) trains max(members) members that
    differ only by member seed (initialisation and data order); member 0 without overrides is the
    grid point's own trial. The overrides are the paper's tuned ensemble recipe (members trained
    longer with less weight decay than the best single model); they change the members' epochs
    and weight decay, hence their identity.
    """

    members: list[int]
    where: list[dict[str, Any]] = []  # grid points that get members: like `exclude:` entries
    epochs_scale: float = Field(1.0, gt=0)
    weight_decay_scale: float = Field(1.0, ge=0)

    @field_validator("members", mode="before")
    @classmethod
    def _axis(cls, value: Any):
        return _as_axis(value)

    @field_validator("members")
    @classmethod
    def _positive(cls, value: list[int]):
        for v in value:
            if v < 1:
                raise ValueError(f"must be >= 1 (got {v})")
        return value

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
    temperature: float = Field(1.0, gt=0)
    kl_weight: float = Field(0.5, ge=0, le=1)  # token
    synthetic_weight: float = Field(0.5, gt=0, lt=1)  # sequence: w
    synthetic_tokens: int | None = Field(None, ge=1)  # sequence
    sample_temperature: float = Field(1.0, gt=0)  # sequence
    sample_seed: int = 0  # sequence

    @field_validator("teacher")
    @classmethod
    def _teacher(cls, value: dict):
        for key in value:
            if key not in (*AXES, "members"):
                raise ValueError(f"{key!r} is not an axis or `members`{_closest(key, (*AXES, 'members'))}")
        members = value.get("members", 1)
        if not isinstance(members, int) or isinstance(members, bool) or members < 1:
            raise ValueError(f"members must be an integer >= 1 (got {members!r})")
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
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    trainer: str
    model: list[str | dict[str, Any]]
    data: DataSpec
    epochs: list[int]
    lr: list[float]
    weight_decay: list[float] = [0.0]
    seed: list[int] = [0]
    include: list[dict[str, Any]] = []
    exclude: list[dict[str, Any]] = []
    train: TrainSpec = TrainSpec()
    resources: ResourcesSpec = ResourcesSpec()
    fault_tolerance: FaultToleranceSpec = FaultToleranceSpec()
    results: str | None = None  # default: results/<name>
    ensemble: EnsembleSpec | None = None
    distill: list[DistillSpec] = []

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
        for m in value:
            if isinstance(m, str) and m not in PRESETS:
                raise ValueError(f"unknown model preset {m!r}{_closest(m, PRESETS)}; presets: {', '.join(PRESETS)}")
            if isinstance(m, dict):
                shape_from_dict(m)  # raises ValueError naming the bad size
        return value

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, value: list[int]):
        for v in value:
            if v < 1:
                raise ValueError(f"must be >= 1 (got {v})")
        return value

    @field_validator("lr")
    @classmethod
    def _lr(cls, value: list[float]):
        for v in value:
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"must be > 0 (got {v})")
        return value

    @field_validator("weight_decay")
    @classmethod
    def _weight_decay(cls, value: list[float]):
        for v in value:
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"must be >= 0 (got {v})")
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
                else "data.source gaussian is for trainer linreg; the lm trainer needs synthetic, files or hub"
            )
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
    known = set(LlamaShape.__dataclass_fields__) | set(LinregShape.__dataclass_fields__)
    for key in sizes:
        if key not in known:
            raise ValueError(f"unknown model size {key!r}{_closest(key, known)}")
    try:
        return LinregShape(**sizes) if "dims" in sizes else LlamaShape(**sizes)
    except TypeError as err:  # a missing size
        raise ValueError(f"explicit model sizes: {err}") from None


def model_shape(model: str | dict[str, Any]) -> ModelShape:
    return PRESETS[model]() if isinstance(model, str) else shape_from_dict(model)


def model_label(model: str | dict[str, Any]) -> str:
    """The `model` column: the preset name, or the explicit sizes written compactly."""
    if isinstance(model, str):
        return model
    return ",".join(f"{k}={v}" for k, v in sorted(model.items()))


def _format_error(err: dict) -> str:
    loc = ""
    for part in err["loc"]:
        if isinstance(part, int):
            loc += f"[{part}]"
        elif not str(part).startswith(("function-", "str", "dict[", "list[", "int", "float")):
            loc += f".{part}" if loc else str(part)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        parent_fields = err.get("ctx", {}).get("fields", ())
        return f"{loc}: unknown key{_closest(err['loc'][-1], parent_fields)}"
    if err["type"] == "missing":
        return f"{loc}: required field is missing"
    got = err.get("input")
    shown = "" if got is None or isinstance(got, (dict, list)) or "got" in message or repr(got) in message else f" (got {got!r})"
    separator = "" if message.startswith("[") else ": "
    return f"{loc}{separator}{message}{shown}" if loc else message


def _known_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys at `loc`'s parent, for the closest-name hint of an unknown key."""
    fields = model.model_fields
    for part in loc[:-1]:
        if isinstance(part, int) or part not in fields:
            return list(fields)
        annotation = fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = annotation.model_fields
        else:
            return list(fields)
    return list(fields)


def parse_spec(raw: Any, *, source: str = "spec") -> SweepSpec:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: the spec must be a YAML mapping (name:, trainer:, model:, ...)")
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        if first["type"] == "extra_forbidden":
            first = {**first, "ctx": {"fields": _known_fields(SweepSpec, first["loc"])}}
        raise UserError(f"{source}: {_format_error(first)}") from None


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

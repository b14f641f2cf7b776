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
    train: {batch_size: [8, 16], seq_len: 64}   # result-changing train fields are axes too
    resources: {cpus: 1, gpus: 0}
    fault_tolerance: {checkpoint_every: 200, keep_checkpoints: 2, max_failures: 2, lease_expiry_s: 60}
    results: results/quickstart
    ensemble: {members: [1, 2, 4], where: [{model: llama-50k}]}   # K members per matching point
    distill:                          # students of a teacher: a grid point's ensemble of k, or one model
      - {teacher: {model: llama-50k, members: 4}, student: {model: llama-50k}, method: token}
    search:                           # instead of grid lists: locally-optimal values per cell
      axes: {epochs: [1, 2, 4, 8, 16], weight_decay: [0, 0.1, 0.2, 0.4, 0.8, 1.6]}
      start: {epochs: 4, weight_decay: 0.1}   # or `from_smaller`: the next smaller model's optimum

Paths in a spec are relative to the current directory. Every error is raised as a one-line
`UserError` naming the field (`data.unique_tokens[1]`) and how to fix it.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator

from scalegrid.errors import UserError
from scalegrid.ladders import SearchSpec, monotone, on_ladder
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
    # The order an epoch visits the training sequences in: reshuffled every epoch, or the corpus'
    # own order. An axis (the trial's `data_order`); not part of the corpus' identity.
    order: list[Literal["shuffled", "sequential"]] = ["shuffled"]

    @field_validator("tokenizer", mode="before")
    @classmethod
    def _tokenizer_shorthand(cls, value: Any):
        if isinstance(value, str):  # `tokenizer: byte` / `bpe` / a path
            return {"kind": value} if value in ("byte", "bpe") else {"kind": "hf", "path": value}
        return value

    @field_validator("unique_tokens", "order", mode="before")
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


def _train_axes() -> tuple[str, ...]:
    """The `train` fields that may be axes: every result-changing one but `seq_len` (the unit the
    corpus is cut into, which `unique_tokens` must be a multiple of)."""
    return tuple(
        name for name, info in TrainSpec.model_fields.items()
        if name != "seq_len" and (info.json_schema_extra or {}).get("identity") != "never"
    )


class _ListedTrain(_Strict):
    @field_validator("*", mode="before")
    @classmethod
    def _listed(cls, value: Any, info: ValidationInfo):
        if info.field_name not in TRAIN_AXES:
            if isinstance(value, list):
                raise ValueError("one value only (it is not an axis)" + (
                    ": the corpus is cut into sequences of it; use one spec per value" if info.field_name == "seq_len" else ""))
            return value
        return _as_axis(value)


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


class ResourcesSpec(_Strict):
    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)


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
            if key not in (*POINT_AXES, "members"):
                raise ValueError(f"{key!r} is not an axis or `members`{_closest(key, (*POINT_AXES, 'members'))}")
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
    epochs: list[int] | None = None  # required unless searched
    lr: list[float] | None = None  # required unless searched
    weight_decay: list[float] | None = None  # [0.0] unless searched
    seed: list[int] = [0]
    include: list[dict[str, Any]] = []
    exclude: list[dict[str, Any]] = []
    train: TrainGrid = TrainGrid()
    resources: ResourcesSpec = ResourcesSpec()
    fault_tolerance: FaultToleranceSpec = FaultToleranceSpec()
    results: str | None = None  # default: results/<name>
    ensemble: EnsembleSpec | None = None
    distill: list[DistillSpec] = []
    search: SearchSpec | None = None

    @field_validator("distill", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any):
        return [value] if isinstance(value, dict) else value

    @field_validator("model", "epochs", "lr", "weight_decay", "seed", mode="before")
    @classmethod
    def _axis(cls, value: Any):
        return None if value is None else _as_axis(value)

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
    def _epochs(cls, value: list[int] | None):
        for v in value or ():
            if v < 1:
                raise ValueError(f"must be >= 1 (got {v})")
        return value

    @field_validator("lr")
    @classmethod
    def _lr(cls, value: list[float] | None):
        for v in value or ():
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"must be > 0 (got {v})")
        return value

    @field_validator("weight_decay")
    @classmethod
    def _weight_decay(cls, value: list[float] | None):
        for v in value or ():
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

    @model_validator(mode="after")
    def _search_fits(self):
        searched = set(self.search.axes) if self.search else set()
        for axis in searched - set(SEARCHABLE):
            cells = " (it makes the cells: give it as a grid value or list)" if axis in AXES else ""
            raise ValueError(f"search.axes.{axis}: not a searchable axis{_closest(axis, SEARCHABLE)}{cells}; searchable: {', '.join(SEARCHABLE)}")
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
        loc, _, message = _format_error(err.errors()[0]).partition(": ")
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


def _as_axis(value: Any) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError("empty axis: give one value or a non-empty list")
    return values


def _check_points(value: list[dict]) -> list[dict]:
    for i, point in enumerate(value):
        for key in point:
            if key not in POINT_AXES:
                raise ValueError(f"[{i}]: {key!r} is not an axis{_closest(key, POINT_AXES)}; axes: {', '.join(AXES)}, the train fields, data_order")
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

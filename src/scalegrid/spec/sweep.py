"""The sweep spec as written, validated: `SweepSpec`, every section a `strict.Strict` model.

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
    evaluate: {tasks: [arc_easy, piqa, sciq], num_fewshot: 0, which: [best, ensembles, students]}
    search:                           # instead of grid lists: locally-optimal values per cell
      axes: {epochs: [1, 2, 4, 8, 16], weight_decay: [0, 0.1, 0.2, 0.4, 0.8, 1.6]}
      start: {epochs: 4, weight_decay: 0.1}   # or `from_smaller`: the next smaller model's optimum

Validation here checks each field and the sections against each other; what needs every axis
typed (selectors, ladders, defaults) is the resolve pass's (`resolve.py`), which runs once after
this one. Paths in a spec are relative to the current directory.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from scalegrid.spec.axes import AXES, EXTRA_AXES, SEARCHABLE, TRAINER_NAMES, Epochs, LearningRate, Model, WeightDecay, check_axes_named
from scalegrid.spec.data import DataSpec
from scalegrid.spec.ladders import SearchSpec
from scalegrid.spec.sections import AdaptiveSpec, DistillSpec, EnsembleSpec, EvaluateSpec, FaultToleranceSpec, ResourcesSpec, TrackingSpec
from scalegrid.spec.stopping import StopSpec, epochs_section
from scalegrid.spec.strict import MAX_NAME, Seed, Strict, WrittenModel, WrittenSelector, as_axis, closest, describe_error, format_error
from scalegrid.spec.train import TrainGrid, TrainSpec


class SweepSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=MAX_NAME)
    trainer: str
    model: list[str | WrittenModel]
    data: DataSpec
    epochs: list[Epochs] | None = None  # required unless searched
    lr: list[LearningRate] | None = None  # required unless searched
    weight_decay: list[WeightDecay] | None = None  # [0.0] unless searched
    seed: list[Seed] = [0]
    include: list[WrittenSelector] = []
    exclude: list[WrittenSelector] = []
    train: TrainGrid = TrainGrid()
    resources: ResourcesSpec = ResourcesSpec()
    fault_tolerance: FaultToleranceSpec = FaultToleranceSpec()
    results: str | None = Field(None, min_length=1)  # default: results/<name>
    keep_weights: bool = True  # every lm trial's final model in Hugging Face format under RESULTS/models/ (members and teachers always)
    tracking: TrackingSpec = TrackingSpec()
    adaptive: AdaptiveSpec | None = None
    ensemble: EnsembleSpec | None = None
    distill: list[DistillSpec] = []
    search: SearchSpec | None = None
    evaluate: EvaluateSpec | None = None  # downstream evaluation (lm-evaluation-harness); not in trial ids

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
            try:
                Model.of(m)
            except ValueError as err:  # names the size: `model[1].hidden_size: ...`
                text = str(err)
                raise ValueError(text if isinstance(m, str) else f"[{i}]{'' if text.startswith('.') else ': '}{text}") from None
        return value

    @field_validator("include", "exclude")
    @classmethod
    def _points(cls, value: list[WrittenSelector]):
        return check_axes_named(value)

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
            Model.of(m).fits(self.trainer)
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
    def _evaluation_fits(self):
        """What `evaluate:` scores exists: saved models (lm), an ensemble or a student named on purpose."""
        e = self.evaluate
        if e is None:
            return self
        if self.trainer != "lm":
            raise ValueError(f"evaluate: scores language models on lm-evaluation-harness tasks; trainer {self.trainer} has none")
        if not self.keep_weights and {"best", "trials"} & set(e.which):
            named = " and ".join(w for w in e.which if w in ("best", "trials"))
            raise ValueError(
                f"evaluate.which: {named} needs the trained models' weights, which keep_weights: false does not keep; "
                "set keep_weights: true, or evaluate only ensembles and students"
            )
        if "which" in e.model_fields_set:
            for which, section in (("ensembles", self.ensemble), ("students", self.distill)):
                if which in e.which and not section:
                    where = "ensemble:" if which == "ensembles" else "distill:"
                    raise ValueError(f"evaluate.which: {which}, but the spec has no {where} section; add one or drop {which}")
        return self

    @model_validator(mode="after")
    def _adaptive_fits(self):
        """`adaptive:` runs stop rules on `wsd` lm trials; a rule is checked as `train.stop` would be."""
        if self.adaptive is None:
            return self
        if self.trainer != "lm":
            raise ValueError("adaptive: the adaptive stop is built for trainer lm")
        first = self.train.first()
        if first.get("stop") is not None:
            raise ValueError("adaptive: the whole spec is adaptive already (epochs: {max, stop}); use one of the two")
        if self.train.schedule != ["wsd"]:
            raise ValueError("adaptive: needs train.schedule: wsd (a fixed run is the adaptive run's point with its decay where it ends)")
        for i, stop in enumerate(self.adaptive.stop):
            try:
                TrainSpec.model_validate({**first, "stop": stop})
            except ValidationError as err:
                raise ValueError(f"adaptive.stop[{i}]: {format_error(err.errors()[0])}") from None
        return self

    @model_validator(mode="after")
    def _search_fits(self):
        """What is searched is a searchable axis, given once (a ladder, not also a grid list), and
        selected by no selector; an axis not searched has its values."""
        searched = set(self.search.axes) if self.search else set()
        for axis in searched - set(SEARCHABLE):
            cells = " (it makes the cells: give it as a grid value or list)" if axis in AXES else ""
            raise ValueError(f"search.axes.{axis}: not a searchable axis{closest(axis, SEARCHABLE)}{cells}; searchable: {', '.join(SEARCHABLE)}")
        for axis in ("epochs", "lr", "weight_decay"):
            if axis in searched and getattr(self, axis) is not None:
                raise ValueError(f"{axis}: searched by search.axes.{axis}; remove `{axis}:` here (the ladder gives its values)")
            if axis not in searched and getattr(self, axis) is None and axis != "weight_decay":
                raise ValueError(f"{axis}: required field is missing (or search it: search.axes.{axis})")
        for axis in searched & set(EXTRA_AXES):
            listed = self.data.order if axis == "data_order" else getattr(self.train, axis)
            if len(listed) > 1:
                where = "data.order" if axis == "data_order" else f"train.{axis}"
                raise ValueError(f"{where}: a grid list and a ladder in search.axes.{axis}; keep one of them")
        for i, point in enumerate(self.include + self.exclude):
            for axis in searched & set(point):
                which = f"include[{i}]" if i < len(self.include) else f"exclude[{i - len(self.include)}]"
                raise ValueError(f"{which}.{axis}: searched by search.axes.{axis}; select cells by the other axes")
        return self

    @property
    def results_dir(self) -> str:
        return self.results or f"results/{self.name}"


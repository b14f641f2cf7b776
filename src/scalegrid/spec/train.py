"""The spec's `train:` section: one trial's training recipe (`TrainSpec`), and the section as a
spec writes it (`TrainGrid`: a result-changing field may be a list, an axis of the grid).

Every field is declared once, in `TrainSpec`, with its type, range and identity rule
(`strict.not_hashed` / `hashed_unless_default`); `TrainGrid` is derived from it, and checks every
value with `TrainSpec`'s own validators: field by field (each field's `before` validators, run on
each value of an axis) and across fields (every axis value with the other fields at their first
values is a valid `TrainSpec`). No field is handled by name here.

Which fields may be axes: every result-changing field, unless its declaration says why it takes
one value (`one_value=`): `seq_len` (the unit the corpus is cut into) and `stop` (written as
`epochs: {max: N, stop: ...}`).
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator

from scalegrid.payloads import YamlMapping
from scalegrid.spec.stopping import StopSpec
from scalegrid.spec.strict import Fraction, Steps, Strict, as_axis, format_error, hashed_unless_default, not_hashed


class TrainSpec(Strict):
    batch_size: int = Field(16, ge=1, le=1 << 20)  # sequences per optimizer step (samples for linreg)
    seq_len: int = Field(64, ge=2, le=1 << 20, json_schema_extra={"one_value": "the corpus is cut into sequences of it; use one spec per value"})
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
    loss_chunk_tokens: int | None = not_hashed(None, ge=1, le=1 << 30)  # positions per lm-head + loss chunk; None: by vocab (gpu_memory.py)
    parallelism: Literal["auto", "ddp", "fsdp"] = not_hashed("auto")  # with resources.workers > 1; auto: FSDP2 when the memory plan says one GPU cannot hold the model, else DDP
    diagnostics: bool = not_hashed(False)  # per-epoch gradient statistics on a fixed probe set (trainers/diagnostics.py)
    stop: StopSpec | None = hashed_unless_default(None, one_value="written `epochs: {max: N, stop: {...}}`, one rule per spec")  # an adaptive stop (stopping.py)
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


def _declared(name: str, key: str) -> Any:
    return (TrainSpec.model_fields[name].json_schema_extra or {}).get(key)


def _may_be_an_axis(name: str) -> bool:
    """Result-changing (in trial ids) and not declared `one_value`."""
    return _declared(name, "identity") != "never" and _declared(name, "one_value") is None


TRAIN_AXES = tuple(name for name in TrainSpec.model_fields if _may_be_an_axis(name))


def before_validators(name: str) -> list:
    """TrainSpec's own `before` validators of a field, in the order pydantic runs them."""
    found = [d.func for d in TrainSpec.__pydantic_decorators__.field_validators.values()
             if d.info.mode == "before" and (name in d.info.fields or "*" in d.info.fields)]
    return list(reversed(found))


def checked_value(name: str, value: Any) -> Any:
    """One value of a train field through the field's own `before` validators."""
    for check in before_validators(name):
        value = check(value) if len(inspect.signature(check).parameters) == 1 else check(value, None)
    return value


class _ListedTrain(Strict):
    @field_validator("*", mode="before")
    @classmethod
    def _listed(cls, value: Any, info: ValidationInfo):
        name = info.field_name
        if name not in TRAIN_AXES:
            if isinstance(value, list):
                reason = _declared(name, "one_value")
                raise ValueError("one value only (it is not an axis)" + (f": {reason}" if reason else ""))
            return checked_value(name, value)
        return [checked_value(name, v) for v in as_axis(value)]

    @model_validator(mode="after")
    def _each_value_a_train_spec(self):
        """Every value of every train axis, the other fields at their first values, passes
        TrainSpec's checks across fields (a micro-batch no larger than the batch)."""
        first = self.first()
        for variant in [first] + [first | {axis: v} for axis in TRAIN_AXES for v in getattr(self, axis)[1:]]:
            try:
                TrainSpec.model_validate(variant)
            except ValidationError as err:
                raise ValueError(format_error(err.errors()[0])) from None
        return self

    def first(self) -> YamlMapping:
        """Every field at its first value: one `TrainSpec`'s fields, as written (validated by it)."""
        return {name: value[0] if name in TRAIN_AXES else value for name, value in self}


def _train_grid() -> type[BaseModel]:
    """`train:` of a spec: TrainSpec's fields, each result-changing one a value or a list (an
    axis), checked element by element with TrainSpec's own constraints."""
    fields = {}
    for name, info in TrainSpec.model_fields.items():
        if name in TRAIN_AXES:
            element = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
            fields[name] = (list[element], [info.default])
        else:
            fields[name] = (info.annotation, info)
    return create_model("TrainGrid", __base__=_ListedTrain, __doc__="The spec's `train:` (lists are axes).", **fields)


TrainGrid = _train_grid()

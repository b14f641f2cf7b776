"""The grid's axes and their typed values: what a grid point, a selector and a ladder hold.

    AXES          model, unique_tokens, epochs, lr, weight_decay, seed
    TRAIN_AXES    the result-changing `train:` fields (batch_size, warmup_fraction, ...)
    POINT_AXES    AXES + TRAIN_AXES + data_order: what a point holds and a selector may name

A value is typed once, by its axis' own declaration (`typed_values`): the element type and range
of the axis (`Epochs`, `LearningRate`, ... or the `TrainSpec` field), a train field's own
validators (with the other train fields, `TrainSpec`'s checks across fields), and for `model` a
preset or explicit sizes that fit the trainer (a `Model`). `Point` (one grid point) and `Selector`
(an `include:` / `exclude:` / `ensemble.where:` entry or a teacher) hold typed values only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, Union

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from scalegrid.shapes import PRESETS, LinregShape, LlamaShape, ModelShape
from scalegrid.spec.data import DataOrder, UniqueTokens
from scalegrid.spec.strict import (
    MAX_EPOCHS, Seed, WrittenModel, WrittenSelector, as_axis, closest, float_of_text, format_error, holds_float, schema_of,
)
from scalegrid.spec.train import TRAIN_AXES, TrainSpec, checked_value

AXES = ("model", "unique_tokens", "epochs", "lr", "weight_decay", "seed")
EXTRA_AXES = (*TRAIN_AXES, "data_order")  # axes beyond AXES: in a grid point only where they vary or are searched
POINT_AXES = (*AXES, *EXTRA_AXES)  # what a grid point holds, and selectors (include, exclude, where, teacher) may name
SEARCHABLE = ("epochs", "lr", "weight_decay", *EXTRA_AXES)  # what `search.axes` may name; the rest make the cells
TRAINER_NAMES = ("lm", "linreg")  # `trainers/__init__.py` maps each to its module

# The element type of each top-level axis: declared here once, used by the spec's lists and by
# every selector or ladder value of that axis.
Epochs = Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
LearningRate = Annotated[float, Field(gt=0, le=1e6)]  # past any sane one: divergence tests use 1e4
WeightDecay = Annotated[float, Field(ge=0, le=100)]
ELEMENTS = {"epochs": Epochs, "lr": LearningRate, "weight_decay": WeightDecay, "seed": Seed,
            "unique_tokens": UniqueTokens, "data_order": DataOrder}


# --- the model axis ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A `model` axis value: the `model` column's label and the shape, every size explicit (a
    Llama's kv heads), so two labels of one shape hash to one trial."""

    label: str
    shape: ModelShape

    @classmethod
    def of(cls, written: str | WrittenModel) -> Model:
        """A preset name or explicit sizes; a `ValueError` names what is wrong."""
        if isinstance(written, str):
            if written not in PRESETS:
                raise ValueError(f"unknown model preset {written!r}{closest(written, PRESETS)}; presets: {', '.join(PRESETS)}")
            shape = PRESETS[written]()
        else:
            shape = shape_from_dict(written)
        if isinstance(shape, LlamaShape):
            shape = replace(shape, num_kv_heads=shape.kv_heads)
        return cls(model_label(written), shape)

    def fits(self, trainer: str) -> None:
        if (trainer == "linreg") != isinstance(self.shape, LinregShape):
            want = "{dims: N}" if trainer == "linreg" else "a Llama preset or {hidden_size, num_layers, num_heads, intermediate_size}"
            raise ValueError(f"model {self.label!r} does not fit trainer {trainer}: give {want}")

    def __str__(self) -> str:
        return self.label


def shape_from_dict(sizes: WrittenModel) -> ModelShape:
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


def model_label(model: str | WrittenModel) -> str:
    """The `model` column: the preset name, or the explicit sizes written compactly."""
    if isinstance(model, str):
        return model
    return ",".join(f"{k}={v}" for k, v in sorted(model.items()))


AxisValue = Union[Model, int, float, str, bool]


def axis_key(value: AxisValue) -> int | float | str | bool:
    """What makes two values of an axis the same point: a model's label, else the value."""
    return value.label if isinstance(value, Model) else value


# --- typing a value by its axis ------------------------------------------------------------------------


@dataclass(frozen=True)
class AxisContext:
    """What typing an axis value needs beyond the axis: the trainer (a model must fit it) and the
    train fields at their first values (a train axis value must go with them)."""

    trainer: str
    train: TrainSpec


@functools.cache
def _adapter(axis: str) -> tuple[TypeAdapter, dict, bool]:
    """(a strict validator of a list of the axis' values, its JSON schema, whether it holds floats)."""
    if axis in TRAIN_AXES:
        info = TrainSpec.model_fields[axis]
        element = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    else:
        element = ELEMENTS[axis]
    adapter = TypeAdapter(list[element], config=ConfigDict(strict=True, allow_inf_nan=False))
    return adapter, adapter.json_schema(), holds_float(element)


def typed_values(axis: str, written: Any, where: str, context: AxisContext) -> tuple[AxisValue, ...]:
    """`written` (one value or a list) typed as values of `axis`; a ValueError starts with `where`
    and names the value (`include[0].epochs[0]: must be between 1 and 100000 (got 0)`)."""
    values = as_axis(written)
    if axis == "model":
        return tuple(_typed_model(value, f"{where}[{i}]" if len(values) > 1 else where, context) for i, value in enumerate(values))
    adapter, schema, floats = _adapter(axis)
    try:
        if axis in TRAIN_AXES:
            values = [checked_value(axis, v) for v in values]
        typed = adapter.validate_python(float_of_text(values) if floats else values)
    except ValidationError as err:
        message = format_error(err.errors()[0], schema)
        raise ValueError(f"{where}{'' if message.startswith('[') else ': '}{message}") from None
    except ValueError as err:  # a train field's own validator
        raise ValueError(f"{where}: {err}") from None
    if axis in TRAIN_AXES:
        for value in typed:  # with the other train fields: TrainSpec's checks across fields
            try:
                TrainSpec.model_validate(context.train.model_dump() | {axis: value})
            except ValidationError as err:
                raise ValueError(f"{where}: {format_error(err.errors()[0])}") from None
    return tuple(typed)


def _typed_model(written: Any, where: str, context: AxisContext) -> Model:
    if not isinstance(written, (str, dict)):
        raise ValueError(f"{where}: a preset name or explicit sizes {{hidden_size, num_layers, num_heads, intermediate_size}} (got {written!r})")
    try:
        model = Model.of(written)
        model.fits(context.trainer)
    except ValueError as err:
        text = str(err)
        raise ValueError(f"{where}{'' if text.startswith('.') else ': '}{text}") from None
    return model


def check_axes_named(selectors: list[WrittenSelector]) -> list[WrittenSelector]:
    """Every key of every selector is an axis (a typo is named with its closest axis)."""
    for i, point in enumerate(selectors):
        for key in point:
            if key not in POINT_AXES:
                raise ValueError(f"[{i}]: {key!r} is not an axis{closest(key, POINT_AXES)}; axes: {', '.join(AXES)}, the train fields, data_order")
    return selectors


# --- points and selectors ------------------------------------------------------------------------------


class Point(Mapping[str, AxisValue]):
    """One grid point (or the axes of a cell, a student's overrides): axis -> typed value, in
    POINT_AXES order; frozen, and equal to another point with the same keys (a model by label)."""

    __slots__ = ("_values", "_key")

    def __init__(self, values: Mapping[str, AxisValue]):
        self._values = {axis: values[axis] for axis in POINT_AXES if axis in values}
        if len(self._values) != len(values):
            raise KeyError(f"not axes: {sorted(set(values) - set(POINT_AXES))}")
        self._key = tuple((axis, axis_key(value)) for axis, value in self._values.items())

    def __getitem__(self, axis: str) -> AxisValue:
        return self._values[axis]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and self._key == other._key

    def __or__(self, other: Mapping[str, AxisValue]) -> Point:
        return Point({**self._values, **other})

    def __repr__(self) -> str:
        return f"Point({self.words()})"

    @property
    def key(self) -> tuple:
        return self._key

    def without(self, axes) -> Point:
        return Point({a: v for a, v in self._values.items() if a not in axes})

    def words(self, axes=None) -> str:
        """`model=llama-50k, epochs=4, ...` (every axis, or those of `axes`)."""
        return ", ".join(f"{a}={v}" for a, v in self._values.items() if axes is None or a in axes)


@dataclass(frozen=True)
class Selector:
    """A selector typed: axis -> the values it accepts. `where` and `written` name it in messages."""

    where: str  # "include[0]", "ensemble.where[1]", "distill[0].teacher"
    written: str  # as the spec wrote it: "{'epochs': 7}"
    values: tuple[tuple[str, tuple[AxisValue, ...]], ...]

    @property
    def axes(self) -> tuple[str, ...]:
        return tuple(axis for axis, _ in self.values)

    def matches(self, point: Mapping[str, AxisValue]) -> bool:
        """The point has, on every axis the selector names, one of the selector's values."""
        return all(_value_in(point[axis], values) for axis, values in self.values)


def _value_in(value: AxisValue, values: tuple[AxisValue, ...]) -> bool:
    key = axis_key(value)
    if any(axis_key(v) == key for v in values):
        return True
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return any(isinstance(v, (int, float)) and math.isclose(float(v), float(value), rel_tol=1e-12) for v in values)


def typed_selector(written: WrittenSelector, where: str, context: AxisContext) -> Selector:
    """A selector as written, typed axis by axis (`include[0].epochs[0]: must be ...`)."""
    values = tuple((axis, typed_values(axis, value, f"{where}.{axis}", context)) for axis, value in written.items())
    return Selector(where, str(written), values)

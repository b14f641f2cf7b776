"""Strict spec models: the base every spec section derives from, the ranges, the identity rule,
and the one-line error that names a field.

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
import re
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from scalegrid.payloads import JsonObject, YamlMapping

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

# A selector as the spec writes it (`include:`, `exclude:`, `ensemble.where:`, a teacher, a
# student): axis -> one value or a list of them, free-form YAML until `resolve` types each value by
# its axis. Explicit model sizes as written, until the shape validates them.
WrittenSelector = YamlMapping
WrittenModel = YamlMapping

_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class Strict(BaseModel):
    """Every spec model: unknown keys refused, strict types (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _floats_written_as_text(cls, data: Any):
        """YAML 1.1 reads `1e-3` as a string: a float field (alone or in a list) takes it as a number."""
        if not isinstance(data, dict):
            return data
        floats = float_fields(cls)
        return {key: float_of_text(value) if key in floats else value for key, value in data.items()}


@functools.cache
def float_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, info in model.model_fields.items() if holds_float(info.annotation))


def holds_float(annotation: Any) -> bool:
    """float, float | None, list[float], Annotated[float, ...], ... (not inside a dict or a model)."""
    if annotation is float:
        return True
    if typing.get_origin(annotation) is Annotated:
        return holds_float(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is dict:
        return False
    return any(holds_float(arg) for arg in typing.get_args(annotation))


def float_of_text(value: Any) -> Any:
    if isinstance(value, list):
        return [float_of_text(v) for v in value]
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)
    return value


# What a trial id covers (`grid.identity`): every field of the trial's config, except those
# declared with one of these. Declare every new field with the right one, or trial ids change.
def not_hashed(default: Any, **kwargs: Any) -> Any:
    """A field that changes how a trial runs, never its result (micro-batches, compilation):
    left out of every trial id."""
    return Field(default, json_schema_extra={"identity": "never"}, **kwargs)


def hashed_unless_default(default: Any, *, one_value: str | None = None, **kwargs: Any) -> Any:
    """A result-changing field added after trial ids existed: in the id only when it differs from
    its default, so every existing trial keeps its id. `one_value`: why it may not be an axis."""
    extra = {"identity": "unless_default"} | ({"one_value": one_value} if one_value else {})
    return Field(default, json_schema_extra=extra, **kwargs)


def hashed_fields(config: BaseModel) -> JsonObject:
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


def as_axis(value: Any) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError("empty axis: give one value or a non-empty list")
    return values


def closest(name: str, choices) -> str:
    match = difflib.get_close_matches(str(name), list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


_UNION_TAGS = ("str", "int", "float", "bool")  # pydantic's names of a union's members in an error's loc
_RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def format_error(err: dict, schema: dict | None = None) -> str:
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
        return f"{loc}: unknown key{closest(err['loc'][-1], parent_fields)}"
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
    if len(text) <= 60:
        return text
    return f"{text[:40]}... ({len(value) if isinstance(value, str) else len(text)} characters)"


@functools.cache
def schema_of(model: type) -> dict:
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
    return format_error(first, schema_of(model))

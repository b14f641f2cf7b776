"""Grid expansion and trial identity: spec -> list of `Trial`, each named by a hash of its config.

The grid is the product of the axes (model x unique_tokens x epochs x lr x weight_decay x seed, and
any `train` field or `data.order` given as a list), plus every `include:` sub-grid (an include point's omitted axes take all of the axis' values),
minus every point that matches all keys of an `exclude:` entry. Each point becomes a
`TrialConfig` holding only what changes the result — resolved model sizes, the data's content
identity, the axis values, the training knobs — and its canonical JSON (sorted keys, floats in
shortest repr, so `0.1` and `1e-1` agree) is hashed into `trial_id`. Resources, paths and the
sweep's name are not part of it: two sweeps that ask for the same experiment share the result.

A spec with `search:` has *cells* instead: the product of the axes not searched (`cell_points`);
its grid points are the cells at the search's start, and `orchestrator/search.py` moves them.

    >>> trials = expand(spec, identity)          # a pure function: no I/O, no Ray
    >>> trials[0].trial_id
    '3f1c9a0b2d7e4f65'
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from scalegrid.errors import UserError
from scalegrid.shapes import LlamaShape
from scalegrid.spec import EXTRA_AXES, POINT_AXES, TRAIN_AXES, SweepSpec, TrainSpec, describe_error, hashed_fields, model_label, model_shape, raw_with
from scalegrid.storage import ResultsLayout, absolute, layout
from scalegrid.trial import DataIdentity, Trial, TrialConfig

TRIAL_ID_CHARS = 16


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_hash(value: Any, chars: int = TRIAL_ID_CHARS) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:chars]


identity = hashed_fields  # the rule lives beside `not_hashed` / `hashed_unless_default` (strict.py)


def trial_id(config: TrialConfig) -> str:
    return content_hash(identity(config))


def ensemble_id(member_ids: list[str], combine: str = "probs") -> str:
    """An ensemble row's id: its members and k, so a row is written once whatever K asked for it,
    and how k > 1 members are averaged when that is not the default `probs` (ids written before
    `combine` existed stay; one model has nothing to average)."""
    key = {"stage": "ensemble", "members": list(member_ids), "k": len(member_ids)}
    if len(member_ids) > 1 and combine != "probs":
        key["combine"] = combine
    return content_hash(key)


def typed_points(spec: SweepSpec, points: list[dict[str, Any]], field: str) -> list[dict[str, list]]:
    """Validate each selector point (include, exclude, ensemble.where) with the spec's own axis
    validators: axis -> its values, typed."""
    typed_points = []
    for i, point in enumerate(points):
        raw = spec.model_dump(mode="json") | {"include": [], "exclude": [], "ensemble": None, "distill": []}
        for axis, value in point.items():
            raw = raw_with(raw, axis, value)
        try:
            typed = SweepSpec.model_validate(raw)
        except ValidationError as err:
            raise UserError(f"{field}[{i}].{describe_error(err, SweepSpec)}") from None
        typed_points.append({axis: axis_values(typed, axis) for axis in point})
    return typed_points


def axis_values(spec: SweepSpec, axis: str) -> list:
    return spec.values(axis)


def axis_key(axis: str, value: Any) -> Any:
    """What makes two values of an axis the same point: a model's label, else the value."""
    return model_label(value) if axis == "model" else value


def matches(point: dict[str, Any], selector: dict[str, Any]) -> bool:
    """The point has, on every axis the selector names, one of the selector's values."""
    for axis, wanted in selector.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        keys = {axis_key(axis, v) for v in values}
        if axis_key(axis, point[axis]) not in keys and not _number_in(point[axis], values):
            return False
    return True


def _number_in(value: Any, values: list) -> bool:
    if not isinstance(value, (int, float)):
        return False
    return any(isinstance(v, (int, float)) and math.isclose(float(v), float(value), rel_tol=1e-12) for v in values)


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """The grid's points as axis -> value dicts, in spec order, without duplicates (a searched
    spec's: its cells at the search's start)."""
    cells = cell_points(spec)
    if spec.search is None:
        return cells
    start = spec.search.start_values()
    return [cell | start for cell in cells]


def cell_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """The product of the axes not searched (all of them without `search:`), plus `include:`,
    minus `exclude:`; in spec order, without duplicates."""
    searched = spec.search.axes if spec.search else {}
    axes = [a for a in POINT_AXES if a not in searched]
    full = {axis: axis_values(spec, axis) for axis in axes}
    subgrids = [full] + [full | point for point in typed_points(spec, spec.include, "include")]
    excludes = typed_points(spec, spec.exclude, "exclude")
    points, seen, used = [], set(), set()
    for grid in subgrids:
        for values in itertools.product(*(grid[axis] for axis in axes)):
            point = dict(zip(axes, values))
            key = tuple(axis_key(a, point[a]) for a in axes)
            hits = {i for i, ex in enumerate(excludes) if all(axis_key(a, point[a]) in {axis_key(a, v) for v in ex[a]} for a in ex)}
            used |= hits
            if key not in seen and not hits:
                seen.add(key)
                points.append(point)
    refuse_unmatched(spec.exclude, used, "exclude")
    return points


def refuse_unmatched(selectors: list[dict[str, Any]], used: set[int], field: str) -> None:
    """A selector that matches no grid point is a typo (a value not on its axis), never ignored."""
    for i, selector in enumerate(selectors):
        if i not in used:
            raise UserError(
                f"{field}[{i}]: {selector} matches no grid point; each value must be one of its axis' values"
            )


def resolved_shape(model: str | dict[str, Any]):
    """The shape with every size explicit (a Llama's kv heads), so equal models hash equal."""
    shape = model_shape(model)
    return replace(shape, num_kv_heads=shape.kv_heads) if isinstance(shape, LlamaShape) else shape


def trial_config(spec: SweepSpec, point: dict[str, Any], data: DataIdentity) -> TrialConfig:
    config = TrialConfig(
        trainer=spec.trainer,
        model=resolved_shape(point["model"]),
        data=data.config,
        unique_tokens=point["unique_tokens"],
        epochs=point["epochs"],
        lr=point["lr"],
        weight_decay=point["weight_decay"],
        seed=point["seed"],
        train=spec.base_train,
    )
    return with_axes(config, {axis: point[axis] for axis in EXTRA_AXES if axis in point})


def values_of(config: TrialConfig, axes) -> dict[str, Any]:
    """The config's values on `axes` (epochs, lr, weight_decay, data_order, train fields)."""
    return {axis: getattr(config.train if axis in TRAIN_AXES else config, axis) for axis in axes}


def with_axes(config: TrialConfig, values: dict[str, Any]) -> TrialConfig:
    """`config` with axis values set: epochs, lr, weight_decay, data_order or a train field. A
    train field at the value it has leaves the config (and so the trial id) as it was."""
    train = {axis: v for axis, v in values.items() if axis in TRAIN_AXES and getattr(config.train, axis) != v}
    update = {axis: v for axis, v in values.items() if axis not in TRAIN_AXES}
    if train:
        try:
            update["train"] = TrainSpec.model_validate(config.train.model_dump() | train)
        except ValidationError as err:
            first = err.errors()[0]
            raise UserError(f"train: {train} does not go with the other train fields: {first['msg'].removeprefix('Value error, ')}") from None
    return config.model_copy(update=update) if update else config


def point_trials(spec: SweepSpec, data: DataIdentity, results: ResultsLayout | None = None) -> list[tuple[dict[str, Any], Trial]]:
    """(grid point, its trial) for every grid point in spec order; points with one trial_id share it.
    `results` defaults to the spec's `results:`."""
    results = results or layout(absolute(spec.results_dir))
    data_key = None if spec.trainer == "linreg" else data.key
    trials: dict[str, Trial] = {}
    out = []
    for point in grid_points(spec):
        config = trial_config(spec, point, data)
        tid = trial_id(config)
        trial = trials.setdefault(tid, Trial(
            trial_id=tid, sweep=spec.name, model_label=model_label(point["model"]), config=config,
            results=results, data_key=data_key, fault_tolerance=spec.fault_tolerance, resources=spec.resources,
        ))
        out.append((point, trial))
    return out


def expand(spec: SweepSpec, data: DataIdentity, results: ResultsLayout | None = None) -> list[Trial]:
    """Every trial of the spec, deduplicated by trial_id (two labels for one shape are one trial)."""
    return list({t.trial_id: t for _, t in point_trials(spec, data, results)}.values())

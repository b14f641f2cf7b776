"""Grid expansion and trial identity: a resolved `Sweep` -> typed points -> `Trial`s, each named by a hash.

The grid is the product of the axes (model x unique_tokens x epochs x lr x weight_decay x seed, and
any `train` field or `data.order` given as a list), plus every `include:` sub-grid (an include
point's omitted axes take all of the axis' values), minus every point that an `exclude:` entry
matches. Each point becomes a `TrialConfig` holding only what changes the result — resolved model
sizes, the data's content identity, the axis values, the training knobs — and its canonical JSON
(sorted keys, floats in shortest repr, so `0.1` and `1e-1` agree) is hashed into `trial_id`.
Resources, paths and the sweep's name are not part of it: two sweeps that ask for the same
experiment share the result.

A spec with `search:` has *cells* instead: the product of the axes not searched (`cell_points`);
its grid points are the cells at the search's start, and the search moves them
(`orchestrator/planning/cells.py`).

    >>> trials = expand(sweep, identity)          # a pure function: no I/O, no Ray
    >>> trials[0].trial_id
    '3f1c9a0b2d7e4f65'
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping

from pydantic import ValidationError

from scalegrid.errors import UserError
from scalegrid.spec import EXTRA_AXES, POINT_AXES, TRAIN_AXES, AxisValue, Point, Selector, Sweep, TrainSpec, hashed_fields
from scalegrid.storage import ResultsLayout, absolute, layout
from scalegrid.trial import DataIdentity, Trial, TrialConfig

TRIAL_ID_CHARS = 16
MAX_TRIALS = 200_000  # a sweep larger than this is refused before it is expanded (`--max-trials` raises it)

def canonical_json(value: object) -> str:
    """JSON with sorted keys and no spaces: what every identity hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_hash(value: object, chars: int = TRIAL_ID_CHARS) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:chars]


identity = hashed_fields  # the rule lives beside `not_hashed` / `hashed_unless_default` (spec/strict.py)


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


def evaluation_id(model_id: str, task: str, task_version: str, num_fewshot: int, limit: int | None, harness: str) -> str:
    """A downstream evaluation's id: the model (a trial or an ensemble row), the task and its
    version, the shots, the examples and the harness's version; nothing else (batch size, device)."""
    return content_hash({
        "model": model_id, "task": task, "task_version": task_version, "num_fewshot": num_fewshot, "limit": limit,
        "harness": harness,
    })


def size_bound(sweep: Sweep) -> int:
    """At most how many trials the sweep plans, counted before anything is expanded: its grid points
    (or cells) with their include sub-grids, times the ensembles' members, plus the students."""
    searched = sweep.search.ladders if sweep.search else {}
    axes = [a for a in POINT_AXES if a not in searched]
    full = {axis: len(sweep.values(axis)) for axis in axes}
    points = sum(math.prod(grid[a] for a in axes) for grid in [full] + [full | {a: len(v) for a, v in s.values} for s in sweep.include])
    members = sweep.ensemble.max_members if sweep.ensemble is not None else 1
    return points * members + len(sweep.distill)


def check_size(sweep: Sweep, max_trials: int | None) -> None:
    """Refuse, in one line, a sweep larger than `max_trials` (default MAX_TRIALS) before it is expanded."""
    limit = MAX_TRIALS if max_trials is None else max_trials
    bound = size_bound(sweep)
    if bound > limit:
        what = "cells" if sweep.search else "trials"
        raise UserError(
            f"the sweep has up to {bound:,} {what}, over the limit of {limit:,}; narrow its axes, or pass "
            f"--max-trials {bound} to plan it anyway (about 10 s and 0.5 GB of memory per 100,000 trials)"
        )


def grid_points(sweep: Sweep) -> list[Point]:
    """The grid's points, in spec order, without duplicates (a searched spec's: its cells at the
    search's start)."""
    cells = cell_points(sweep)
    if sweep.search is None:
        return cells
    start = sweep.search.start_values()
    return [cell | start for cell in cells]


def cell_points(sweep: Sweep) -> list[Point]:
    """The product of the axes not searched (all of them without `search:`), plus `include:`,
    minus `exclude:`; in spec order, without duplicates."""
    searched = sweep.search.ladders if sweep.search else {}
    axes = [a for a in POINT_AXES if a not in searched]
    full = {axis: sweep.values(axis) for axis in axes}
    subgrids = [full] + [full | dict(selector.values) for selector in sweep.include]
    points, seen, used = [], set(), set()
    for grid in subgrids:
        for values in itertools.product(*(grid[axis] for axis in axes)):
            point = Point(dict(zip(axes, values)))
            hits = {i for i, ex in enumerate(sweep.exclude) if ex.matches(point)} if sweep.exclude else set()
            used |= hits
            if point not in seen and not hits:
                seen.add(point)
                points.append(point)
    refuse_unmatched(sweep.exclude, used)
    if not points:
        raise UserError("exclude: its entries remove every grid point; keep at least one point of the grid")
    return points


def refuse_unmatched(selectors: Iterable[Selector], used: set[int]) -> None:
    """A selector that matches no grid point is a typo (a value not on its axis), never ignored."""
    for i, selector in enumerate(selectors):
        if i not in used:
            raise UserError(f"{selector.where}: {selector.written} matches no grid point; each value must be one of its axis' values")


def trial_config(sweep: Sweep, point: Point, data: DataIdentity) -> TrialConfig:
    config = TrialConfig(
        trainer=sweep.trainer,
        model=point["model"].shape,
        data=data.config,
        unique_tokens=point["unique_tokens"],
        epochs=point["epochs"],
        lr=point["lr"],
        weight_decay=point["weight_decay"],
        seed=point["seed"],
        train=sweep.train,
    )
    return with_axes(config, {axis: point[axis] for axis in EXTRA_AXES if axis in point})


def values_of(config: TrialConfig, axes: Iterable[str]) -> dict[str, AxisValue]:
    """The config's values on `axes` (epochs, lr, weight_decay, data_order, train fields)."""
    return {axis: getattr(config.train if axis in TRAIN_AXES else config, axis) for axis in axes}


def with_axes(config: TrialConfig, values: Mapping[str, AxisValue]) -> TrialConfig:
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


def trial_at(template: Trial, values: Mapping[str, AxisValue]) -> Trial:
    """`template` with axis values set, under the id its new config hashes to (a search's trial, or
    a pack's trial rebuilt in its worker)."""
    config = with_axes(template.config, values)
    tid = trial_id(config)
    return template if tid == template.trial_id else template.model_copy(update={"trial_id": tid, "config": config})


def point_trials(sweep: Sweep, data: DataIdentity, results: ResultsLayout | None = None) -> list[tuple[Point, Trial]]:
    """(grid point, its trial) for every grid point in spec order; points with one trial_id share
    it. `results` defaults to the spec's `results:`.

    A grid of 100,000 points differs from point to point only in its scalar axes (`SCALAR_AXES`:
    a seed, an lr): the points that agree on every other axis share one `TrialTemplate`, built and
    hashed the slow way once, and each point's config is the template's with its scalars set and
    its id the template's canonical JSON with their JSON put in (`TrialTemplate.trial_id`): the
    same text, so the same id, at a twentieth of the cost (tests/test_sweep_ids.py pins the ids)."""
    results = results or layout(absolute(sweep.results_dir))
    data_key = None if sweep.trainer == "linreg" else data.key
    templates: dict[tuple, TrialTemplate] = {}
    trials: dict[str, Trial] = {}
    out = []
    for point in grid_points(sweep):
        shape = tuple(item for item in point.key if item[0] not in SCALAR_AXES)  # (axis, value) of the other axes
        template = templates.get(shape)
        if template is None:
            config = trial_config(sweep, point, data)  # validated here: a bad train combination raises
            template = templates[shape] = TrialTemplate(config, Trial(
                trial_id=trial_id(config), sweep=sweep.name, model_label=point["model"].label, config=config,
                results=results, data_key=data_key, data_spec=sweep.data if data_key else None,
                fault_tolerance=sweep.fault_tolerance, resources=sweep.resources,
            ))
        scalars = {axis: point[axis] for axis in SCALAR_AXES}
        if template.takes(scalars):
            tid = template.trial_id(scalars)
            trial = trials.get(tid) or trials.setdefault(tid, template.trial(tid, scalars))
        else:  # a value not of its field's type (never from a resolved Sweep): validated and hashed the slow way
            config = trial_config(sweep, point, data)
            trial = trials.get(trial_id(config)) or trials.setdefault(trial_id(config), template.first.model_copy(
                update={"trial_id": trial_id(config), "config": config}))
        out.append((point, trial))
    return out


SCALAR_AXES = ("unique_tokens", "epochs", "lr", "weight_decay", "seed")  # plain numbers of TrialConfig, always hashed


class TrialTemplate:
    """The trials of the grid points that differ only in SCALAR_AXES: one config, validated and
    hashed once, and its canonical JSON cut where each scalar's value goes."""

    def __init__(self, config: TrialConfig, trial: Trial):
        self.config, self.first = config, trial
        marks = {axis: f"@@scalegrid-{axis}@@" for axis in SCALAR_AXES}
        text = canonical_json(identity(config) | marks)
        order = sorted(SCALAR_AXES, key=lambda axis: text.index(f'"{marks[axis]}"'))
        self.order, self.pieces = order, []
        for axis in order:
            before, text = text.split(f'"{marks[axis]}"', 1)
            self.pieces.append(before)
        self.pieces.append(text)
        self.types = {axis: type(getattr(config, axis)) for axis in SCALAR_AXES}  # int or float, as validated
        self._texts: dict[tuple, str | None] = {}

    def takes(self, scalars: Mapping[str, AxisValue]) -> bool:
        """Each value of the type its field validates to (so setting it needs no validation), and finite."""
        return all(self._json(axis, scalars[axis]) is not None for axis in SCALAR_AXES)

    def _json(self, axis: str, value: AxisValue) -> str | None:
        """The value's JSON, as `canonical_json` writes it in the config (None: not `takes`)."""
        key = (axis, type(value), value)
        text = self._texts.get(key, False)
        if text is False:
            fits = type(value) is self.types[axis] and math.isfinite(value)
            text = self._texts[key] = self.types[axis].__repr__(value) if fits else None  # what `json` writes for an int or a finite float
        return text

    def trial_id(self, scalars: Mapping[str, AxisValue]) -> str:
        """The id of the template's config with `scalars` set (`takes`): `trial_id(config)` without building it."""
        parts = [self.pieces[0]]
        for axis, piece in zip(self.order, self.pieces[1:]):
            parts += (self._json(axis, scalars[axis]), piece)
        return hashlib.sha256("".join(parts).encode()).hexdigest()[:TRIAL_ID_CHARS]

    def trial(self, tid: str, scalars: Mapping[str, AxisValue]) -> Trial:
        config = _sharing_fields_set(self.config.model_copy(update=dict(scalars)), self.config)
        return _sharing_fields_set(self.first.model_copy(update={"trial_id": tid, "config": config}), self.first)


def _sharing_fields_set(copy, original):
    """`copy` holding `original`'s set of the fields given, not a copy of it: pydantic gives every
    `model_copy` its own (~700 bytes, half of a config's memory), and the models are frozen, so
    100,000 trials of one template share one (the update's fields are in it already)."""
    object.__setattr__(copy, "__pydantic_fields_set__", original.__pydantic_fields_set__)
    return copy


def expand(sweep: Sweep, data: DataIdentity, results: ResultsLayout | None = None) -> list[Trial]:
    """Every trial of the spec, deduplicated by trial_id (two labels for one shape are one trial)."""
    return list({t.trial_id: t for _, t in point_trials(sweep, data, results)}.values())

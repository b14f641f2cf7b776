"""Grid expansion and trial identity: spec -> list of `Trial`, each named by a hash of its config.

The grid is the product of the axes (model x unique_tokens x epochs x lr x weight_decay x seed),
plus every `include:` sub-grid (an include point's omitted axes take all of the axis' values),
minus every point that matches all keys of an `exclude:` entry. Each point becomes a
`TrialConfig` holding only what changes the result — resolved model sizes, the data's content
identity, the axis values, the training knobs — and its canonical JSON (sorted keys, floats in
shortest repr, so `0.1` and `1e-1` agree) is hashed into `trial_id`. Resources, paths and the
sweep's name are not part of it: two sweeps that ask for the same experiment share the result.

    >>> trials = expand(spec, identity)          # a pure function: no I/O, no Ray
    >>> trials[0].trial_id
    '3f1c9a0b2d7e4f65'
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from scalegrid.errors import UserError
from scalegrid.spec import AXES, SweepSpec, model_label, model_shape
from scalegrid.storage import location
from scalegrid.trainers.base import Trial, TrialConfig

if TYPE_CHECKING:  # `describe` builds it from the data spec without reading the corpus
    from scalegrid.trainers.data import DataIdentity

TRIAL_ID_CHARS = 16


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_hash(value: Any, chars: int = TRIAL_ID_CHARS) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:chars]


def identity(config: TrialConfig) -> dict[str, Any]:
    """The hashed fields: `member` and `distill` only when set, so a plain trial keeps its id."""
    fields = config.model_dump(mode="json")
    if fields.get("member") == 0:
        del fields["member"]
    if fields.get("distill") is None:
        del fields["distill"]
    return fields


def trial_id(config: TrialConfig) -> str:
    return content_hash(identity(config))


def _typed_points(spec: SweepSpec, field: str) -> list[dict[str, list]]:
    """Validate each include/exclude point with the spec's own axis validators."""
    points = []
    for i, point in enumerate(getattr(spec, field)):
        raw = spec.model_dump(mode="json") | {"include": [], "exclude": []}
        raw |= {axis: value for axis, value in point.items() if axis != "unique_tokens"}
        if "unique_tokens" in point:
            raw["data"] = raw["data"] | {"unique_tokens": point["unique_tokens"]}
        try:
            typed = SweepSpec.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"] if not isinstance(p, int))
            raise UserError(f"{field}[{i}].{loc}: {first['msg'].removeprefix('Value error, ')}") from None
        points.append({axis: _axis_values(typed, axis) for axis in point})
    return points


def _axis_values(spec: SweepSpec, axis: str) -> list:
    return spec.data.unique_tokens if axis == "unique_tokens" else getattr(spec, axis)


def _axis_key(axis: str, value: Any) -> Any:
    return model_label(value) if axis == "model" else value


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """The grid's points as axis -> value dicts, in spec order, without duplicates."""
    full = {axis: _axis_values(spec, axis) for axis in AXES}
    subgrids = [full] + [full | point for point in _typed_points(spec, "include")]
    excludes = _typed_points(spec, "exclude")
    points, seen = [], set()
    for grid in subgrids:
        for values in itertools.product(*(grid[axis] for axis in AXES)):
            point = dict(zip(AXES, values))
            key = tuple(_axis_key(a, point[a]) for a in AXES)
            excluded = any(
                all(_axis_key(a, point[a]) in {_axis_key(a, v) for v in ex[a]} for a in ex) for ex in excludes
            )
            if key not in seen and not excluded:
                seen.add(key)
                points.append(point)
    return points


def trial_config(spec: SweepSpec, point: dict[str, Any], data: DataIdentity) -> TrialConfig:
    return TrialConfig(
        trainer=spec.trainer,
        model=model_shape(point["model"]).as_dict(),
        data={**data.fields, "vocab_size": data.vocab_size},
        unique_tokens=point["unique_tokens"],
        epochs=point["epochs"],
        lr=point["lr"],
        weight_decay=point["weight_decay"],
        seed=point["seed"],
        train=spec.train,
    )


def expand(spec: SweepSpec, data: DataIdentity, *, results_dir: str | None = None) -> list[Trial]:
    """Every trial of the spec, deduplicated by trial_id (two labels for one shape are one trial)."""
    results_dir = results_dir or spec.results_dir
    data_dir = None if spec.trainer == "linreg" else location(results_dir).uri_of("cache", "tokens", data.key)
    trials: dict[str, Trial] = {}
    for point in grid_points(spec):
        config = trial_config(spec, point, data)
        tid = trial_id(config)
        trials.setdefault(
            tid,
            Trial(
                trial_id=tid,
                sweep=spec.name,
                model_label=model_label(point["model"]),
                config=config,
                results_dir=results_dir,
                data_dir=data_dir,
                fault_tolerance=spec.fault_tolerance,
            ),
        )
    return list(trials.values())


def tokens_seen(config: TrialConfig) -> int:
    """Tokens (samples, for linreg) the trial will train on: epochs x unique_tokens."""
    return config.epochs * config.unique_tokens


def estimated_flops(config: TrialConfig) -> float:
    shape = model_shape(config.model)
    vocab = config.data.get("vocab_size", 0)
    return float(shape.flops_per_token(vocab, config.train.seq_len)) * tokens_seen(config)


def num_params(config: TrialConfig) -> int:
    return model_shape(config.model).num_params(config.data.get("vocab_size", 0))

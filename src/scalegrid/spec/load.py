"""The front door: a YAML file or a dict, with the command line's overrides -> a validated
`SweepSpec` -> a resolved `Sweep`.

    sweep = load_sweep("sweeps/quickstart.yaml")    # or a dict of the same keys (the Python API)
    sweep = load_sweep("sweeps/quickstart.yaml", overrides=["train.lr=1e-3", "epochs=[1,2]"])

Every error is one `UserError` line naming the file (or `spec`) and the field, before anything is
read or written: YAML syntax, a field's type or range, the sections against each other, a value
that its axis does not take. An override (`--set key.path=value`) is applied to the spec as
written, before it is validated: its value is read as YAML, as if it stood at that place in the
file, so it meets every check a written value meets and is part of the resolved spec that
`RESULTS/sweeps/` records.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import yaml
from pydantic import ValidationError

from scalegrid.errors import UserError
from scalegrid.spec.resolve import Sweep, resolve
from scalegrid.spec.strict import describe_error
from scalegrid.spec.sweep import SweepSpec
from scalegrid.spec.yaml_file import read_yaml

SpecSource = str | Path | dict
# libyaml's safe loader where PyYAML was built with it: the same documents, ten times faster (a
# spec listing 100,000 seeds took 7 s with the pure-Python one).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_spec(raw: object, *, source: str = "spec") -> SweepSpec:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: the spec must be a YAML mapping (name:, trainer:, model:, ...)")
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise UserError(f"{source}: {describe_error(err, SweepSpec)}") from None




def load_spec(path: str | Path) -> SweepSpec:
    return parse_spec(read_yaml(Path(path)), source=str(path))


def with_overrides(raw: object, overrides: Sequence[str]) -> object:
    """`raw` (left as it is) with each `key.path=value` set, in order; the value read as YAML."""
    if not overrides or not isinstance(raw, dict):
        return raw
    raw = copy.deepcopy(raw)
    for text in overrides:
        key, equals, value = text.partition("=")
        path = key.strip().split(".")
        if not equals or not all(path):
            raise UserError(f"--set {text}: expected KEY.PATH=VALUE, e.g. --set train.lr=1e-3 or --set epochs=[1,2,4]")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise UserError(f"--set {text}: the value is not valid YAML ({getattr(err, 'problem', None) or err}); quote it") from None
        section = raw
        for depth, name in enumerate(path[:-1]):
            inner = section.get(name)
            if inner is None:
                inner = section[name] = {}
            elif not isinstance(inner, dict):
                whole = ".".join(path[: depth + 1])
                raise UserError(f"--set {text}: {whole} is a single value in the spec, not a section; set it whole: --set {whole}=...")
            section = inner
        section[path[-1]] = parsed
    return raw


def load_sweep(source: SpecSource, overrides: Sequence[str] = ()) -> Sweep:
    """A spec file (its errors name the file) or a dict (its errors name `spec`), with `overrides`
    (`key.path=value`) applied before it is validated, resolved."""
    raw = source if isinstance(source, dict) else read_yaml(Path(source))
    name = "spec" if isinstance(source, dict) else str(source)
    shown = f"{name} with --set {' '.join(overrides)}" if overrides else name
    sweep = resolve(parse_spec(with_overrides(raw, overrides), source=shown), source=shown)
    return replace(sweep, file=None if isinstance(source, dict) else str(source), overrides=tuple(overrides))

"""The front door: a YAML file or a dict -> a validated `SweepSpec` -> a resolved `Sweep`.

    sweep = load_sweep("sweeps/quickstart.yaml")    # or a dict of the same keys (the Python API)

Every error is one `UserError` line naming the file (or `spec`) and the field, before anything is
read or written: YAML syntax, a field's type or range, the sections against each other, a value
that its axis does not take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scalegrid.errors import UserError
from scalegrid.spec.resolve import Sweep, resolve
from scalegrid.spec.strict import describe_error
from scalegrid.spec.sweep import SweepSpec
from scalegrid.spec.yaml_file import read_yaml

SpecSource = str | Path | dict


def parse_spec(raw: Any, *, source: str = "spec") -> SweepSpec:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: the spec must be a YAML mapping (name:, trainer:, model:, ...)")
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise UserError(f"{source}: {describe_error(err, SweepSpec)}") from None


def load_spec(path: str | Path) -> SweepSpec:
    return parse_spec(read_yaml(Path(path)), source=str(path))


def load_sweep(source: SpecSource) -> Sweep:
    """A spec file (its errors name the file) or a dict (its errors name `spec`), resolved."""
    if isinstance(source, dict):
        return resolve(parse_spec(source), source="spec")
    return resolve(load_spec(source), source=str(source))

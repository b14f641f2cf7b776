"""The front door: a YAML file or a dict -> a validated `SweepSpec` -> a resolved `Sweep`.

    sweep = load_sweep("sweeps/quickstart.yaml")    # or a dict of the same keys (the Python API)

Every error is one `UserError` line naming the file (or `spec`) and the field, before anything is
read or written: YAML syntax, a field's type or range, the sections against each other, a value
that its axis does not take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from scalegrid.errors import UserError
from scalegrid.spec.resolve import Sweep, resolve
from scalegrid.spec.strict import describe_error
from scalegrid.spec.sweep import SweepSpec

SpecSource = str | Path | dict
# libyaml's safe loader where PyYAML was built with it: the same documents, ten times faster (a
# spec listing 100,000 seeds took 7 s with the pure-Python one).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_spec(raw: Any, *, source: str = "spec") -> SweepSpec:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: the spec must be a YAML mapping (name:, trainer:, model:, ...)")
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise UserError(f"{source}: {describe_error(err, SweepSpec)}") from None


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: spec file not found; pass the path of a sweep YAML such as sweeps/quickstart.yaml")
    try:
        raw = yaml.load(path.read_text(), Loader=_SAFE_LOADER)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise UserError(f"{path}: YAML syntax error{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read the spec ({err.__class__.__name__}); check the file") from None
    return parse_spec(raw, source=str(path))


def load_sweep(source: SpecSource) -> Sweep:
    """A spec file (its errors name the file) or a dict (its errors name `spec`), resolved."""
    if isinstance(source, dict):
        return resolve(parse_spec(source), source="spec")
    return resolve(load_spec(source), source=str(source))

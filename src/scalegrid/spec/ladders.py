"""Ladders: the ordered values a search walks (a spec's `search:` section), and their arithmetic.

    search:
      kind: local
      axes: {epochs: [1, 2, 4, 8, 16, 32, 64], weight_decay: [0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4]}
      start: {epochs: 4, weight_decay: 0.1}     # or `from_smaller`
      extend_edges: true                        # grow a ladder at an end where the optimum sits
      max_extensions: 4                         # values beyond each end, at most
      neighbourhood: coupled                    # coupled: each axis ±1 and the diagonals of `coupled`; full: 3^d - 1
      coupled: [[lr, epochs]]                   # pairs whose diagonal steps are neighbours too (the default
                                                #   when both are searched; [] for one axis at a time)
      certify_radius: 2                         # before certifying: the ring two steps out on each coupled pair
      confirm_seeds: 2                          # 2 more seeds at each optimum before it is certified

A ladder is an ordered list of an axis' values; a point's neighbours on it are one index up and
one down. A cell (one combination of the axes not searched) starts at `start` (an axis it does
not name: its ladder's middle value), or with `from_smaller` at the optimum the next smaller model
of the same other axes found, moved along the trend of the smaller sizes' optima (`walk.warm_start`;
the smallest starts at `start`). Which axes may be searched, and the
typing of their values by the axes' own checks, is `axes.py`'s (run by `resolve.py`); the walk is
`analysis/walk.py`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scalegrid.spec.strict import WrittenSelector


class SearchSpec(BaseModel):
    """Locally-optimal hyper-parameters per cell: coordinate descent over ladders, with a certificate."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # as every spec model: `true` is no count

    kind: Literal["local"] = "local"
    axes: WrittenSelector  # axis -> its ladder as written; typed by `resolve` into `Ladders`
    start: WrittenSelector = {}  # axis -> where every cell starts, or `from_smaller`
    extend_edges: bool = False
    max_extensions: int = Field(4, ge=0, le=1000)
    neighbourhood: Literal["coupled", "full"] = "coupled"
    coupled: list[list[str]] | None = None  # None: [[lr, epochs]] where both are searched
    confirm_seeds: int = Field(0, ge=0, le=100)
    certify_radius: int = Field(1, ge=1, le=2)  # 2: the ring two steps out on each coupled pair, before certifying

    @field_validator("start", mode="before")
    @classmethod
    def _from_smaller(cls, value: Any):
        if value == "from_smaller":
            return {"from_smaller": True}
        if isinstance(value, str):
            raise ValueError(f"{value!r}: give `from_smaller` or axis values such as {{epochs: 4, lr: 3e-3}}")
        return value

    @field_validator("axes")
    @classmethod
    def _ladders(cls, value: dict[str, list]):
        if not value:
            raise ValueError("name at least one axis to search, e.g. {weight_decay: [0.1, 0.4, 1.6]}")
        return value



Scalar = int | float | str | bool  # a searched axis' value: a number, an order, a schedule, a flag


@dataclass(frozen=True)
class Ladders:
    """A searched spec's `search:` resolved (`resolve.py`): every ladder typed by its axis' own
    checks and sorted, and where every cell starts (a `from_smaller` cell: where the smallest does)."""

    axes: tuple[tuple[str, tuple[Scalar, ...]], ...]
    start: tuple[tuple[str, Scalar], ...]  # every searched axis: given, else its ladder's middle value
    from_smaller: bool = False
    extend_edges: bool = False
    max_extensions: int = 4
    coupled: tuple[tuple[str, str], ...] = ()  # pairs of searched axes whose diagonal steps are neighbours too
    full: bool = False  # every point around a centre is its neighbour (3^d - 1)
    confirm_seeds: int = 0  # extra seeds of each optimum before it is certified
    certify_radius: int = 1  # 2: before certifying, the ring two steps out on each coupled pair too

    @property
    def ladders(self) -> dict[str, tuple[Scalar, ...]]:
        return dict(self.axes)

    def start_values(self) -> dict[str, Scalar]:
        return dict(self.start)


def monotone(where: str, ladder: list) -> list:
    """A ladder has 2 values or more; a numeric one rises (or falls) at every step and is returned
    rising. Other values (an order, a schedule) keep the order given."""
    if len(ladder) < 2:
        raise ValueError(f"{where}: a ladder is a list of at least 2 values (got {ladder}); a single value is a grid value")
    if len({str(v) for v in ladder}) < len(ladder):
        raise ValueError(f"{where}: a value appears twice in {ladder}; list each value once")
    if not all(_number(v) for v in ladder):
        return ladder
    rising = ladder[1] > ladder[0]
    for i in range(1, len(ladder)):
        if (ladder[i] > ladder[i - 1]) != rising:
            raise ValueError(
                f"{where}: not monotone at [{i}] ({ladder[i]:g} after {ladder[i - 1]:g}); "
                "list a ladder's values in increasing (or decreasing) order"
            )
    return sorted(ladder)


def on_ladder(ladder: list, value: Any) -> Any | None:
    """The ladder's own value equal to `value` (numbers: to 1e-9), or None."""
    for v in ladder:
        if v == value or (_number(v) and _number(value) and math.isclose(v, value, rel_tol=1e-9)):
            return v
    return None


def extended_value(ladder: tuple | list, side: int) -> Any | None:
    """The next value beyond a ladder's end (side +1: above, -1: below) at the ratio of its last
    step there (12.8 after 3.2, 6.4; 0.0333 below 0.1, 0.3), to 3 significant digits, an integer
    for an integer ladder; None without a ratio (a zero, a non-number) or when rounding goes nowhere."""
    inner, end = (ladder[-2], ladder[-1]) if side > 0 else (ladder[1], ladder[0])
    if not all(_number(v) for v in ladder) or inner == 0 or end == 0:
        return None
    value = end * (end / inner)
    value = int(round(value)) if all(isinstance(v, int) for v in ladder) else float(f"{value:.3g}")
    beyond = value > end if side > 0 else value < end
    return value if math.isfinite(value) and value != 0 and beyond else None  # 0: rounded away (0.5 epochs)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

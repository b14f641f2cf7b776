"""The report as data: sections of paragraphs, tables, figures and fitted numbers, before rendering.

Sections are built by `sections/` and written by `render.py` to HTML, Markdown and fits.json, so
the three always say the same thing. A section that cannot be made has `skipped` set to a
one-line reason, and keeps only the fitted numbers and notes it had found (shown in fits.json).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalegrid.payloads import JsonObject
from scalegrid.report.figures import Figure


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]  # already formatted for display
    note: str = ""


@dataclass
class Section:
    key: str  # stable id: fits.json key and HTML anchor
    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    fits: JsonObject = field(default_factory=dict)  # every fitted number, for fits.json
    headline: list[str] = field(default_factory=list)  # one-liners lifted into the summary
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)  # partial inputs, parts left out and why

    def skip(self, reason: str) -> "Section":
        self.skipped = " ".join(reason.split())
        return self


@dataclass
class Document:
    title: str
    results_dir: str
    generated_at: str
    provenance: dict[str, str]
    partial_reasons: list[str]
    sections: list[Section]

    @property
    def partial(self) -> bool:
        return bool(self.partial_reasons)


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell: 4 significant digits, 'n/a' for missing."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "n/a"
    return f"{number:.{digits}g}"


def fmt_ci(value: Any, ci: Any, digits: int = 4, unit: str = "") -> str:
    """'3.412 [3.401, 3.425]' or the value alone when there is no interval; `unit` follows the value."""
    text = fmt(value, digits) + (unit if fmt(value, digits) != "n/a" else "")
    if ci is None:
        return text
    try:
        lo, hi = ci
        if lo is None or hi is None or not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
            return text
    except (TypeError, ValueError):
        return text
    return f"{text} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars and arrays to Python, NaN and infinities to null, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)

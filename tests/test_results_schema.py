"""The results schema is declared once (store.RunRow, store.CurveRow) and documented in
docs/results.md: the two agree, column by column, type by type."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from scalegrid import store

DOC = (Path(__file__).parents[1] / "docs" / "results.md").read_text()
TYPES = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
         "timestamp (UTC)": pa.timestamp("us", tz="UTC"), "list<string>": pa.list_(pa.string()),
         "list<float64>": pa.list_(pa.float64())}


def documented(heading: str) -> list[tuple[str, pa.DataType]]:
    section = DOC.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", section, flags=re.M)
    return [(name, TYPES[kind]) for name, kind in rows]


def test_run_and_ensemble_columns_are_documented_in_order():
    assert documented("`runs/` and `ensembles/`") == [(f.name, f.type) for f in store.RUN_SCHEMA]


def test_curve_columns_are_documented_in_order():
    assert documented("`curves/`") == [(f.name, f.type) for f in store.CURVE_SCHEMA]


def test_search_columns_are_documented_in_order():
    assert documented("`search/`") == [(f.name, f.type) for f in store.SEARCH_SCHEMA]

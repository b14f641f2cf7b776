"""Table helpers shared by the fits and recipes: column checks, filters, one fit per group.

Any DataFrame with the right columns works; scalegrid's runs table (docs/results.md) is one of them.
Problems are `FitInputError`s whose message names the column and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import pandas as pd

from scalegrid.analysis.least_squares import FitInputError

T = TypeVar("T")

COMPLETED = "COMPLETED"


def require_columns(df: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ", ".join(map(str, df.columns)) or "none"
        raise FitInputError(
            f"missing column {', '.join(map(repr, missing))} (columns present: {have}); "
            "name the right one with the matching option"
        )


def numeric_column(df: pd.DataFrame, column: str) -> np.ndarray:
    """The column as float64; NaN or non-numeric values are an error naming the column."""
    require_columns(df, column)
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        raise FitInputError(
            f"column {column!r} has {int(bad.sum())} missing or non-numeric values; "
            "drop those rows first"
        )
    return values


def positive_column(df: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric column whose logarithm is taken: every value must be > 0."""
    values = numeric_column(df, column)
    if (values <= 0).any():
        first = values[values <= 0][0]
        raise FitInputError(
            f"column {column!r} has {int((values <= 0).sum())} values <= 0 (e.g. {first:g}) "
            "where a logarithm is taken; drop those rows or pick another column"
        )
    return values


def completed(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose `status` is COMPLETED; every row when the table has no status column."""
    if "status" not in df.columns:
        return df
    return df[df["status"] == COMPLETED]


def of_stage(df: pd.DataFrame, stage: str | Sequence[str] | None) -> pd.DataFrame:
    """Rows of the given stage(s) when the table has a `stage` column; else every row.

    Train rows are single models: extra ensemble members (`member` > 0) are left out, so a lucky
    member seed never stands in for the recipe's best single run; the ensemble rows hold them.
    """
    if stage is None or "stage" not in df.columns:
        return df
    stages = [stage] if isinstance(stage, str) else list(stage)
    rows = df[df["stage"].isin(stages)]
    if "train" in stages and "member" in rows.columns:
        member = pd.to_numeric(rows["member"], errors="coerce").fillna(0)
        rows = rows[(rows["stage"] != "train") | (member == 0)]
    return rows


def by_size(df: pd.DataFrame, *then: str) -> pd.DataFrame:
    """The rows with the smallest model first (by `params`), then by `then`, the order otherwise
    kept: llama-50k before llama-1m, where a sort by name puts llama-1m first."""
    keys = [c for c in dict.fromkeys(("params", *then)) if c in df.columns]
    return df.sort_values(keys, kind="stable") if keys else df


def models_by_size(df: pd.DataFrame) -> list[str]:
    """The `model` labels of a table, smallest first (by `params` where the table has it)."""
    return list(by_size(df.dropna(subset=["model"]))["model"].drop_duplicates())


def drop_highest(df: pd.DataFrame, column: str, k: int) -> pd.DataFrame:
    """Drop the k rows with the highest `column` (Besiroglu et al. drop Chinchilla's 5 highest)."""
    if k < 0:
        raise FitInputError(f"--drop-highest-loss must be >= 0, got {k}")
    if k == 0:
        return df
    numeric_column(df, column)
    return df.sort_values(column, kind="stable").iloc[: max(len(df) - k, 0)]


def groups(df: pd.DataFrame, by: Sequence[str]) -> list[tuple[dict[str, object], pd.DataFrame]]:
    """(group key as {column: value}, rows) for each group of `by`, in sorted order; one group
    with an empty key when `by` is empty."""
    by = list(by)
    if not by:
        return [({}, df)]
    require_columns(df, *by)
    out = []
    for key, rows in df.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append(({col: _plain(v) for col, v in zip(by, key)}, rows))
    return out


def per_group(
    df: pd.DataFrame, by: Sequence[str], fit: Callable[[pd.DataFrame], T]
) -> list[tuple[dict[str, object], T]]:
    """Apply `fit` to each group; an error names the group it came from."""
    results = []
    for key, rows in groups(df, by):
        try:
            results.append((key, fit(rows)))
        except FitInputError as err:
            if not key:
                raise
            label = ", ".join(f"{k}={v}" for k, v in key.items())
            raise FitInputError(f"group {label}: {err}") from err
    return results


def _plain(value: object) -> object:
    """numpy scalars -> Python scalars, so group keys serialise to JSON."""
    if isinstance(value, np.generic):
        return value.item()
    return value

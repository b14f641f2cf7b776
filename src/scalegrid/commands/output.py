"""What the commands print for programs: one JSON document on stdout (`--json`, `--json-summary`)."""

from __future__ import annotations

import json

import pandas as pd


def records(frame: pd.DataFrame | None) -> list[dict]:
    """A table as JSON rows: NaN and missing values null, times in ISO 8601, numpy numbers plain."""
    if frame is None or frame.empty:
        return []
    return json.loads(frame.to_json(orient="records", date_format="iso", default_handler=str))


def unreadable(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"path": path, "reason": reason} for path, reason in pairs]


def print_json(document: dict) -> None:
    print(json.dumps(document, indent=1, default=str))

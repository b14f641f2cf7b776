"""What a report is made from: the runs and curves of a results directory, and how complete they are.

A results directory may be mid-sweep: runs still missing, some FAILED, a file unreadable. The
report is made of what is there; `Inputs.partial_reasons` says in words what is not, and every
section sees only finished rows (COMPLETED; DIVERGED rows are results but carry no usable loss).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalegrid import store
from scalegrid.analysis.epochs import is_adaptive
from scalegrid.analysis.walk import search_outcomes
from scalegrid.errors import UserError
from scalegrid.grid import grid_points
from scalegrid.spec import parse_spec, resolve
from scalegrid.storage import ResultsLayout, layout
from scalegrid.storage.layout import CURVES, SEARCH
from scalegrid.trial import Status

FAILED, DIVERGED, COMPLETED = Status.FAILED.value, Status.DIVERGED.value, Status.COMPLETED.value


@dataclass
class Inputs:
    results_dir: Path
    runs: pd.DataFrame  # every readable row, any status, but adaptive runs
    curves: pd.DataFrame
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    expected: dict[str, int] = field(default_factory=dict)  # sweep name -> grid size of its latest spec
    search: pd.DataFrame = field(default_factory=pd.DataFrame)  # RESULTS/search/: one row per step of a cell's search
    evals: pd.DataFrame = field(default_factory=pd.DataFrame)  # RESULTS/evals/: one row per downstream evaluation's metric
    # Adaptive runs (`epochs: {max, stop}`): their `epochs` is a maximum, not what they trained, so
    # the sections of the fixed grid (loss against epochs, certificates, best runs) leave them out;
    # the epoch-signals section compares them with the grid, and the summary counts them.
    adaptive: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def all_runs(self) -> pd.DataFrame:
        """Every readable row, adaptive runs included."""
        return pd.concat([self.runs, self.adaptive], ignore_index=True) if len(self.adaptive) else self.runs

    @property
    def completed(self) -> pd.DataFrame:
        """Rows with a usable loss: COMPLETED and a finite val_loss."""
        runs = self.runs
        if not len(runs):
            return runs
        ok = (runs["status"] == COMPLETED) & np.isfinite(pd.to_numeric(runs["val_loss"], errors="coerce"))
        return runs[ok]

    def stage(self, name: str) -> pd.DataFrame:
        rows = self.completed
        if "stage" not in rows.columns:
            return rows if name == "train" else rows.iloc[0:0]
        stage = rows["stage"].fillna("train")
        return rows[stage == name]

    @property
    def pending(self) -> dict[str, int]:
        """Train trials each sweep's grid has that the store does not hold yet."""
        out = {}
        runs = self.all_runs
        for sweep, n_expected in self.expected.items():
            have = runs[(runs["sweep"] == sweep) & (runs["stage"].fillna("train") == "train")] if len(runs) else runs
            missing = n_expected - have["trial_id"].nunique() if len(have) else n_expected
            if missing > 0:
                out[sweep] = int(missing)
        return out

    @property
    def partial_reasons(self) -> list[str]:
        reasons = []
        runs = self.all_runs
        counts = runs["status"].value_counts() if len(runs) else pd.Series(dtype=int)
        if counts.get(FAILED, 0):
            reasons.append(f"{counts[FAILED]} trials FAILED (a re-run of the sweep retries them)")
        for sweep, missing in self.pending.items():
            reasons.append(f"sweep {sweep}: {missing} trials of its grid have no result yet")
        searching = int(search_outcomes(self.search)["outcome"].isin(["searching", "confirming"]).sum()) if len(self.search) else 0
        if searching:
            reasons.append(f"{searching} searched cells have not finished their search (a re-run of the sweep goes on)")
        if self.unreadable:
            names = ", ".join(Path(str(p)).name for p, _ in self.unreadable[:3]) + (", ..." if len(self.unreadable) > 3 else "")
            reasons.append(f"{len(self.unreadable)} result files are unreadable and were skipped ({names})")
        if not len(runs):
            reasons.append("no runs yet")
        return reasons


def load_inputs(results_dir: str | Path, snapshot: store.Snapshot | None = None) -> Inputs:
    """Read a results directory (its runs from `snapshot` when the caller already read them);
    an unreadable or missing directory is a `UserError`."""
    path = Path(results_dir)
    if not path.is_dir():
        raise UserError(f"{path}: not a results directory; pass the `results:` directory of a sweep")
    results = layout(path)
    try:
        snapshot = snapshot if snapshot is not None else store.read(results)
        curves = store.scan(results, CURVES)
        search = store.scan(results, SEARCH)
    except OSError as err:
        raise UserError(f"{path}: cannot read the results ({err.strerror or err}); check its permissions") from None
    runs = snapshot.all_runs
    if not len(runs):  # an empty report would say nothing, and look like one that does
        raise UserError(_nothing_to_report(path, snapshot.unreadable))
    for column in ("stage", "status"):
        if column in runs.columns:
            runs[column] = runs[column].astype(object)
    adaptive = is_adaptive(runs)
    return Inputs(
        results_dir=path,
        runs=runs[~adaptive].reset_index(drop=True),
        adaptive=runs[adaptive].reset_index(drop=True),
        curves=curves.frame,
        unreadable=snapshot.unreadable + curves.unreadable + search.unreadable,
        expected=expected_trials(results),
        search=search.frame,
        evals=snapshot.evals,
    )


def _nothing_to_report(path: Path, unreadable: list[tuple[str, str]]) -> str:
    if unreadable:
        named = ", ".join(f"{Path(str(p)).name} ({why})" for p, why in unreadable[:3])
        return f"{path}: none of its {len(unreadable)} run files can be read ({named}); nothing to report"
    return f"{path}: no runs (runs/*.parquet) to report; pass the `results:` directory of a sweep that has run"


def expected_trials(results: ResultsLayout) -> dict[str, int]:
    """Grid size of each sweep's latest spec record (RESULTS/sweeps/*.json); {} where unknown.

    Best effort: a record this version cannot parse is ignored, never an error."""
    latest: dict[str, tuple[str, int]] = {}
    for name in results.list(*results.sweep_records(), suffix=".json"):
        try:
            record = json.loads(results.read_bytes(*results.sweep_records(), name))
            source = results.shown(*results.sweep_records(), name)
            spec = resolve(parse_spec(record["spec"], source=source), source=source)
            if spec.search is not None:
                continue  # a search's trials are not known in advance: its cells' states say how far it is
            created = str(record.get("created_at", ""))
            if spec.name not in latest or created >= latest[spec.name][0]:
                latest[spec.name] = (created, len(grid_points(spec)))
        except Exception:  # noqa: BLE001 - an old or foreign record only loses the pending count
            continue
    return {name: n for name, (_, n) in latest.items()}

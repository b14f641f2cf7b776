"""The results store: append-only Parquet, one file per finished trial, written atomically.

    RESULTS/runs/<trial_id>.parquet     one row per trial (RUN_SCHEMA)
    RESULTS/curves/<trial_id>.parquet   one row per evaluation
    RESULTS/sweeps/<name>-<hash>.json   the resolved spec and provenance of each `scalegrid run`
    RESULTS/cache/                      token caches, shared by trials

A file is written to a hidden temporary name in the same directory and renamed into place, so a
reader (or a killed writer) never sees half a file. The store, not Ray Tune's experiment state,
says what is done: a trial is done when its run row says COMPLETED or DIVERGED. A run file that
cannot be read is reported and its trial counted as not done; it is never deleted — before a new
result takes its name it is renamed aside to `<trial_id>.parquet.corrupt-<time>`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scalegrid.errors import UserError

DONE_STATUSES = ("COMPLETED", "DIVERGED")  # a diverged trial is a result: re-running repeats it

RUN_SCHEMA = pa.schema(
    [
        ("trial_id", pa.string()),
        ("sweep", pa.string()),
        ("stage", pa.string()),
        ("status", pa.string()),
        ("trainer", pa.string()),
        ("model", pa.string()),
        ("params", pa.int64()),
        ("params_nonembed", pa.int64()),
        ("unique_tokens", pa.int64()),
        ("epochs", pa.int64()),
        ("tokens_seen", pa.int64()),
        ("lr", pa.float64()),
        ("weight_decay", pa.float64()),
        ("seed", pa.int64()),
        ("members", pa.int64()),
        ("val_loss", pa.float64()),
        ("best_val_loss", pa.float64()),
        ("train_loss", pa.float64()),
        ("flops", pa.float64()),
        ("wall_s", pa.float64()),
        ("error", pa.string()),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("config_json", pa.string()),  # the full TrialConfig, canonical JSON
        ("scalegrid_version", pa.string()),
        ("git_commit", pa.string()),
        ("hostname", pa.string()),
        ("device", pa.string()),
    ]
)
RUN_COLUMNS = tuple(RUN_SCHEMA.names)

CURVE_SCHEMA = pa.schema(
    [
        ("trial_id", pa.string()),
        ("step", pa.int64()),
        ("epoch", pa.float64()),
        ("tokens_seen", pa.int64()),
        ("train_loss", pa.float64()),
        ("val_loss", pa.float64()),
        ("lr", pa.float64()),
        ("wall_s", pa.float64()),
    ]
)


def runs_dir(results: str | Path) -> Path:
    return Path(results) / "runs"


def curves_dir(results: str | Path) -> Path:
    return Path(results) / "curves"


def _atomic_write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        pq.write_table(table, tmp)
        if path.exists() and not _readable(path):
            path.rename(path.with_name(f"{path.name}.corrupt-{int(time.time())}"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _readable(path: Path) -> bool:
    try:
        pq.read_metadata(path)
        return True
    except Exception:
        return False


def write_run(results: str | Path, row: dict) -> Path:
    """Write one trial's row. Call after `write_curves`: the run row is what marks a trial done."""
    missing = [c for c in RUN_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"run row lacks columns {missing}")
    table = pa.Table.from_pylist([{c: row[c] for c in RUN_COLUMNS}], schema=RUN_SCHEMA)
    path = runs_dir(results) / f"{row['trial_id']}.parquet"
    _atomic_write(table, path)
    return path


def write_curves(results: str | Path, trial_id: str, rows: list[dict]) -> Path:
    table = pa.Table.from_pylist(
        [{c: (trial_id if c == "trial_id" else r.get(c)) for c in CURVE_SCHEMA.names} for r in rows],
        schema=CURVE_SCHEMA,
    )
    path = curves_dir(results) / f"{trial_id}.parquet"
    _atomic_write(table, path)
    return path


@dataclass
class Scan:
    """What a directory of Parquet files holds: the rows that read, and the files that did not."""

    frame: pd.DataFrame
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def warn(self) -> None:
        for path, reason in self.unreadable:
            print(
                f"scalegrid: warning: {path} is unreadable ({reason}); skipped and kept, its trial counts as not done",
                file=sys.stderr,
            )


def _scan(directory: Path, schema: pa.Schema) -> Scan:
    frames, unreadable = [], []
    files = sorted(p for p in directory.glob("*.parquet") if not p.name.startswith(".")) if directory.is_dir() else []
    for path in files:
        try:
            table = pq.read_table(path)
        except Exception as err:  # truncated, not Parquet, unreadable: report, never delete
            unreadable.append((path, err.__class__.__name__))
            continue
        frames.append(table)
    if not frames:
        return Scan(schema.empty_table().to_pandas(), unreadable)
    table = pa.concat_tables(frames, promote_options="permissive")
    return Scan(table.to_pandas(), unreadable)


def check_results_dir(results: str | Path) -> Path:
    """Refuse, before anything is written, a results path that is a file or cannot be written."""
    if "://" in str(results):
        raise UserError(f"results: {results} is a URI; this version writes results to a local directory only")
    path = Path(results)
    if path.exists() and not path.is_dir():
        raise UserError(f"results: {path} is a file, not a directory; choose another path with --results")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not _can_create_in(existing):
        raise UserError(f"results: {existing} is not writable; choose a writable directory with --results")
    return path


def _can_create_in(directory: Path) -> bool:
    """Try it: as root, permission bits say yes where the filesystem still says no."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".scalegrid-probe-"):
            return True
    except OSError:
        return False


def check_readable_results(results: str | Path) -> Path:
    path = Path(results)
    if not path.is_dir():
        raise UserError(f"{path}: not a results directory; pass the `results:` directory of a sweep")
    return path


def scan_runs(results: str | Path) -> Scan:
    return _scan(runs_dir(results), RUN_SCHEMA)


def scan_curves(results: str | Path) -> Scan:
    return _scan(curves_dir(results), CURVE_SCHEMA)


def load_runs(results: str | Path) -> pd.DataFrame:
    """One row per trial; unreadable files are reported on stderr and skipped."""
    scan = scan_runs(check_readable_results(results))
    scan.warn()
    return scan.frame


def load_curves(results: str | Path) -> pd.DataFrame:
    scan = scan_curves(check_readable_results(results))
    scan.warn()
    return scan.frame


def done_trial_ids(runs: pd.DataFrame) -> set[str]:
    return set(runs.loc[runs["status"].isin(DONE_STATUSES), "trial_id"])

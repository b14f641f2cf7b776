"""The results store: append-only Parquet, one file per finished trial, written atomically.

    RESULTS/runs/<trial_id>.parquet     one row per trial (RUN_SCHEMA)
    RESULTS/curves/<trial_id>.parquet   one row per evaluation
    RESULTS/ensembles/<trial_id>.parquet  one row per (grid point, k): an ensemble of the first k members
    RESULTS/models/<trial_id>/          final weights of ensemble members and teachers (safetensors)
    RESULTS/stages/<sweep>.json         the stage graph of the latest run: ensembles and students
    RESULTS/sweeps/<name>-<hash>.json   the resolved spec and provenance of each `scalegrid run`
    RESULTS/cache/                      token caches and teacher corpora, shared by trials

`RESULTS` is a local directory or a URI on shared storage (`file://`, `s3://`, `gs://`): all I/O
goes through the pyarrow filesystem of `scalegrid.storage.location(RESULTS)`. A file is written
to a hidden temporary name in the same directory and renamed into place (on an object store: one
PUT), so a reader (or a killed writer) never sees half a file. The store, not Ray Tune's
experiment state, says what is done: a trial is done when its run row says COMPLETED or
DIVERGED. A run file that cannot be read is reported and its trial counted as not done; it is
never deleted — before a new result takes its name it is renamed aside to
`<trial_id>.parquet.corrupt-<time>`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scalegrid.errors import UserError
from scalegrid.storage import ResultsLocation, check_reachable, location, redacted

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
        ("member", pa.int64()),  # train: the ensemble member index (0: the grid point's own trial)
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

# Columns of the later stages, written only by the rows they describe (other rows read them as null).
STAGE_SCHEMA = pa.schema(
    [
        ("member_trial_ids", pa.list_(pa.string())),  # ensemble: its members, in member order
        ("teacher_id", pa.string()),  # distill: the teacher's ensemble row (k > 1) or trial (k = 1)
        ("teacher_kind", pa.string()),  # distill: ensemble | model
        ("teacher_trial_ids", pa.list_(pa.string())),  # distill: the teacher's members
        ("distill_method", pa.string()),  # distill: token | sequence
    ]
)
ENSEMBLE_SCHEMA = pa.schema([*RUN_SCHEMA, STAGE_SCHEMA.field("member_trial_ids")])

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


def ensembles_dir(results: str | Path) -> Path:
    return Path(results) / "ensembles"


def _atomic_write(table: pa.Table, loc: ResultsLocation, directory: str, name: str) -> str:
    if loc.is_file(directory, name) and not _readable(loc, directory, name):
        loc.move((directory, name), (directory, f"{name}.corrupt-{int(time.time())}"))
    return loc.write_atomic((directory, name), lambda path, fs: pq.write_table(table, path, filesystem=fs))


def _readable(loc: ResultsLocation, directory: str, name: str) -> bool:
    try:
        pq.read_metadata(loc.path(directory, name), filesystem=loc.fs)
        return True
    except Exception:
        return False


def write_run(results: str | Path | ResultsLocation, row: dict) -> str:
    """Write one trial's row. Call after `write_curves`: the run row is what marks a trial done."""
    return _write_row(results, "runs", row)


def write_ensemble(results: str | Path | ResultsLocation, row: dict) -> str:
    """Write one ensemble row (RUN_SCHEMA plus `member_trial_ids`) under RESULTS/ensembles/."""
    return _write_row(results, "ensembles", row)


def _write_row(results: str | Path | ResultsLocation, directory: str, row: dict) -> str:
    missing = [c for c in RUN_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"run row lacks columns {missing}")
    schema = pa.schema([*RUN_SCHEMA, *(f for f in STAGE_SCHEMA if f.name in row)])
    table = pa.Table.from_pylist([{c: row[c] for c in schema.names}], schema=schema)
    return _atomic_write(table, location(results), directory, f"{row['trial_id']}.parquet")


def write_curves(results: str | Path | ResultsLocation, trial_id: str, rows: list[dict]) -> str:
    table = pa.Table.from_pylist(
        [{c: (trial_id if c == "trial_id" else r.get(c)) for c in CURVE_SCHEMA.names} for r in rows],
        schema=CURVE_SCHEMA,
    )
    return _atomic_write(table, location(results), "curves", f"{trial_id}.parquet")


@dataclass
class Scan:
    """What a directory of Parquet files holds: the rows that read, and the files that did not."""

    frame: pd.DataFrame
    unreadable: list[tuple[Path | str, str]] = field(default_factory=list)

    def warn(self) -> None:
        for path, reason in self.unreadable:
            print(
                f"scalegrid: warning: {path} is unreadable ({reason}); skipped and kept, its trial counts as not done",
                file=sys.stderr,
            )


def _scan(loc: ResultsLocation, directory: str, schema: pa.Schema) -> Scan:
    frames, unreadable = [], []
    for name in loc.list(directory, suffix=".parquet"):
        shown = loc.local_path / directory / name if loc.local_path is not None else redacted(loc.uri_of(directory, name))
        try:
            table = pq.read_table(loc.path(directory, name), filesystem=loc.fs)
        except Exception as err:  # truncated, not Parquet, unreadable: report, never delete
            unreadable.append((shown, err.__class__.__name__))
            continue
        frames.append(table)
    if not frames:
        return Scan(schema.empty_table().to_pandas(), unreadable)
    table = pa.concat_tables(frames, promote_options="permissive")
    return Scan(table.to_pandas(), unreadable)


def check_results_dir(results: str | Path) -> Path | str:
    """Refuse, before anything is written, a results path that is a file or cannot be written.

    Returns the local directory (a path or a file:// URI's path), or the URI of an object store."""
    loc = location(results)
    if loc.local_path is None:
        check_reachable(loc)
        return loc.uri
    path = loc.local_path
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


def check_readable_results(results: str | Path) -> Path | str:
    loc = location(results)
    try:
        found = loc.is_dir()
    except OSError as err:
        raise UserError(f"{loc}: cannot read the results ({' '.join(str(err).split())[:200]})") from None
    if not found:
        raise UserError(f"{loc}: not a results directory; pass the `results:` directory of a sweep")
    return loc.handle


def scan_runs(results: str | Path | ResultsLocation) -> Scan:
    return _scan(location(results), "runs", RUN_SCHEMA)


def scan_ensembles(results: str | Path | ResultsLocation) -> Scan:
    return _scan(location(results), "ensembles", ENSEMBLE_SCHEMA)


def scan_curves(results: str | Path | ResultsLocation) -> Scan:
    return _scan(location(results), "curves", CURVE_SCHEMA)


def load_runs(results: str | Path) -> pd.DataFrame:
    """One row per trial and per ensemble (`stage` train | distill | ensemble): RESULTS/runs/ and
    RESULTS/ensembles/ together, as the analysis reads them; unreadable files are reported on
    stderr and skipped."""
    results = check_readable_results(results)
    runs, ensembles = scan_runs(results), scan_ensembles(results)
    for scan in (runs, ensembles):
        scan.warn()
    if not len(ensembles.frame):
        return runs.frame
    if not len(runs.frame):
        return ensembles.frame
    return pd.concat([runs.frame, ensembles.frame], ignore_index=True)


def load_ensembles(results: str | Path) -> pd.DataFrame:
    """The ensemble rows alone (RESULTS/ensembles/), with `member_trial_ids`."""
    scan = scan_ensembles(check_readable_results(results))
    scan.warn()
    return scan.frame


def load_curves(results: str | Path) -> pd.DataFrame:
    scan = scan_curves(check_readable_results(results))
    scan.warn()
    return scan.frame


def run_status(results: str | Path | ResultsLocation, trial_id: str) -> str | None:
    """The status in a trial's run row, or None when there is none or it cannot be read."""
    loc = location(results)
    try:
        table = pq.read_table(loc.path("runs", f"{trial_id}.parquet"), columns=["status"], filesystem=loc.fs)
        return table.column("status")[0].as_py()
    except Exception:  # missing, truncated, not Parquet: not done
        return None


def done_trial_ids(runs: pd.DataFrame) -> set[str]:
    return set(runs.loc[runs["status"].isin(DONE_STATUSES), "trial_id"])

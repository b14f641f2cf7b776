"""The results store: append-only Parquet, one file per finished trial, written atomically.

    RESULTS/runs/<trial_id>.parquet      one `RunRow` per trial (train and distill stages)
    RESULTS/curves/<trial_id>.parquet    one `CurveRow` per evaluation
    RESULTS/ensembles/<row_id>.parquet   one `RunRow` per (grid point, k): an ensemble of the first k members
    RESULTS/search/<cell_id>.parquet     one `SearchRow` per step of a cell's search, rewritten as it advances
    RESULTS/evals/<eval_id>.parquet      one `EvalRow` per metric of a downstream evaluation (a model on a task)

Every file is written with the whole declared schema (columns a row does not use are null), so
pandas, polars and DuckDB globs see the same columns in every file. The schemas are derived from
the row dataclasses: a column is declared once. A file is written through the results layout
(temporary name, then rename; on an object store one PUT), so a reader (or a killed writer)
never sees half a file. The store, not Ray Tune's experiment state, says what is done: a trial is
done when its run row says COMPLETED or DIVERGED. A file that cannot be read is reported and its
trial counted as not done; it is never deleted — before a new result takes its name it is renamed
aside to `<name>.parquet.corrupt-<time>`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow.fs import FileType

from scalegrid.storage import ResultsLayout, check_readable, layout
from scalegrid.storage.layout import CURVES, ENSEMBLES, EVALS, RUNS, SEARCH
from scalegrid.trial import DONE_STATUSES, Status
from scalegrid.store.rows import SCHEMAS, EvalRow, RunRow, SearchRow
from scalegrid.store.validation import RULES, footers, misnamed


# --- writing ----------------------------------------------------------------------------------------


def write_run(results: ResultsLayout, row: RunRow) -> str:
    """Write one trial's row. Call after `write_curves`: the run row is what marks a trial done."""
    return _write(results, RUNS, row.trial_id, [dataclasses.asdict(row)])


def write_ensemble(results: ResultsLayout, row: RunRow) -> str:
    """Write one ensemble row (stage `ensemble`, `member_trial_ids`) under RESULTS/ensembles/."""
    return _write(results, ENSEMBLES, row.trial_id, [dataclasses.asdict(row)])


def write_curves(results: ResultsLayout, trial_id: str, rows: list[dict]) -> str:
    """The trial's evaluation rows (dicts with the CurveRow fields; others are dropped)."""
    return _write(results, CURVES, trial_id, [{**r, "trial_id": trial_id} for r in rows])


def write_search(results: ResultsLayout, cell_id: str, rows: list[SearchRow]) -> str:
    """A cell's search so far, every step, replacing the file written at its previous step."""
    return _write(results, SEARCH, cell_id, [dataclasses.asdict(r) for r in rows])


def write_eval(results: ResultsLayout, rows: list[EvalRow]) -> str:
    """One evaluation's rows (a metric each, or its FAILED row), replacing a FAILED attempt's."""
    return _write(results, EVALS, rows[0].eval_id, [dataclasses.asdict(r) for r in rows])


def load_evals(results) -> pd.DataFrame:
    """Every downstream evaluation (RESULTS/evals/), one row per model, task and metric."""
    found = scan(_readable_root(results), EVALS)
    found.warn()
    return found.frame


def load_search(results) -> pd.DataFrame:
    """Every step of every cell's search (RESULTS/search/), one row per step."""
    found = scan(_readable_root(results), SEARCH)
    found.warn()
    return found.frame


def _write(results: ResultsLayout, table: str, row_id: str, rows: list[dict]) -> str:
    schema = SCHEMAS[table]
    data = pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)
    parts = results.row_file(table, row_id)
    kind = results.info(*parts).type
    if kind not in (FileType.NotFound, FileType.File) or (kind == FileType.File and footers(results, table, [parts[-1]])[0]):
        results.set_aside(parts)  # a damaged file (or a directory in its place) never blocks the new row
    return results.write_atomic(parts, lambda path, fs: pq.write_table(data, path, filesystem=fs))


# --- reading ----------------------------------------------------------------------------------------


@dataclass
class Scan:
    """What a table directory holds: the rows that read, and the files that did not (path, why)."""

    frame: pd.DataFrame
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def warn(self) -> None:
        for path, reason in self.unreadable:
            print(
                f"scalegrid: warning: {path} is unreadable ({reason}); skipped and kept, its trial counts as not done",
                file=sys.stderr,
            )


def scan(results: ResultsLayout, table: str) -> Scan:
    """Every file of `runs`, `curves`, `ensembles` or `search` whose footer passes the table's rule
    (`validation.py`), in one multi-threaded read with the declared schema (older files' missing
    columns read as null); a file whose rows name another id is left out too. Damaged files are
    reported (path, why), never deleted here: `run` sets them aside (`set_aside_damaged`)."""
    import pyarrow.dataset as ds

    schema = SCHEMAS[table]
    files, others = results.entries(table, suffix=".parquet")
    by_footer, rows_of = footers(results, table, files)
    damaged = {name: "not a file" for name in others} | by_footer
    good = [name for name in files if name not in damaged]
    if not good:
        return Scan(schema.empty_table().to_pandas(), _shown(results, table, damaged))
    paths = [results.path(table, name) for name in good]
    rows = [rows_of[name] for name in good]
    data = ds.dataset(paths, schema=schema, format="parquet", filesystem=results.fs).to_table(use_threads=True)
    origin = [path for path, n in zip(paths, rows) for _ in range(n)]  # the scan keeps the files' order
    misnamed_files = misnamed(table, data.column(RULES[table].id_column).to_pylist(), origin)
    if misnamed_files:
        keep = pa.array([path.rsplit("/", 1)[-1] not in misnamed_files for path in origin])
        data, damaged = data.filter(keep), damaged | misnamed_files
    return Scan(data.to_pandas(), _shown(results, table, damaged))


def _shown(results: ResultsLayout, table: str, damaged: dict[str, str]) -> list[tuple[str, str]]:
    return [(results.shown(table, name), why) for name, why in sorted(damaged.items())]


def set_aside_damaged(results: ResultsLayout, table: str, damaged: list[tuple[str, str]]) -> None:
    """Rename each damaged file of `table` aside (`<name>.corrupt-<time>`) with a warning: what it
    stood for is redone (a trial retrained, an ensemble evaluated again). `run` does this before it
    writes; `plan`, `status` and `report` only warn."""
    for shown, why in damaged:
        name = shown.rsplit("/", 1)[-1]
        aside = results.set_aside((table, name))
        print(f"scalegrid: warning: {shown} is damaged ({why}); set aside as {aside[-1]}, what it held is redone", file=sys.stderr)


@dataclass
class Snapshot:
    """The store's runs/, ensembles/ and evals/ as read at one moment: what the plan, the stages,
    the summary and the report all look at between two stage boundaries."""

    runs: pd.DataFrame
    ensembles: pd.DataFrame
    damaged: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # table -> [(path, why)], left out
    evals: pd.DataFrame = field(default_factory=lambda: SCHEMAS[EVALS].empty_table().to_pandas())

    @property
    def unreadable(self) -> list[tuple[str, str]]:
        """Every damaged file of runs/, ensembles/ and evals/: (path, why)."""
        return [entry for found in self.damaged.values() for entry in found]

    @functools.cached_property
    def status(self) -> dict[str, str]:
        """trial_id -> the status of its run row."""
        return dict(zip(self.runs["trial_id"], self.runs["status"])) if len(self.runs) else {}

    @functools.cached_property
    def done(self) -> set[str]:
        """Trials whose run row says COMPLETED or DIVERGED."""
        return {tid for tid, status in self.status.items() if status in DONE_STATUSES}

    @functools.cached_property
    def ensembles_done(self) -> set[str]:
        """Ensemble rows written COMPLETED."""
        if not len(self.ensembles):
            return set()
        return set(self.ensembles.loc[self.ensembles["status"] == Status.COMPLETED.value, "trial_id"])

    @functools.cached_property
    def evals_done(self) -> set[str]:
        """Downstream evaluations written COMPLETED (a FAILED one is tried again)."""
        if not len(self.evals):
            return set()
        return set(self.evals.loc[self.evals["status"] == Status.COMPLETED.value, "eval_id"])

    @property
    def all_runs(self) -> pd.DataFrame:
        """runs/ and ensembles/ together, as the analysis reads them."""
        return concat_runs(self.runs, self.ensembles)

    def warn(self) -> None:
        Scan(self.runs, self.unreadable).warn()


def read(results: ResultsLayout) -> Snapshot:
    """One scan of runs/, one of ensembles/ and one of evals/."""
    runs, ensembles, evals = scan(results, RUNS), scan(results, ENSEMBLES), scan(results, EVALS)
    damaged = {RUNS: runs.unreadable, ENSEMBLES: ensembles.unreadable, EVALS: evals.unreadable}
    return Snapshot(runs.frame, ensembles.frame, damaged, evals.frame)


def load_runs(results) -> pd.DataFrame:
    """One row per trial and per ensemble (`stage` train | distill | ensemble): RESULTS/runs/ and
    RESULTS/ensembles/ together, as the analysis reads them; unreadable files are reported on
    stderr and skipped."""
    snapshot = read(_readable_root(results))
    snapshot.warn()
    return snapshot.all_runs


def concat_runs(runs: pd.DataFrame, ensembles: pd.DataFrame) -> pd.DataFrame:
    if not len(ensembles):
        return runs
    if not len(runs):
        return ensembles
    return pd.concat([runs, ensembles], ignore_index=True)


def load_ensembles(results) -> pd.DataFrame:
    """The ensemble rows alone (RESULTS/ensembles/), with `member_trial_ids`."""
    found = scan(_readable_root(results), ENSEMBLES)
    found.warn()
    return found.frame


def load_curves(results) -> pd.DataFrame:
    found = scan(_readable_root(results), CURVES)
    found.warn()
    return found.frame


def _readable_root(results) -> ResultsLayout:
    root = layout(results)
    check_readable(root)
    return root


def write_stage_graph(results: ResultsLayout, sweep: str, graph: dict | None) -> None:
    """A sweep's ensembles and students (`StageGraph.to_json`), so that `status` can say what is
    blocked without the spec; None (a spec without them) removes the old file."""
    parts = results.stage_graph(sweep)
    if graph is None:
        results.delete(parts)
        return
    results.write_bytes(parts, json.dumps(graph, indent=2, sort_keys=True).encode())


def read_stage_graphs(results: ResultsLayout) -> dict:
    """Every sweep's stage graph in the results, merged (an unreadable file is left out)."""
    merged: dict[str, list] = {"ensembles": [], "students": [], "evaluations": []}
    for name in results.list(*results.stage_graphs(), suffix=".json"):
        try:
            graph = json.loads(results.read_bytes(*results.stage_graphs(), name))
        except (OSError, ValueError):
            continue
        for key in merged:
            merged[key] += graph.get(key, [])
    return merged


def run_outcome(results: ResultsLayout, trial_id: str) -> tuple[str, float] | None:
    """(status, val_loss) of a trial's run row, or None when there is none or it is damaged
    (`validation.py`: a copy, a planted row, a foreign file count as no row)."""
    name = results.row_file(RUNS, trial_id)[-1]
    try:
        if footers(results, RUNS, [name])[0]:
            return None
        data = pq.read_table(results.path(RUNS, name), columns=["trial_id", "status", "val_loss"], filesystem=results.fs)
    except Exception:  # noqa: BLE001 - missing, unreadable: not done
        return None
    if data.num_rows != 1 or data.column("trial_id")[0].as_py() != trial_id:
        return None
    return data.column("status")[0].as_py(), data.column("val_loss")[0].as_py()


def run_status(results: ResultsLayout, trial_id: str) -> str | None:
    """The status in a trial's run row, or None when there is none or it is damaged."""
    outcome = run_outcome(results, trial_id)
    return None if outcome is None else outcome[0]

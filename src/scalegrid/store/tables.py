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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow.fs import FileType

from scalegrid.storage import ResultsLayout, check_readable, layout
from scalegrid.storage.layout import CURVES, ENSEMBLES, EVALS, RUNS, SEARCH, is_part
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
    return results.write_atomic(parts, lambda path, fs: pq.write_table(data, path, filesystem=fs, **OWN_FILE_OPTIONS))


# A row's own file holds one row (a trial's curves: a few): compressing, dictionary-encoding and
# summarising a value each is all cost. Written plain, a run file reads in half the time (1.2 ms
# against 2.5 ms here), which is what a scan or a compaction of many of them pays.
OWN_FILE_OPTIONS = {"compression": "none", "use_dictionary": False, "write_statistics": False}


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
    """Every file of `runs`, `curves`, `ensembles`, `search` or `evals` whose footer passes the
    table's rule (`validation.py`), read one at a time with the declared schema (older files'
    missing columns read as null); a row's own file whose rows name another id is left out too.
    Damaged files are reported (path, why), never deleted here: `run` sets them aside
    (`set_aside_damaged`).

    Part files (`compact.py`) are read first, oldest first, then the rows' own files: a key (a
    trial's rows) comes from the last file that holds it, so a row written after a compaction (a
    trial trained again) wins over the compacted one, and a row caught in two files while a
    compaction runs (or after one was killed between writing its part and deleting the files it
    folded) is read once. One file at a time keeps the memory of the read to the rows read: one
    multi-threaded dataset over 10,000 one-row files took 1.4 GB."""
    schema, key = SCHEMAS[table], RULES[table].id_column
    files, others = results.entries(table, suffix=".parquet")
    names = sorted(files, key=lambda name: (not is_part(name), name))
    damaged = {name: "not a file" for name in others} | footers(results, table, names)[0]
    tables = []
    for source, name in enumerate(names):
        if name in damaged:
            continue
        try:
            data = conform(pq.read_table(results.path(table, name), filesystem=results.fs), schema, key)
        except Exception as err:  # noqa: BLE001 - changed since its footer was read
            damaged[name] = f"not readable ({err.__class__.__name__})"
            continue
        wrong = {} if is_part(name) else misnamed(table, data.column(key).to_pylist(), [name] * len(data))
        if wrong:
            damaged |= wrong
            continue
        tables.append(data.append_column(SOURCE, pa.array(np.full(len(data), source, dtype=np.int32))))
    if not tables:
        return Scan(schema.empty_table().to_pandas(), _shown(results, table, damaged))
    combined = pa.concat_tables(tables)
    tables.clear()  # the combined table is the only holder of the buffers: converted, each is freed
    frame = combined.to_pandas(self_destruct=True, split_blocks=True)  # never the rows twice in memory
    del combined
    if any(is_part(name) for name in names):  # a key may be in several files: the last one's rows
        frame = frame[frame[SOURCE] == frame.groupby(key)[SOURCE].transform("max")]
    return Scan(frame.drop(columns=SOURCE).reset_index(drop=True), _shown(results, table, damaged))


SOURCE = "__source"  # the index of the file a row was read from, while a scan runs


def conform(data: pa.Table, schema: pa.Schema, key: str = "trial_id") -> pa.Table:
    """A table with exactly `schema`'s columns: missing ones null; one of another type is an error."""
    if key not in data.column_names:
        raise ValueError(f"no {key} column: not a scalegrid results file")
    if data.schema.equals(schema):  # written by this version: nothing to cast
        return data
    columns = [
        data.column(f.name).cast(f.type) if f.name in data.column_names else pa.nulls(len(data), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


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


def run_outcome(results: ResultsLayout, trial_id: str, *, folded: bool = True) -> tuple[str, float] | None:
    """(status, val_loss) of a trial's run row: its own file, else (`folded`) the part file that
    folded it (`compact.py`); None when there is none or it is damaged (`validation.py`: a copy, a
    planted row, a foreign file count as no row)."""
    name = results.row_file(RUNS, trial_id)[-1]
    if not results.is_file(RUNS, name):  # none of its own: folded into a part, or never written
        return _compacted_outcome(results, trial_id) if folded else None
    try:
        if footers(results, RUNS, [name])[0]:
            return None
        data = pq.read_table(results.path(RUNS, name), columns=["trial_id", "status", "val_loss"], filesystem=results.fs)
    except Exception:  # noqa: BLE001 - unreadable: not done
        return None
    if data.num_rows != 1 or data.column("trial_id")[0].as_py() != trial_id:
        return None
    return data.column("status")[0].as_py(), data.column("val_loss")[0].as_py()


def run_status(results: ResultsLayout, trial_id: str, *, folded: bool = True) -> str | None:
    """The status in a trial's run row (its own file or, `folded`, a part), or None when there is none or it is damaged."""
    outcome = run_outcome(results, trial_id, folded=folded)
    return None if outcome is None else outcome[0]


# part file path -> trial_id -> (status, val_loss): a part never changes once written, so each is
# read once per process (a worker asks about every trial it is given).
_PART_OUTCOMES: dict[str, dict[str, tuple[str, float]]] = {}


def _compacted_outcome(results: ResultsLayout, trial_id: str) -> tuple[str, float] | None:
    """A trial's (status, val_loss) in the newest part of runs/ that holds it (the parts listed now:
    one written since the last look is read too); a damaged part is passed over (the scans name it)."""
    for name in reversed([n for n in results.list(RUNS, suffix=".parquet") if is_part(n)]):
        path = results.path(RUNS, name)
        if path not in _PART_OUTCOMES:
            try:
                if footers(results, RUNS, [name])[0]:
                    continue
                data = pq.read_table(path, columns=["trial_id", "status", "val_loss"], filesystem=results.fs)
            except Exception:  # noqa: BLE001 - unreadable: the scans name it
                continue
            _PART_OUTCOMES[path] = dict(zip(data.column("trial_id").to_pylist(), zip(data.column("status").to_pylist(), data.column("val_loss").to_pylist())))
        if trial_id in _PART_OUTCOMES[path]:
            return _PART_OUTCOMES[path][trial_id]
    return None

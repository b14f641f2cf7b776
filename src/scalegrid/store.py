"""The results store: append-only Parquet, one file per finished trial, written atomically.

    RESULTS/runs/<trial_id>.parquet      one `RunRow` per trial (train and distill stages)
    RESULTS/curves/<trial_id>.parquet    one `CurveRow` per evaluation
    RESULTS/ensembles/<row_id>.parquet   one `RunRow` per (grid point, k): an ensemble of the first k members
    RESULTS/search/<cell_id>.parquet     one `SearchRow` per step of a cell's search, rewritten as it advances

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
import datetime as dt
import functools
import json
import math
import platform
import sys
import typing
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scalegrid.storage import ResultsLayout, check_readable, layout
from scalegrid.storage.layout import CURVES, ENSEMBLES, RUNS, SEARCH
from scalegrid.grid import canonical_json, ensemble_id, identity
from scalegrid.trial import DONE_STATUSES, Stage, Status, Trial, TrialResult


@dataclass(frozen=True)
class RunRow:
    """One row of `runs/` or `ensembles/` (docs/results.md says what each column means)."""

    trial_id: str
    sweep: str
    stage: str  # train | ensemble | distill
    status: str  # COMPLETED | DIVERGED | FAILED
    trainer: str
    model: str
    params: int
    params_nonembed: int
    unique_tokens: int
    epochs: int
    tokens_seen: int
    lr: float
    weight_decay: float
    seed: int
    members: int  # 1 for a single model; an ensemble's k; a student's teacher's k
    member: int | None  # train: the ensemble member index (0: the grid point's own trial)
    val_loss: float
    best_val_loss: float
    train_loss: float
    flops: float
    wall_s: float
    error: str | None
    finished_at: dt.datetime
    config_json: str  # the hashed TrialConfig (or an ensemble's members), canonical JSON
    scalegrid_version: str | None
    git_commit: str | None
    hostname: str
    device: str
    member_trial_ids: list[str] | None = None  # ensemble: its members, in member order
    teacher_id: str | None = None  # distill: the teacher's ensemble row (k > 1) or trial (k = 1)
    teacher_kind: str | None = None  # distill: ensemble | model
    teacher_trial_ids: list[str] | None = None  # distill: the teacher's members
    distill_method: str | None = None  # distill: token | sequence
    combine: str | None = None  # k > 1 members averaged (an ensemble, a student's teacher): probs | logits
    world_size: int = 1  # processes that trained the trial: Ray Train's workers (`resources.workers`); 1 otherwise
    stopped_epoch: int | None = None  # an adaptive stop (train.stop): the epoch after which it entered the decay
    memorised_train: float | None = None  # train.memorisation_samples: generated n-grams found in the training data, after training prompts
    memorised_val: float | None = None  # ... after validation prompts


@dataclass(frozen=True)
class CurveRow:
    """One row of `curves/`: one evaluation of a trial."""

    trial_id: str
    step: int
    epoch: float
    tokens_seen: int
    train_loss: float
    val_loss: float
    lr: float
    wall_s: float
    # train.diagnostics: at each epoch's end (trainers/diagnostics.py); null elsewhere
    grad_norm: float | None = None
    grad_cosine: float | None = None
    grad_snr: float | None = None
    grad_gram_top: list[float] | None = None
    val_curvature: float | None = None


@dataclass(frozen=True)
class SearchRow:
    """One row of `search/`: one step of a cell's search (`orchestrator/search.py`)."""

    cell_id: str
    sweep: str
    cell: str  # the cell's axes in words: "model=llama-50k, unique_tokens=8192, seed=0"
    model: str
    params: int
    unique_tokens: int
    seed: int
    step: int  # 0, 1, ...: the step's place in the walk
    outcome: str  # moved | extended | searching | certified | edge | diverged | waiting
    centre: str  # every searched axis of the centre: "epochs=8, weight_decay=0.4"
    centre_trial_id: str
    epochs: int
    lr: float
    weight_decay: float
    loss: float  # the centre's val_loss; inf when DIVERGED or FAILED, NaN when not run yet
    neighbours: list[str]  # "epochs=4", "epochs=16", "weight_decay- (edge)"
    neighbour_trial_ids: list[str]  # "" beyond a ladder's end
    neighbour_losses: list[float]
    neighbour_status: list[str]  # no_worse | better | missing | edge | run
    moved_to: str | None  # the next centre, "epochs=16, weight_decay=0.4"; null unless moved
    moved_to_trial_id: str | None
    certified: bool
    edge: bool
    edge_axes: list[str]  # the ladder ends the centre sits at: "weight_decay+"
    ladders_json: str  # the ladders of this step (grown ones after an extension), JSON
    finished_at: dt.datetime


def trial_row(trial: Trial, result: TrialResult, *, wall_s: float, provenance: dict[str, str], device: str) -> RunRow:
    """The run row of a trained trial (stage train or distill)."""
    config = trial.config
    return RunRow(
        **_point_columns(trial, provenance),
        trial_id=trial.trial_id, stage=Stage(trial.stage).value, status=Status(result.status).value,
        params=result.params, params_nonembed=result.params_nonembed, tokens_seen=result.tokens_seen,
        members=len(config.distill.teacher) if config.distill else 1,  # a student's: its teacher's k
        member=config.member, val_loss=result.val_loss, best_val_loss=result.best_val_loss,
        train_loss=result.train_loss, flops=result.flops, wall_s=wall_s, error=result.error,
        config_json=canonical_json(identity(config)), device=device, world_size=result.extra.get("world_size", 1),
        **_teacher_columns(config),
        stopped_epoch=result.extra.get("stopped_epoch"), memorised_train=result.extra.get("memorised_train"),
        memorised_val=result.extra.get("memorised_val"),
    )


def ensemble_row(
    members: list[Trial], loss: float, *, wall_s: float, error: str | None, provenance: dict[str, str], device: str,
    combine: str = "probs",
) -> RunRow:
    """The row of the ensemble of `members` (k = len(members)): the grid point's columns, the
    members' size, k times their tokens and FLOPs, `member_trial_ids` and how they were averaged."""
    first, k = members[0], len(members)
    ids = [m.trial_id for m in members]
    averaged = {"combine": combine} if k > 1 else {}
    return RunRow(
        **_point_columns(first, provenance),
        trial_id=ensemble_id(ids, combine), stage=Stage.ENSEMBLE.value,
        status=(Status.FAILED if error else Status.COMPLETED).value,
        params=first.config.num_params, params_nonembed=first.config.num_params_nonembed,
        tokens_seen=k * first.config.tokens_seen, members=k, member=None, val_loss=loss, best_val_loss=loss,
        train_loss=math.nan, flops=k * first.config.estimated_flops, wall_s=wall_s, error=error,
        config_json=canonical_json({"stage": "ensemble", "members": ids} | averaged), device=device, member_trial_ids=ids,
        combine=averaged.get("combine"),
    )


def _point_columns(trial: Trial, provenance: dict[str, str]) -> dict:
    """The columns every row of a grid point shares: its axes and where and by what it was made."""
    c = trial.config
    return {
        "sweep": trial.sweep, "trainer": c.trainer, "model": trial.model_label, "unique_tokens": c.unique_tokens,
        "epochs": c.epochs, "lr": c.lr, "weight_decay": c.weight_decay, "seed": c.seed,
        "finished_at": dt.datetime.now(dt.timezone.utc), "scalegrid_version": provenance.get("scalegrid_version"),
        "git_commit": provenance.get("git_commit"), "hostname": platform.node(),
    }


def _teacher_columns(config) -> dict:
    """A student's teacher; nothing for other trials."""
    if config.distill is None:
        return {}
    teacher, combine = list(config.distill.teacher), config.distill.combine
    return {
        "teacher_id": teacher[0] if len(teacher) == 1 else ensemble_id(teacher, combine),
        "teacher_kind": "model" if len(teacher) == 1 else "ensemble",
        "teacher_trial_ids": teacher,
        "distill_method": config.distill.method,
        "combine": combine if len(teacher) > 1 else None,
    }


_ARROW_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(),
                dt.datetime: pa.timestamp("us", tz="UTC"), list[str]: pa.list_(pa.string()),
                list[float]: pa.list_(pa.float64())}


def schema_of(row_type: type) -> pa.Schema:
    """The Parquet schema of a row dataclass: one column per field, in field order."""
    hints = typing.get_type_hints(row_type)
    columns = []
    for f in dataclasses.fields(row_type):
        kind = hints[f.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if type(None) in typing.get_args(kind) and len(args) == 1:  # X | None: a nullable X
            kind = args[0]
        columns.append(pa.field(f.name, _ARROW_TYPES[kind]))
    return pa.schema(columns)


RUN_SCHEMA = schema_of(RunRow)
CURVE_SCHEMA = schema_of(CurveRow)
SEARCH_SCHEMA = schema_of(SearchRow)
RUN_COLUMNS = tuple(RUN_SCHEMA.names)
SCHEMAS = {RUNS: RUN_SCHEMA, ENSEMBLES: RUN_SCHEMA, CURVES: CURVE_SCHEMA, SEARCH: SEARCH_SCHEMA}


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


def load_search(results) -> pd.DataFrame:
    """Every step of every cell's search (RESULTS/search/), one row per step."""
    found = scan(_readable_root(results), SEARCH)
    found.warn()
    return found.frame


def _write(results: ResultsLayout, table: str, row_id: str, rows: list[dict]) -> str:
    schema = SCHEMAS[table]
    data = pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)
    parts = results.row_file(table, row_id)
    if results.is_file(*parts) and not _readable(results, parts):
        results.set_aside(parts)
    return results.write_atomic(parts, lambda path, fs: pq.write_table(data, path, filesystem=fs))


def _readable(results: ResultsLayout, parts: tuple[str, ...]) -> bool:
    try:
        pq.read_metadata(results.path(*parts), filesystem=results.fs)
        return True
    except Exception:  # noqa: BLE001 - truncated, not Parquet, unreadable
        return False


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
    """Every file of `runs`, `curves`, `ensembles` or `search` in one multi-threaded read with the declared
    schema (older files' missing columns read as null); if some file does not read, one file at
    a time, so the unreadable ones are named and skipped."""
    import pyarrow.dataset as ds

    schema = SCHEMAS.get(table, RUN_SCHEMA)  # another directory of run files reads as runs
    names = results.list(table, suffix=".parquet")
    if not names:
        return Scan(schema.empty_table().to_pandas())
    paths = [results.path(table, name) for name in names]
    try:
        data = ds.dataset(paths, schema=schema, format="parquet", filesystem=results.fs).to_table(use_threads=True)
        return Scan(data.to_pandas())
    except Exception:  # noqa: BLE001 - a truncated or foreign file: find out which
        return _scan_one_by_one(results, table, names)


def _scan_one_by_one(results: ResultsLayout, table: str, names: list[str]) -> Scan:
    schema = SCHEMAS.get(table, RUN_SCHEMA)
    tables, unreadable = [], []
    for name in names:
        try:
            data = pq.read_table(results.path(table, name), filesystem=results.fs)
            tables.append(_conform(data, schema))
        except Exception as err:  # noqa: BLE001 - truncated, not Parquet, other columns: report, never delete
            unreadable.append((results.shown(table, name), err.__class__.__name__))
    frame = pa.concat_tables(tables) if tables else schema.empty_table()
    return Scan(frame.to_pandas(), unreadable)


def _conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """A table with exactly `schema`'s columns: missing ones null; one of another type is an error."""
    if "trial_id" not in data.column_names:
        raise ValueError("no trial_id column: not a scalegrid results file")
    columns = [
        data.column(f.name).cast(f.type) if f.name in data.column_names else pa.nulls(len(data), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


@dataclass
class Snapshot:
    """The store's runs/ and ensembles/ as read at one moment: what the plan, the stages, the
    summary and the report all look at between two stage boundaries."""

    runs: pd.DataFrame
    ensembles: pd.DataFrame
    unreadable: list[tuple[str, str]] = field(default_factory=list)

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

    @property
    def all_runs(self) -> pd.DataFrame:
        """runs/ and ensembles/ together, as the analysis reads them."""
        return concat_runs(self.runs, self.ensembles)

    def warn(self) -> None:
        Scan(self.runs, self.unreadable).warn()


def read(results: ResultsLayout) -> Snapshot:
    """One scan of runs/ and one of ensembles/."""
    runs, ensembles = scan(results, RUNS), scan(results, ENSEMBLES)
    return Snapshot(runs.frame, ensembles.frame, runs.unreadable + ensembles.unreadable)


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
    merged: dict[str, list] = {"ensembles": [], "students": []}
    for name in results.list(*results.stage_graphs(), suffix=".json"):
        try:
            graph = json.loads(results.read_bytes(*results.stage_graphs(), name))
        except (OSError, ValueError):
            continue
        for key in merged:
            merged[key] += graph.get(key, [])
    return merged


def run_outcome(results: ResultsLayout, trial_id: str) -> tuple[str, float] | None:
    """(status, val_loss) of a trial's run row, or None when there is none or it cannot be read."""
    try:
        data = pq.read_table(results.path(*results.row_file(RUNS, trial_id)), columns=["status", "val_loss"], filesystem=results.fs)
        return data.column("status")[0].as_py(), data.column("val_loss")[0].as_py()
    except Exception:  # noqa: BLE001 - missing, truncated, not Parquet: not done
        return None


def run_status(results: ResultsLayout, trial_id: str) -> str | None:
    """The status in a trial's run row, or None when there is none or it cannot be read."""
    try:
        data = pq.read_table(results.path(*results.row_file(RUNS, trial_id)), columns=["status"], filesystem=results.fs)
        return data.column("status")[0].as_py()
    except Exception:  # noqa: BLE001 - missing, truncated, not Parquet: not done
        return None



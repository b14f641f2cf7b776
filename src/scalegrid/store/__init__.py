"""The results store: append-only Parquet, one file per finished trial (`tables.py`), of the rows
and schemas in `rows.py`; `compact.py` folds many rows' files into parts. Everything a caller needs is named here: `from scalegrid import store`."""

from scalegrid.store.rows import (
    CURVE_SCHEMA, EVAL_SCHEMA, RUN_COLUMNS, RUN_SCHEMA, SCHEMAS, SEARCH_SCHEMA, CurveRow, EvalRow, RunRow, SearchRow, ensemble_row,
    eval_rows, schema_of, trial_row,
)
from scalegrid.store.compact import Compactor, compact
from scalegrid.store.tables import (
    Scan, Snapshot, concat_runs, load_curves, load_ensembles, load_evals, load_runs, load_search, read, read_stage_graphs,
    run_outcome, run_status, scan, set_aside_damaged, write_curves, write_ensemble, write_eval, write_run, write_search,
    write_stage_graph,
)

__all__ = [
    "CURVE_SCHEMA", "EVAL_SCHEMA", "RUN_COLUMNS", "RUN_SCHEMA", "SCHEMAS", "SEARCH_SCHEMA", "CurveRow", "EvalRow", "RunRow",
    "SearchRow", "ensemble_row", "eval_rows", "schema_of", "trial_row", "Scan", "Snapshot", "concat_runs", "load_curves",
    "load_ensembles", "load_evals", "load_runs", "load_search", "read", "read_stage_graphs", "run_outcome", "run_status", "scan",
    "set_aside_damaged", "write_curves", "write_ensemble", "write_eval", "write_run", "write_search", "write_stage_graph", "Compactor", "compact",
]

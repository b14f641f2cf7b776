"""What a table file must be before its rows count: the store's rule for runs, ensembles, curves,
search steps and evaluations, in one place (SECURITY.md: nothing read back from a results store is trusted).

A file of a table directory is *damaged* when it

- is not a file (a directory, a FIFO, a symlink loop named `<id>.parquet`);
- is not Parquet, or its footer does not read;
- holds more than the table's rows (runs and ensembles: one row; a part file, `compact.py`: those of
  the files it folds), or more bytes uncompressed than a row of its table can hold (a few kilobytes of zstd can expand to gigabytes of strings);
- lacks a column every row of the table has (`trial_id`, `status`, ...), or holds one of another type;
- names another id than the file's (a run file copied under another name, a FAILED row planted
  beside the COMPLETED one): one id, one file (a part file holds many, each also in no other part
  that a later file overrides).

A damaged file's rows are left out and the file is reported (path, why). Readers that only look
(`plan`, `status`, `report`) warn; `run` sets it aside (`<name>.corrupt-<time>`, kept for a look)
before it writes, and what the file stood for is redone: its trial counts as not done.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from scalegrid.storage import ResultsLayout
from scalegrid.storage.layout import CURVES, ENSEMBLES, EVALS, RUNS, SEARCH, is_part
from scalegrid.store.rows import SCHEMAS


@dataclass(frozen=True)
class TableRule:
    id_column: str  # the column that names the file: `<value>.parquet`
    required: tuple[str, ...]  # columns every file holds
    max_rows: int
    max_bytes: int  # uncompressed, the whole file


MIB = 1 << 20
RULES = {
    RUNS: TableRule("trial_id", ("trial_id", "status", "stage", "sweep"), max_rows=1, max_bytes=4 * MIB),
    ENSEMBLES: TableRule("trial_id", ("trial_id", "status", "stage", "member_trial_ids"), max_rows=1, max_bytes=4 * MIB),
    CURVES: TableRule("trial_id", ("trial_id", "step", "val_loss"), max_rows=1_000_000, max_bytes=512 * MIB),
    SEARCH: TableRule("cell_id", ("cell_id", "step", "outcome"), max_rows=100_000, max_bytes=64 * MIB),
    EVALS: TableRule("eval_id", ("eval_id", "status", "model_id", "task"), max_rows=10_000, max_bytes=16 * MIB),  # a row per metric
}
FILES_PER_PART = 1024  # rows' own files folded into one part file (`compact.py`): a part's bounds are theirs times this
FOOTER_THREADS = 8  # footers are read in parallel: I/O-bound, one small read each


def footers(results: ResultsLayout, table: str, names: list[str]) -> tuple[dict[str, str], dict[str, int]]:
    """(name -> why, for the files whose footer says they are damaged; name -> rows, for the others),
    the footers read in parallel and not trusted."""
    def check(name: str) -> tuple[str | None, int]:
        rule = part_rule(table) if is_part(name) else RULES[table]
        try:
            meta = pq.read_metadata(results.path(table, name), filesystem=results.fs)
        except Exception as err:  # noqa: BLE001 - not Parquet, truncated, not a file
            return f"not a Parquet file ({err.__class__.__name__})", 0
        return _footer_problem(meta, rule, SCHEMAS[table]), meta.num_rows

    with concurrent.futures.ThreadPoolExecutor(FOOTER_THREADS) as pool:
        found = dict(zip(names, pool.map(check, names)))
    return {n: why for n, (why, _) in found.items() if why}, {n: rows for n, (why, rows) in found.items() if not why}


def part_rule(table: str) -> TableRule:
    """A part file's rule: its table's columns, and as many rows and bytes as the files it folds."""
    rule = RULES[table]
    return TableRule(rule.id_column, rule.required, min(rule.max_rows * FILES_PER_PART, 50_000_000),
                     min(rule.max_bytes * FILES_PER_PART, 4096 * MIB))


def _footer_problem(meta: pq.FileMetaData, rule: TableRule, schema: pa.Schema) -> str | None:
    if meta.num_rows > rule.max_rows:
        return f"{meta.num_rows:,} rows, where a file of this table holds at most {rule.max_rows:,}"
    size = sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
    if size > rule.max_bytes:
        return f"{size / MIB:,.0f} MiB uncompressed, more than a file of this table holds ({rule.max_bytes // MIB} MiB)"
    held = meta.schema.to_arrow_schema()
    missing = [c for c in rule.required if c not in held.names]
    if missing:
        return f"no {', '.join(missing)} column: not a scalegrid file of this table"
    for column in held.names:
        if column in schema.names and not _castable(held.field(column).type, schema.field(column).type):
            return f"column {column} is {held.field(column).type}, not {schema.field(column).type}"
    return None


def _castable(found: pa.DataType, declared: pa.DataType) -> bool:
    """Whether the scan's cast to the declared type keeps the column's meaning (pandas writes large
    strings, narrower ints and floats; a list's items are judged alike)."""
    t = pa.types
    if found == declared or t.is_null(found):
        return True
    kinds = (t.is_string, t.is_large_string), (t.is_integer,), (t.is_floating,), (t.is_timestamp,), (t.is_boolean,)
    for kind in kinds:
        if any(k(declared) for k in kind) and any(k(found) for k in kind):
            return True
    if t.is_floating(declared) and t.is_integer(found):
        return True
    if (t.is_list(declared) or t.is_large_list(declared)) and (t.is_list(found) or t.is_large_list(found)):
        return _castable(found.value_type, declared.value_type)
    return False


def misnamed(table: str, ids: list[str | None], files: list[str]) -> dict[str, str]:
    """name -> why, for the files whose rows name another id than the file (`<id>.parquet`)."""
    column = RULES[table].id_column
    found = {}
    for value, path in zip(ids, files):
        name = path.rsplit("/", 1)[-1]
        if value is None or f"{value}.parquet" != name:
            found[name] = f"its {column} is {value!r}, not the file's name: a copy or a planted row"
    return found

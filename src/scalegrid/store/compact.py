"""Compaction: many rows' own files of runs/, curves/ and ensembles/ folded into a few part files.

A trial writes its own files (`runs/<trial_id>.parquet`, `curves/<trial_id>.parquet`): one atomic
file per finished trial is what makes the store append-only and safe for several drivers. But a
file costs ~1.5 ms to open whatever it holds, so a store of 100,000 trials read that way takes
minutes; folded into parts of PART_ROWS rows it reads in seconds. The sweep's driver folds what
its workers wrote while they train (`Compactor`, a background thread), and once more at the end.

Safety, the rules that keep every reader right:
- Only final rows are folded: a run or ensemble row COMPLETED or DIVERGED (a FAILED trial is
  trained again, its file rewritten), a curve whose trial's run row is final. A final row's
  file is not written again (the exception: a member whose saved weights went missing is
  trained again; its new file is newer than the fold and wins, `tables.scan`).
- The part is written atomically (temporary name, rename; on an object store one PUT) *before*
  any folded file is deleted: a row is always in at least one file a reader sees. A reader that
  meets a row in both (between the two steps, or after a compactor was killed there) reads it
  once: the last file in `tables.scan`'s order wins, and a row's own file comes after the parts.
- A folded file is deleted only while it is the file that was read (same size and mtime); one
  rewritten meanwhile stays, and wins.
- Two drivers may compact at once: each folds what it read; a row folded twice is in two parts,
  read once. Nothing is lost either way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import threading
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scalegrid.storage import ResultsLayout
from scalegrid.storage.layout import CURVES, ENSEMBLES, RUNS, is_part
from scalegrid.store.rows import SCHEMAS
from scalegrid.store.tables import conform, read
from scalegrid.store.validation import FILES_PER_PART
from scalegrid.trial import DONE_STATUSES

MIN_FILES = 256  # a table is compacted once it holds this many rows' own files
PART_ROWS = FILES_PER_PART  # own files folded into one part: bounds the memory of a fold (~55 kB per file read)
EVERY_S = 10.0  # the background compactor's period
NICENESS = 10  # the background compactor's: on a machine the trials keep busy it takes what they leave


def compact(results: ResultsLayout, *, min_files: int = MIN_FILES) -> int:
    """Fold the final rows' own files of runs/, ensembles/ and then curves/ into parts, in
    tables that hold at least `min_files` of them. Returns how many files were folded."""
    folded = 0
    for table in (RUNS, ENSEMBLES):
        folded += _compact_table(results, table, lambda data: pc.is_in(data.column("status"), pa.array(DONE_STATUSES)), min_files)
    if len(_own_files(results, CURVES)) >= min_files:
        done = pa.array(sorted(read(results).done))  # a trial's curves are final once its run row is
        folded += _compact_table(results, CURVES, lambda data: pc.is_in(data.column("trial_id"), done), min_files)
    return folded


def _own_files(results: ResultsLayout, table: str) -> list[str]:
    return [name for name in results.list(table, suffix=".parquet") if not is_part(name)]


def _compact_table(results: ResultsLayout, table: str, final: Callable[[pa.Table], pa.Array], min_files: int) -> int:
    names = _own_files(results, table)
    if len(names) < min_files:
        return 0
    folded = 0
    for first in range(0, len(names), PART_ROWS):
        folded += _fold(results, table, names[first:first + PART_ROWS], final)
    return folded


def _fold(results: ResultsLayout, table: str, names: list[str], final: Callable[[pa.Table], pa.Array]) -> int:
    """One part from the files of `names` whose rows are all final; then those files deleted."""
    schema = SCHEMAS[table]
    read_as, tables = {}, []
    for name, info in zip(names, results.fs.get_file_info([results.path(table, n) for n in names])):
        try:
            data = conform(pq.read_table(info.path, filesystem=results.fs), schema)
        except Exception:  # noqa: BLE001 - missing (deleted by another compactor) or unreadable: left as it is
            continue
        if len(data) and pc.all(final(data)).as_py():
            tables.append(data)
            read_as[name] = (info.size, info.mtime)
    if not tables:
        return 0
    data = pa.concat_tables(tables).combine_chunks()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    digest = hashlib.sha256("\n".join(read_as).encode()).hexdigest()[:8]
    results.write_atomic(results.part_file(table, stamp, digest), lambda path, fs: pq.write_table(data, path, filesystem=fs))
    for name, (size, mtime) in read_as.items():
        now = results.info(table, name)
        if (now.size, now.mtime) == (size, mtime):  # not rewritten since it was read
            results.delete((table, name))
    return len(read_as)


class Compactor:
    """`compact` every EVERY_S seconds in a background thread while a sweep trains, and once more
    on leaving: the driver's reads at the end then open a few parts, not a file per trial."""

    def __init__(self, results: ResultsLayout, every_s: float = EVERY_S):
        self.results, self.every_s = results, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scalegrid-compactor", daemon=True)
        self.error: Exception | None = None

    def _loop(self) -> None:
        with contextlib.suppress(AttributeError, OSError):  # Linux: a thread has its own niceness
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)  # training first: folding can wait
        while not self._stop.wait(self.every_s):
            self._compact()

    def _compact(self) -> None:
        try:
            compact(self.results)
        except Exception as err:  # noqa: BLE001 - a fold that failed leaves every file it read; said once at the end
            self.error = err

    def __enter__(self) -> Compactor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._compact()

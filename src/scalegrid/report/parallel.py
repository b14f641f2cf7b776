"""Run independent analysis calls in worker processes while the report draws.

The slow part of a big report is fitting one law per group with its bootstrap (an ensemble law
per (size, token budget)). Those groups are independent and each is fitted with the same seed,
so calling a recipe on a few slices of the table (split by token budget) gives exactly the rows
one call on the whole table gives. `Workers(n).submit` runs each slice in one of n other
interpreters and returns a future, while this process draws; with n = 0 (one CPU) it runs the call
at once, in this process.

A worker is `python -m scalegrid.report.parallel`: it reads one pickled (function name, table,
keyword arguments) on stdin and writes the pickled result, or the exception, on stdout. Unlike
multiprocessing's spawn, this never re-imports the caller's main script (a script calling
`write_report` needs no `if __name__ == "__main__"` guard), and unlike fork it never copies this
process's threads. A worker imports `scalegrid.analysis`, not matplotlib.

Which function a worker runs: the name is a key of `WORKER_FUNCTIONS`, an explicit dict of the
analysis functions a worker may run (imported here by name, so a renamed one fails at import).
A request is data from another process, so it selects an entry of that dict, never an arbitrary
importable name; the dict says in one place what crosses the process boundary, and adding a
function is one line. `submit` refuses any other name before a process is started.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pandas as pd

from scalegrid.analysis.recipes import ensemble_scaling

WORKER_FUNCTIONS: dict[str, Callable[..., pd.DataFrame]] = {
    "ensemble_scaling": ensemble_scaling,  # one law per (size, token budget): the slow part of a report
}


def default_workers() -> int:
    """One worker per CPU beside the one this process draws on (at most 8); none on one CPU."""
    env = os.environ.get("SCALEGRID_REPORT_WORKERS")
    if env and env.isdigit():
        return int(env)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(0, min(cpus - 1, 8))


def _call(name: str, frame: pd.DataFrame, kwargs: dict[str, int]) -> Any:
    return WORKER_FUNCTIONS[name](frame, **kwargs)


def _in_subprocess(name: str, frame: pd.DataFrame, kwargs: dict[str, int]) -> Any:
    payload = pickle.dumps((name, frame, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    proc = subprocess.run(
        [sys.executable, "-m", "scalegrid.report.parallel"], input=payload, capture_output=True, check=False,
    )
    if proc.returncode != 0 or not proc.stdout:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"report worker for {name} exited with {proc.returncode}: {tail[0]}")
    ok, value = pickle.loads(proc.stdout)
    if not ok:
        raise value
    return value


class Workers:
    def __init__(self, workers: int):
        self.workers = max(0, int(workers))
        self._threads: ThreadPoolExecutor | None = None

    def submit(self, name: str, frame: pd.DataFrame, **kwargs: int) -> Future:
        """`WORKER_FUNCTIONS[name](frame, **kwargs)`, in a worker (or here, with no workers)."""
        if name not in WORKER_FUNCTIONS:
            raise ValueError(f"report workers run only {', '.join(sorted(WORKER_FUNCTIONS))}, not {name!r}")
        if self.workers == 0:
            done: Future = Future()
            try:
                done.set_result(_call(name, frame, kwargs))
            except Exception as err:  # noqa: BLE001 - delivered through the future, like a worker's
                done.set_exception(err)
            return done
        if self._threads is None:  # a thread per worker only waits on its subprocess
            self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="scalegrid-report")
        return self._threads.submit(_in_subprocess, name, frame, kwargs)

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
            self._threads = None


def split_by(frame: pd.DataFrame, column: str, parts: int) -> list[pd.DataFrame]:
    """The frame in at most `parts` slices, each holding whole values of `column`, balanced by rows."""
    values = sorted(frame[column].unique())
    parts = max(1, min(parts, len(values)))
    buckets: list[list] = [[] for _ in range(parts)]
    sizes = [0] * parts
    counts = frame[column].value_counts()
    for value in sorted(values, key=lambda v: -counts[v]):
        i = sizes.index(min(sizes))
        buckets[i].append(value)
        sizes[i] += counts[value]
    return [frame[frame[column].isin(b)] for b in buckets if b]


def _worker_main() -> int:
    name, frame, kwargs = pickle.loads(sys.stdin.buffer.read())
    try:
        result = (True, _call(name, frame, kwargs))
    except Exception as err:  # noqa: BLE001 - sent back and raised in the report
        result = (False, err)
    try:
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as err:  # noqa: BLE001 - an unpicklable exception: send its text
        data = pickle.dumps((False, RuntimeError(f"{err.__class__.__name__}: {err}")))
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())

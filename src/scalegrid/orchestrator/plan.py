"""Spec -> trials -> what the store already holds: the plan that `plan`, `run` and `status` share.

Everything here validates and reads; nothing writes. `run` writes only after `make_plan` (and
the data checks of `prepare_data`) have passed, so a bad input leaves the results directory as
it was.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scalegrid import grid, store
from scalegrid.errors import UserError
from scalegrid.spec import SweepSpec, load_spec
from scalegrid.storage import ResultsLocation, is_uri, location
from scalegrid.trainers.base import Trial

STATUS_OF_ROW = {"COMPLETED": "done", "DIVERGED": "diverged", "FAILED": "failed"}


@dataclass
class SweepPlan:
    spec: SweepSpec
    results_dir: Path | str  # a local directory, or the URI of an object store
    data: "object"  # trainers.data.DataIdentity
    trials: list[Trial]  # the train stage: grid points and ensemble members
    runs: pd.DataFrame  # the store's rows for this grid's trials and students
    unreadable: list[tuple[Path | str, str]]
    results_uri: str = ""  # the results as the user wrote them: a path, or a URI (shared storage)
    graph: "object" = None  # stages.StageGraph: ensembles, teacher corpora, students

    @property
    def location(self) -> ResultsLocation:
        return location(self.results_uri or self.results_dir)

    def status(self, trial_id: str) -> str:
        return self._statuses.get(trial_id, "pending")

    @functools.cached_property
    def _statuses(self) -> dict[str, str]:  # one pass: a lookup per trial would be quadratic
        return {t: STATUS_OF_ROW.get(s, "pending") for t, s in zip(self.runs["trial_id"], self.runs["status"])}

    @property
    def pending(self) -> list[Trial]:
        """Train-stage trials not done, and members done without their saved weights (trained again)."""
        done = store.done_trial_ids(self.runs)
        needs = self.graph.needs_weights if self.graph is not None else set()
        return [
            t for t in self.trials
            if t.trial_id not in done
            or (t.trial_id in needs and self.status(t.trial_id) == "done"
                and not (Path(self.results_dir) / "models" / t.trial_id / "config.json").is_file())
        ]

    def dependants(self) -> pd.DataFrame:
        """The ensembles and students of the grid with their state: done, pending or blocked."""
        from scalegrid.orchestrator.stages import dependants, statuses

        status, rows = statuses(self.results_dir)
        return dependants(self.graph.to_json(), status, rows, self.results_dir)

    def table(self) -> pd.DataFrame:
        """One row per trial: identity, axes, size, tokens, FLOPs and status."""
        rows = []
        for t in self.trials:
            c = t.config
            rows.append(
                {
                    "trial_id": t.trial_id,
                    "model": t.model_label,
                    "unique_tokens": c.unique_tokens,
                    "epochs": c.epochs,
                    "lr": c.lr,
                    "weight_decay": c.weight_decay,
                    "seed": c.seed,
                    "member": c.member,
                    "params": grid.num_params(c),
                    "tokens_seen": grid.tokens_seen(c),
                    "flops": grid.estimated_flops(c),
                    "status": self.status(t.trial_id),
                }
            )
        return pd.DataFrame(rows)


def make_plan(spec_path: str | Path, *, results: str | None = None) -> SweepPlan:
    from scalegrid.trainers.data import describe  # reads file hashes, never tokenizes

    spec = load_spec(spec_path)
    _check_divisible(spec)
    results_uri = str(results or spec.results_dir)
    if not is_uri(results_uri):  # trials run in other working directories (Ray Tune's trial dirs)
        results_uri = os.path.abspath(os.path.expanduser(results_uri))
    results_dir = store.check_results_dir(results_uri)
    identity = describe(spec.data)
    from scalegrid.orchestrator.stages import build

    graph = build(spec, identity, results_dir=str(results_dir))
    scan = store.scan_runs(results_dir)
    ids = {t.trial_id for t in graph.trials} | {s.trial_id for s in graph.students}
    runs = scan.frame[scan.frame["trial_id"].isin(ids)]
    release_freed_memory()
    return SweepPlan(spec, results_dir, identity, graph.trials, runs, scan.unreadable, results_uri=results_uri, graph=graph)


def release_freed_memory() -> None:
    """Hand the heap that reading thousands of small Parquet files freed back to the OS.

    glibc keeps it otherwise (measured: 2,000 run files leave ~80 MB of free pages in a
    driver that scans the store twice per run); a no-op where there is no glibc.
    """
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _check_divisible(spec: SweepSpec) -> None:
    """The lm trainer trains on exactly unique_tokens tokens, cut into whole sequences."""
    if spec.trainer != "lm":
        return
    seq_len = spec.train.seq_len
    for i, u in enumerate(spec.data.unique_tokens):
        if u % seq_len or u < seq_len:
            lower, upper = max(seq_len, u // seq_len * seq_len), (u // seq_len + 1) * seq_len
            raise UserError(
                f"data.unique_tokens[{i}]: {u} is not a whole number of train.seq_len={seq_len} sequences; "
                f"use {lower} or {upper}"
            )


def format_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(no trials)"
    shown = frame.copy()
    for column in ("flops",):
        if column in shown:
            shown[column] = shown[column].map(lambda v: f"{v:.3g}")
    for column in ("val_loss", "best_val_loss", "train_loss"):
        if column in shown:
            shown[column] = shown[column].map(lambda v: f"{v:.4f}" if pd.notna(v) else "-")
    return shown.to_string(index=False)


def totals_line(frame: pd.DataFrame) -> str:
    counts = frame["status"].value_counts()
    parts = ", ".join(f"{counts[s]} {s}" for s in ("done", "diverged", "failed", "pending") if s in counts)
    return (
        f"{len(frame)} trials ({parts}); {frame['tokens_seen'].sum():,} tokens, "
        f"{frame['flops'].sum():.3g} FLOPs in all"
    )


def prepare_data(plan: SweepPlan):
    """Tokenize the corpus once (or find it cached) and check every budget fits in it.

    Returns a function that saves the tokens into the results directory's cache; `run` calls it
    only after every check passed, so a too-large `unique_tokens` leaves the directory untouched.
    """
    if plan.spec.trainer != "lm" or not plan.pending:
        return lambda: None
    from scalegrid.trainers.data import TokenCache, tokenize

    cache = TokenCache(plan.results_dir)
    cached = cache.load(plan.data.key)
    corpus = None
    if cached is not None:
        train_tokens = json.loads((cached / "meta.json").read_text())["train_tokens"]  # no need to map the tokens
    else:
        corpus = tokenize(plan.spec.data)
        train_tokens = len(corpus.train)
    for i, u in enumerate(plan.spec.data.unique_tokens):
        if u > train_tokens:
            raise UserError(
                f"data.unique_tokens[{i}]: {u:,} is larger than the corpus' {train_tokens:,} training tokens; "
                "lower it or give a larger corpus"
            )
    return (lambda: cache.save(corpus)) if corpus is not None else (lambda: None)

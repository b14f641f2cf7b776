"""Spec -> trials -> what the store already holds: the plan that `plan`, `run` and `status` share.

Everything here validates and reads; nothing writes. `run` writes only after `make_plan` (and
the data checks of `prepare_data`) have passed, so a bad input leaves the results directory as
it was. A plan reads the store once (`store.read`); `refresh` reads it again at a stage boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from scalegrid import store
from scalegrid.errors import UserError
from scalegrid.orchestrator.graph import StageGraph, build, dependants
from scalegrid.orchestrator.search import searched_graph
from scalegrid.spec import SweepSpec, load_spec
from scalegrid.storage import ResultsLayout, absolute, check_writable, layout
from scalegrid.trial import STATE_OF_STATUS, DataIdentity, Trial


@dataclass(frozen=True)
class SweepPlan:
    spec: SweepSpec
    results: ResultsLayout
    data: DataIdentity
    graph: StageGraph  # the train stage's trials, ensembles, teacher corpora, students
    snapshot: store.Snapshot  # the whole store as read when planned (other sweeps' rows too)
    searches: dict[str, Any] | None = None  # a searched spec: cell_id -> its walk (`search.CellSearch`)

    @property
    def trials(self) -> list[Trial]:
        return self.graph.trials

    def refresh(self) -> SweepPlan:
        """The same plan with the store read again (after a stage; a search walks again)."""
        snapshot = store.read(self.results)
        if self.spec.search is None:
            return replace(self, snapshot=snapshot)
        graph, searches = searched_graph(self.spec, self.data, self.results, snapshot)
        return replace(self, snapshot=snapshot, graph=graph, searches=searches)

    def status(self, trial_id: str) -> str:
        """done | diverged | failed | pending."""
        return STATE_OF_STATUS.get(self.snapshot.status.get(trial_id), "pending")

    @property
    def pending(self) -> list[Trial]:
        """Train-stage trials not done, and members done without their saved weights (trained again)."""
        done, needs = self.snapshot.done, self.graph.needs_weights
        return [
            t for t in self.trials
            if t.trial_id not in done
            or (t.trial_id in needs and self.snapshot.status[t.trial_id] == "COMPLETED" and not self.results.has_model(t.trial_id))
        ]

    def dependants(self) -> pd.DataFrame:
        """The ensembles and students of the grid with their state: done, pending or blocked."""
        return dependants(self.graph.to_json(), self.snapshot.status, self.snapshot.ensembles_done)

    def table(self) -> pd.DataFrame:
        """One row per trial: identity, axes, size, tokens, FLOPs and status."""
        rows = []
        for t in self.trials:
            c = t.config
            rows.append({
                "trial_id": t.trial_id, "model": t.model_label, "unique_tokens": c.unique_tokens, "epochs": c.epochs,
                "lr": c.lr, "weight_decay": c.weight_decay, "seed": c.seed, "member": c.member,
                "params": c.num_params, "tokens_seen": c.tokens_seen, "flops": c.estimated_flops,
                "status": self.status(t.trial_id),
            })
        return pd.DataFrame(rows)


def make_plan(spec_path: str | Path, *, results: str | None = None) -> SweepPlan:
    from scalegrid.trainers.data import describe  # reads file hashes, never tokenizes

    spec = load_spec(spec_path)
    _check_divisible(spec)
    root = layout(absolute(results or spec.results_dir))  # trials run in Tune's trial directories
    check_writable(root)
    identity = describe(spec.data)
    snapshot = store.read(root)
    if spec.search is not None:
        graph, searches = searched_graph(spec, identity, root, snapshot)
        return SweepPlan(spec, root, identity, graph, snapshot, searches)
    return SweepPlan(spec, root, identity, build(spec, identity, root), snapshot)


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
    if "flops" in shown:
        shown["flops"] = shown["flops"].map(lambda v: f"{v:.3g}")
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

    cache = TokenCache(plan.results)
    train_tokens = cache.train_tokens(plan.data.key)  # meta.json alone: no need to map the tokens
    corpus = None
    if train_tokens is None:
        corpus = tokenize(plan.spec.data)
        train_tokens = len(corpus.train)
    for i, u in enumerate(plan.spec.data.unique_tokens):
        if u > train_tokens:
            raise UserError(
                f"data.unique_tokens[{i}]: {u:,} is larger than the corpus' {train_tokens:,} training tokens; "
                "lower it or give a larger corpus"
            )
    return (lambda: cache.save(corpus)) if corpus is not None else (lambda: None)

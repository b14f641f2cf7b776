"""Spec -> trials -> what the store already holds: the plan that `plan`, `run` and `status` share.

Everything here validates and reads; nothing writes. `run` writes only after `make_plan` (and
the data checks of `prepare_data`) have passed, so a bad input leaves the results directory as
it was. A plan reads the store once (`store.read`); `refresh` reads it again at a stage boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from scalegrid import store
from scalegrid.errors import UserError
from scalegrid.memory import GIB, DoesNotFit, MemoryEstimate, plan_micro_batch, usable_bytes
from scalegrid.orchestrator.graph import StageGraph, build, dependants
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
    memory: dict[str, MemoryEstimate] = field(default_factory=dict)  # model label -> its trials' GPU plan

    @property
    def trials(self) -> list[Trial]:
        return self.graph.trials

    def refresh(self) -> SweepPlan:
        """The same plan with the store read again (after a stage)."""
        return replace(self, snapshot=store.read(self.results))

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
                **self._memory_columns(t.model_label), "status": self.status(t.trial_id),
            })
        return pd.DataFrame(rows)

    def _memory_columns(self, label: str) -> dict:
        estimate = self.memory.get(label)
        return {} if estimate is None else {"micro_batch": estimate.micro_batch, "gpu_gib": round(estimate.total / GIB, 1)}

    def with_gpu_memory(self, gpu_memory_gb: float) -> SweepPlan:
        """The plan with every lm trial's micro-batch and peak memory on GPUs of `gpu_memory_gb`
        (raises UserError, naming the fix, for a trial that does not fit)."""
        trials = [*self.graph.trials, *self.graph.students]
        return replace(self, memory=plan_memory(self.spec, trials, self.data.vocab_size, gpu_memory_gb))


def make_plan(spec_path: str | Path, *, results: str | None = None) -> SweepPlan:
    from scalegrid.trainers.data import describe  # reads file hashes, never tokenizes

    spec = load_spec(spec_path)
    _check_divisible(spec)
    root = layout(absolute(results or spec.results_dir))  # trials run in Tune's trial directories
    check_writable(root)
    identity = describe(spec.data)
    graph = build(spec, identity, root)
    plan = SweepPlan(spec, root, identity, graph, store.read(root))
    return plan.with_gpu_memory(spec.resources.gpu_memory_gb) if spec.resources.gpu_memory_gb else plan


def plan_memory(spec: SweepSpec, trials: list[Trial], vocab_size: int, gpu_memory_gb: float) -> dict[str, MemoryEstimate]:
    """Model label -> the micro-batch and estimated peak of its trials on a GPU of `gpu_memory_gb`,
    for lm sweeps that ask for GPUs (`memory.py`); the first model that cannot fit is refused."""
    if spec.trainer != "lm" or not spec.resources.gpus:
        return {}
    budget = usable_bytes(gpu_memory_gb, spec.resources.gpus)
    plans = {}
    for label, shape in {t.model_label: t.config.model for t in trials}.items():
        try:
            plans[label] = plan_micro_batch(shape, vocab_size, spec.train, budget)
        except DoesNotFit as err:
            where = f"batch {spec.train.batch_size} x {spec.train.seq_len}, vocab {vocab_size:,}"
            raise UserError(f"model {label} ({where}) on a {gpu_memory_gb:g} GB GPU: {err}") from None
    return plans


def memory_table(plan: SweepPlan) -> pd.DataFrame:
    """Per model: where the estimated peak GPU memory of a training step goes, in GiB."""
    rows = []
    for label, m in plan.memory.items():
        rows.append({
            "model": label, "micro_batch": m.micro_batch, "weights": m.weights, "gradients": m.gradients,
            "adamw": m.optimizer, "bf16_copies": m.weight_copies,
            "activations": m.activations_if_not_checkpointed, "activations_ckpt": m.activations_if_checkpointed,
            "loss_chunk": m.loss_chunk, "peak": m.total,
        })
    frame = pd.DataFrame(rows)
    numeric = frame.columns.drop(["model", "micro_batch"])
    frame[numeric] = frame[numeric].map(lambda v: f"{v / GIB:.1f}")
    return frame


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

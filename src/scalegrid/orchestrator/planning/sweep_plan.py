"""Spec -> trials -> what the store already holds: the plan that `plan`, `run` and `status` share.

Everything here validates and reads; nothing writes. `run` writes only after `make_plan` (and
the token cache's build, `orchestrator/execution/token_build.py`, which checks the corpus before publishing)
have passed, so a bad input leaves the results directory as it was. A plan reads the store once (`store.read`); `refresh` reads it again at a stage boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from scalegrid import store
from scalegrid.analysis import by_size
from scalegrid.data.checks import check_corpus_size, check_files, check_outside_data
from scalegrid.data.corpus.build import check_covers
from scalegrid.data.eval_tasks import TaskRef, harness_version, resolve_tasks
from scalegrid.data.identity import TokenCache, describe, token_dtype
from scalegrid.errors import UserError
from scalegrid.gpu_memory import GIB, DoesNotFit, MemoryEstimate, plan_micro_batch, sharded, usable_bytes
from scalegrid.grid import check_size
from scalegrid.orchestrator.planning.stage_graph import StageGraph, build, dependants
from scalegrid.orchestrator.planning.capacity import shares_trunks
from scalegrid.orchestrator.planning.cells import CellSearch, searched_graph
from scalegrid.orchestrator.planning.evaluations import EvalJob, evaluation_jobs
from scalegrid.spec import SpecSource, Sweep, load_sweep
from scalegrid.storage import ResultsLayout, absolute, check_writable, layout
from scalegrid.trainers.trunk_groups import planned_flops
from scalegrid.trial import STATE_OF_STATUS, DataIdentity, Trial


@dataclass(frozen=True)
class SweepPlan:
    sweep: Sweep  # the spec, resolved
    results: ResultsLayout
    data: DataIdentity
    graph: StageGraph  # the train stage's trials, ensembles, teacher corpora, students
    snapshot: store.Snapshot  # the whole store as read when planned (other sweeps' rows too)
    searches: dict[str, CellSearch] | None = None  # a searched spec: cell_id -> its walk
    memory: dict[str, MemoryEstimate] = field(default_factory=dict)  # model label -> its trials' GPU plan
    tasks: tuple[TaskRef, ...] = ()  # `evaluate.tasks`, found and checked (`data/eval_tasks.py`)
    harness: str = ""  # lm-evaluation-harness's version, part of every evaluation's identity

    @property
    def trials(self) -> list[Trial]:
        return self.graph.trials

    def refresh(self) -> SweepPlan:
        """The same plan with the store read again (after a stage; a search walks again)."""
        snapshot = store.read(self.results)
        if self.sweep.search is None:
            return replace(self, snapshot=snapshot)
        graph, searches = searched_graph(self.sweep, self.data, self.results, snapshot)
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
        return dependants(self.graph.to_json(), self.snapshot.status, self.snapshot.ensembles_done, self.results.has_model)

    def evaluations(self) -> list[EvalJob]:
        """Every downstream evaluation `evaluate:` asks for, with its state in the store now."""
        return evaluation_jobs(self.sweep, self.graph, self.tasks, self.snapshot, self.results.has_model, self.harness)

    def table(self) -> pd.DataFrame:
        """One row per trial: identity, axes, size, tokens, FLOPs and status; smallest model first
        (built by columns: a dict per row of 100,000 trials would cost 100 MB). A grid's `wsd` trunk
        counts its stable phase once: on its longest epoch count, each shorter one its decay only."""
        trials = self.trials
        configs = [t.config for t in trials]
        trunked = self.sweep.search is None and shares_trunks(self.sweep)
        columns = {
            "trial_id": [t.trial_id for t in trials], "model": [t.model_label for t in trials],
            **{axis: [getattr(c, axis) for c in configs] for axis in ("unique_tokens", "epochs", "lr", "weight_decay", "seed", "member")},
            "params": [c.num_params for c in configs], "tokens_seen": [c.tokens_seen for c in configs],
            "flops": planned_flops(configs) if trunked else [c.estimated_flops for c in configs],
        }
        if self.memory:
            memory = [self._memory_columns(t.model_label) for t in trials]
            columns |= {name: [m.get(name) for m in memory] for name in ("micro_batch", "gpu_gib")}
        columns["status"] = [self.status(t.trial_id) for t in trials]
        return by_size(pd.DataFrame(columns)).reset_index(drop=True)

    def _memory_columns(self, label: str) -> dict:
        estimate = self.memory.get(label)
        return {} if estimate is None else {"micro_batch": estimate.micro_batch, "gpu_gib": round(estimate.total / GIB, 1)}

    def with_gpu_memory(self, gpu_memory_gb: float) -> SweepPlan:
        """The plan with every lm trial's micro-batch and peak memory on GPUs of `gpu_memory_gb`
        (raises UserError, naming the fix, for a trial that does not fit)."""
        trials = [*self.graph.trials, *self.graph.students]
        return replace(self, memory=plan_memory(self.sweep, trials, self.data.vocab_size, gpu_memory_gb))


def make_plan(source: SpecSource | Sweep, *, results: str | None = None, max_trials: int | None = None) -> SweepPlan:
    """The plan of a spec file, a spec as a dict (the Python API; its errors name `spec`) or a
    resolved `Sweep`; a sweep over `max_trials` (default `grid.MAX_TRIALS`) is refused first."""
    sweep = source if isinstance(source, Sweep) else load_sweep(source)
    check_size(sweep, max_trials)
    _check_divisible(sweep)
    if results is not None and not results.strip():
        raise UserError("--results: an empty path; give the results directory, or leave --results out for the spec's")
    root = layout(absolute(sweep.results_dir if results is None else results))  # trials run in Tune's trial directories
    check_writable(root)
    check_outside_data(root, sweep.data)
    identity = describe(sweep.data, root)  # reads recorded file hashes, never tokenizes
    cached = TokenCache(root).meta(identity.key) if sweep.trainer == "lm" else None
    if sweep.trainer == "lm" and cached is None:  # the files will be read: open each now
        check_files(sweep.data)  # it opens, has the text field and a document with text
        check_corpus_size(sweep.data)  # its files can hold the largest budget
    elif cached is not None and cached.get("complete"):
        check_covers(sweep.data, cached)  # the whole corpus was read: every budget fits in it
    evaluate = sweep.evaluate
    tasks = () if evaluate is None else resolve_tasks(evaluate.tasks, evaluate.include, synthetic=getattr(identity.config, "synthetic", None))
    snapshot = store.read(root)
    if sweep.search is not None:
        graph, searches = searched_graph(sweep, identity, root, snapshot)
        plan = SweepPlan(sweep, root, identity, graph, snapshot, searches, tasks=tasks, harness=harness_version() or "")
    else:
        plan = SweepPlan(sweep, root, identity, build(sweep, identity, root), snapshot, tasks=tasks, harness=harness_version() or "")
    return plan.with_gpu_memory(sweep.resources.gpu_memory_gb) if sweep.resources.gpu_memory_gb else plan


def plan_memory(sweep: Sweep, trials: list[Trial], vocab_size: int, gpu_memory_gb: float) -> dict[str, MemoryEstimate]:
    """Model label -> the micro-batch and estimated peak of its trials on a GPU of `gpu_memory_gb`,
    for lm sweeps that ask for GPUs (`gpu_memory.py`); the first model that cannot fit is refused."""
    r = sweep.resources
    if sweep.trainer != "lm" or not r.worker["GPU"]:
        return {}
    budget = usable_bytes(gpu_memory_gb, r.worker["GPU"])  # one worker's GPU
    plans = {}
    largest = {}  # model label -> its trial with the largest batch (train fields may be axes)
    for t in sorted(trials, key=lambda t: t.config.train.batch_size):
        largest[t.model_label] = t
    for label, trial in largest.items():
        shape, train = trial.config.model, trial.config.train
        shards = r.workers if sharded(shape, vocab_size, train, budget, r.workers) else 1  # FSDP2 over the workers
        try:
            plans[label] = plan_micro_batch(shape, vocab_size, train, budget, shards=shards)
        except DoesNotFit as err:
            where = f"batch {train.batch_size} x {train.seq_len}, vocab {vocab_size:,}"
            raise UserError(f"model {label} ({where}) on a {gpu_memory_gb:g} GB GPU: {err}") from None
    return plans


def memory_table(plan: SweepPlan) -> pd.DataFrame:
    """Per model: where the estimated peak GPU memory of a training step goes, in GiB."""
    rows = []
    for label, m in sorted(plan.memory.items(), key=lambda item: item[1].weights):  # smallest model first
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


def _check_divisible(sweep: Sweep) -> None:
    """The lm trainer trains on exactly unique_tokens tokens, cut into whole sequences."""
    if sweep.trainer != "lm":
        return
    seq_len = sweep.train.seq_len
    for i, u in enumerate(sweep.data.unique_tokens):
        if u % seq_len or u < seq_len:
            lower, upper = max(seq_len, u // seq_len * seq_len), (u // seq_len + 1) * seq_len
            fix = f"use {lower}" if lower == upper else f"use {lower} or {upper}"
            raise UserError(f"data.unique_tokens[{i}]: {u} is not a whole number of train.seq_len={seq_len} sequences; {fix}")


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


def totals(frame: pd.DataFrame) -> dict:
    """The plan table's totals: trials, trials by status, tokens seen and FLOPs."""
    counts = frame["status"].value_counts()
    return {
        "trials": len(frame),
        "by_status": {s: int(counts[s]) for s in ("done", "diverged", "failed", "pending") if s in counts},
        "tokens_seen": int(frame["tokens_seen"].sum()),
        "flops": float(frame["flops"].sum()),
    }


def totals_line(frame: pd.DataFrame) -> str:
    t = totals(frame)
    parts = ", ".join(f"{n} {s}" for s, n in t["by_status"].items())
    return f"{t['trials']} trials ({parts}); {t['tokens_seen']:,} tokens, {t['flops']:.3g} FLOPs in all"


ROW_BYTES = 256 * 1024  # per trial: its run and curve rows, lease history and Ray Tune's files, generously
CHECKPOINT_OVERHEAD = 64 * 1024


def space_needed(plan: SweepPlan, *, slots: int) -> dict[str, int]:
    """About how many bytes a run writes: the token cache (its budgets and validation tokens, when
    not cached yet), the checkpoints of the `slots` largest trials running at once (fp32 weights
    and two AdamW moments, `keep_checkpoints` + 1 of them: the newest is written before the oldest
    goes), the final weights it keeps, and its rows."""
    trials = plan.pending + [s for s in plan.graph.students if s.trial_id not in plan.snapshot.done]
    lm = sorted((t.config.num_params for t in trials if t.config.trainer == "lm"), reverse=True)
    per_checkpoint = [12 * params + CHECKPOINT_OVERHEAD for params in lm[:slots]]
    return {
        "token cache": _token_cache_bytes(plan) if trials else 0,
        "checkpoints": (plan.sweep.fault_tolerance.keep_checkpoints + 1) * sum(per_checkpoint),
        "saved models": sum(4 * t.config.num_params for t in trials if t.save_model),
        "rows": ROW_BYTES * len(trials),
    }


def _token_cache_bytes(plan: SweepPlan) -> int:
    """The token cache a run will publish: nothing when it is there; else at least the largest
    budget plus the validation tokens (a whole-corpus build writes more: an estimate from below)."""
    data = plan.sweep.data
    if plan.sweep.trainer != "lm":
        return 0
    if TokenCache(plan.results).meta(plan.data.key) is not None:
        return 0
    itemsize = np.dtype(token_dtype(plan.data.vocab_size)).itemsize
    return (max(data.unique_tokens) + data.validation.max_tokens) * itemsize

"""Running the stages after the train stage: ensemble evaluations, teacher corpora, then students.

`run_stages` runs what the train stage made possible, each stage once its inputs are complete:
ensemble evaluations and teacher corpora as Ray tasks, students as Tune trials like any other.
A dependant of a member that FAILED or DIVERGED is *blocked*: listed with the reason, never run,
never a crash; the next run retries the member and then the dependants. The graph itself is
built, purely, in `graph.py`.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Sequence

from scalegrid import store, trainers
from scalegrid.orchestrator.display import console
from scalegrid.orchestrator.planning import capacity as resources
from scalegrid.orchestrator.planning.stage_graph import CorpusJob, EnsembleJob, blocker
from scalegrid.orchestrator.planning.sweep_plan import SweepPlan
from scalegrid.orchestrator.execution.launcher import schedule
from scalegrid.storage import CACHE_MARKER, ResultsLayout
from scalegrid.trial import Status, TeacherCorpusRequest, Trial


def run_stages(plan: SweepPlan, snapshot: store.Snapshot, provenance: dict, *, max_concurrent: int | None = None,
               callbacks: Sequence = ()) -> None:
    """After the train stage (whose rows `snapshot` holds): ensemble evaluations, teacher corpora,
    then students, each once its inputs are complete; blocked dependants are printed, not run."""
    graph, results = plan.graph, plan.results

    def weights_ok(ids) -> bool:
        return all(snapshot.status.get(t) == Status.COMPLETED.value and results.has_model(t) for t in ids)

    todo = [e for e in graph.ensembles if not set(e.row_ids) <= snapshot.ensembles_done]
    for e in todo:
        if not weights_ok(e.member_ids):
            _say_blocked("ensemble", e.point, e.member_ids, snapshot.status)
    _evaluate_ensembles([e for e in todo if weights_ok(e.member_ids)], plan, provenance, snapshot.ensembles_done)
    corpora = [c for c in graph.corpora if weights_ok(c.request.teacher)]
    _make_corpora(corpora, plan)
    runnable = []
    for s in (s for s in graph.students if s.trial_id not in snapshot.done):
        teacher = list(s.config.distill.teacher)
        if weights_ok(teacher) and _corpus_ready(results, s):
            runnable.append(s)
        else:
            _say_blocked("student", s.model_label, teacher, snapshot.status)
    if runnable:
        schedule(plan, provenance, max_concurrent=max_concurrent, trials=runnable, callbacks=callbacks)


def _evaluate_ensembles(ready: list[EnsembleJob], plan: SweepPlan, provenance: dict, done: set[str]) -> None:
    if not ready:
        return
    import ray

    task = ray.remote(**resources.stage_task(plan.sweep))(evaluate_ensemble)
    for out in ray.get([task.remote(e, provenance, frozenset(done)) for e in ready]):
        if out["error"]:
            print(f"ensemble at {out['point']}: FAILED ({out['error']})", file=sys.stderr)
            continue
        console.info(
            f"ensemble at {out['point']}: K={len(out['losses'])} in {out['seconds']:.1f} s "
            f"({', '.join(f'{s:.2f}' for s in out['seconds_per_member'])} s per member); "
            f"loss by k {', '.join(f'{v:.4f}' for v in out['losses'])}"
        )


def evaluate_ensemble(job: EnsembleJob, provenance: dict, done: frozenset[str] = frozenset()) -> dict:
    """The Ray task body: one pass per member; each k's row not in `done` written (FAILED on an error)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    start = time.perf_counter()
    first = job.members[0]
    losses, per_member, error, device = [], [], None, "cpu"
    try:
        losses, per_member, device = trainers.evaluate_ensemble(job.members, job.combine)
    except Exception as err:  # noqa: BLE001 - a missing model or a bug fails this ensemble only
        error = traceback.format_exception_only(type(err), err)[-1].strip()[:2000]
    seconds = time.perf_counter() - start
    for k in range(1, len(job.members) + 1):
        if job.row_id(k) in done:  # a row is its members: written once, whatever K asked for it
            continue
        loss = losses[k - 1] if losses else float("nan")
        row = store.ensemble_row(
            list(job.members[:k]), loss, wall_s=seconds, error=error, provenance=provenance, device=device, combine=job.combine,
        )
        store.write_ensemble(first.results, row)
    return {"point": job.point, "losses": losses, "seconds_per_member": per_member, "seconds": seconds, "error": error}


def _make_corpora(corpora: list[CorpusJob], plan: SweepPlan) -> None:
    missing = [c for c in corpora if not _corpus_done(plan.results, c.corpus_id)]
    if not missing:
        return
    import ray

    task = ray.remote(**resources.stage_task(plan.sweep))(_make_corpus)
    for meta in ray.get([task.remote(plan.results, c.corpus_id, c.request, plan.data.key) for c in missing]):
        console.info(
            f"teacher corpus {meta['id']}: {meta['tokens']:,} tokens from k={len(meta['teacher'])} in "
            f"{meta['seconds']:.1f} s ({meta['tokens_per_s']:,.0f} tokens/s, {meta['device']}, KV cache)"
        )


def _make_corpus(results: ResultsLayout, corpus_id: str, request: TeacherCorpusRequest, data_key: str) -> dict:
    return trainers.make_teacher_corpus(results, corpus_id, request, data_key)  # torch loads in the task, not the driver


def _corpus_done(results: ResultsLayout, corpus_id: str) -> bool:
    return results.is_file(*results.teacher_corpus(corpus_id), CACHE_MARKER)


def _corpus_ready(results: ResultsLayout, student: Trial) -> bool:
    corpus = getattr(student.config.distill, "corpus", None)
    return corpus is None or _corpus_done(results, corpus)


def _say_blocked(what: str, where: str, member_ids: list[str], status: dict[str, str]) -> None:
    why = blocker(member_ids, status)
    state = f"blocked: {'teacher ' if what == 'student' else ''}{why}" if why else "waiting for its members"
    console.info(f"{what} {where}: {state}")

"""The evaluate stage: downstream evaluations on lm-evaluation-harness as Ray tasks, after the others.

`run_evaluations` takes the plan's pending evaluations (`planning/evaluations.py`: models trained
and saved, not evaluated yet), one Ray task per model holding all of its tasks (the model loads
once), each reserving what one trial worker does (or `evaluate.resources`; on a GPU the members
compute in bf16). The task writes each evaluation's rows (`evals/<eval_id>.parquet`: a row per
metric, or a FAILED row with its error, retried by the next run) and the driver prints a line per
model and task as it lands. Tasks that are all local (`synthetic_facts`, `evaluate.include`) run
with the hub switched off (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE): nothing may reach out for them.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections.abc import Sequence

from scalegrid import store, trainers
from scalegrid.data.eval_tasks import TaskRef
from scalegrid.orchestrator.planning import capacity
from scalegrid.orchestrator.planning.evaluations import PENDING, EvalJob, EvalModel
from scalegrid.orchestrator.planning.sweep_plan import SweepPlan
from scalegrid.spec import EvaluateSpec
from scalegrid.trial import TaskScores

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def run_evaluations(plan: SweepPlan, provenance: dict[str, str]) -> int:
    """Evaluate what is pending, one Ray task per model; returns how many evaluations ran."""
    pending = [j for j in plan.evaluations() if j.state == PENDING]
    if not pending:
        return 0
    import ray

    by_model: dict[str, list[EvalJob]] = {}
    for job in pending:
        by_model.setdefault(job.model.model_id, []).append(job)
    options = capacity.evaluation_task(plan.sweep)
    if all(j.task.local for j in pending):
        options["runtime_env"] = {"env_vars": OFFLINE}
    task = ray.remote(**options)(evaluate_model)
    recipe = plan.sweep.evaluate
    print(f"{plan.sweep.name}: evaluating {len(by_model)} models on {len({j.task.name for j in pending})} tasks "
          f"({len(pending)} evaluations, harness {plan.harness})", file=sys.stderr)
    start, labels = time.perf_counter(), {}
    for jobs in by_model.values():
        ref = task.remote(jobs[0].model, [j.task for j in jobs], [j.eval_id for j in jobs], recipe, plan.harness, provenance)
        labels[ref] = jobs[0].model.label
    waiting = list(labels)
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        try:
            lines = ray.get(ready[0])
        except ray.exceptions.RayError as err:  # its worker died (memory, a node lost): nothing written, the next run retries
            lines = [f"evaluate {labels[ready[0]]}: FAILED ({type(err).__name__}: {str(err).strip().splitlines()[0][:300]})"]
        for line in lines:
            print(line, file=sys.stderr)
    print(f"{plan.sweep.name}: {len(pending)} evaluations of {len(by_model)} models in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return len(pending)


def evaluate_model(
    model: EvalModel, tasks: Sequence[TaskRef], eval_ids: Sequence[str], recipe: EvaluateSpec, harness: str,
    provenance: dict[str, str],
) -> list[str]:
    """The Ray task body: score one model on its tasks, write each evaluation's rows; returns the
    lines the driver prints."""
    start = time.perf_counter()
    try:
        scores = trainers.evaluate_downstream(
            model.members, combine=model.combine, tasks=tasks, num_fewshot=recipe.num_fewshot, limit=recipe.limit,
            batch_size=recipe.batch_size,
        )
    except Exception as err:  # noqa: BLE001 - a model that does not load fails its evaluations, not the run
        error = traceback.format_exception_only(type(err), err)[-1].strip()[:2000]
        scores = [TaskScores(t.name, t.version, error=error, seconds=time.perf_counter() - start) for t in tasks]
    lines = []
    for eval_id, score in zip(eval_ids, scores):
        rows = store.eval_rows(
            eval_id, list(model.members), stage=model.stage, model_id=model.model_id, combine=model.combine, scores=score,
            num_fewshot=recipe.num_fewshot, limit=recipe.limit, harness_version=harness, provenance=provenance,
        )
        store.write_eval(model.members[0].results, rows)
        lines.append(f"evaluate {model.label}: {score.task} {_shown(score)}")
    return lines


def _shown(score: TaskScores) -> str:
    if score.error is not None:
        return f"FAILED ({score.error})"
    metric = "acc_norm" if "acc_norm" in score.metrics else "acc" if "acc" in score.metrics else sorted(score.metrics)[0]
    value, stderr = score.metrics[metric]
    spread = f" ± {stderr:.3f}" if math.isfinite(stderr) else ""
    cut = f", {score.truncated} requests cut from the left" if score.truncated else ""
    return f"{metric} {value:.3f}{spread} ({score.samples} examples{cut}, {score.seconds:.1f} s, {score.device})"

"""The sweep pipeline, for `scalegrid run` and `scalegrid.run` alike:

    validate -> prepare (token cache) -> search (walk the cells) -> schedule (the grid's trials)
             -> stages (ensembles, teacher corpora, students) -> evaluate (downstream tasks) -> report

    done = run_sweep("sweeps/quickstart.yaml")    # or a dict, or a resolved Sweep
    done.plan.snapshot.all_runs                   # the store as it is after the run
    done.report                                   # RESULTS/report/index.html (None: not asked or not written)

Everything is checked before anything is written: the spec (resolved once), the trackers, a
cluster address, that trials fit a node and the results' disk, and the corpus (the token cache is
built, and checked, before any trial starts). From there the results directory is written. The
store is read once at each stage boundary (when planned, after the search, after the train stage,
after the ensembles and students, after the evaluations), and the last read feeds the report and
the caller's summary.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scalegrid import store
from scalegrid.orchestrator.display import console
from scalegrid.orchestrator.display.tracking import check as check_tracking
from scalegrid.orchestrator.execution import launcher
from scalegrid.orchestrator.execution.evaluations import run_evaluations
from scalegrid.orchestrator.execution.provenance import provenance, reproduce_command, write_sweep_record
from scalegrid.orchestrator.execution.ray_session import (
    check_address, check_feasible, check_shared_results, cluster_gpu_memory_gb, ray_session, session_resources,
)
from scalegrid.orchestrator.execution.stage_tasks import run_stages
from scalegrid.orchestrator.execution.store_healing import heal
from scalegrid.orchestrator.execution.token_build import prepare_tokens
from scalegrid.orchestrator.planning import capacity
from scalegrid.orchestrator.planning.cells import states_line
from scalegrid.orchestrator.planning.evaluations import BLOCKED, DONE, jobs_json
from scalegrid.orchestrator.planning.sweep_plan import SweepPlan, make_plan, space_needed
from scalegrid.report import report_of
from scalegrid.spec import SpecSource, Sweep
from scalegrid.storage import node_cache_dir
from scalegrid.storage.space import check_space


@dataclass(frozen=True)
class SweepRun:
    """What a run leaves: the plan with the store as it is afterwards, and the report."""

    plan: SweepPlan
    trained_s: float  # from the start until the last stage ended
    report: str | None = None  # index.html; None when not asked for or not written (warned on stderr)
    report_s: float = 0.0


def run_sweep(
    source: SpecSource | Sweep, *, results: str | None = None, address: str | None = None, max_concurrent: int | None = None,
    report: bool = True, callbacks: Sequence = (), max_trials: int | None = None, verbosity: int = console.NORMAL,
) -> SweepRun:
    """Validate everything, train what the store lacks, then write the report (`report`). `source`:
    a YAML file, a spec as a dict (the Python API) or a resolved `Sweep` (the command line's, with
    its `--set` overrides); `callbacks`: Ray Tune callbacks of the caller's, beside the progress
    and the spec's trackers; `verbosity`: `console.QUIET`, `NORMAL` or `VERBOSE` (-q, -v)."""
    with console.verbosity(verbosity):
        return _run_sweep(source, results, address, max_concurrent, report, callbacks, max_trials)


def _run_sweep(source: SpecSource | Sweep, results: str | None, address: str | None, max_concurrent: int | None,
               report: bool, callbacks: Sequence, max_trials: int | None) -> SweepRun:
    start = time.perf_counter()
    if not address:
        # Keep the embedded Ray on 127.0.0.1. Ray reads this when it is imported, which the
        # data and trainer modules may do before the session starts: set it first.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    plan = make_plan(source, results=results, max_trials=max_trials)
    check_tracking(plan.sweep, plan.results)
    if address:
        check_address(address)
    with contextlib.ExitStack() as cluster:
        if address:  # the last checks need the cluster: joined before anything is written
            cluster.enter_context(ray_session(address))
            check_feasible(plan.sweep.resources, embedded=False)
            check_shared_results(plan.results, plan.sweep.resources)  # a node-local path
            plan = _with_cluster_gpu_memory(plan)  # the cluster's smallest GPU bounds each trial's memory
        elif _has_work(plan):
            check_feasible(plan.sweep.resources, embedded=not _ray_running())
        if plan.results.local_path is not None and _has_work(plan):
            slots = capacity.concurrent(session_resources(), plan.sweep.resources, max_concurrent)
            check_space(plan.results.local_path, space_needed(plan, slots=slots))
        if plan.pending or _searching(plan):  # tokens for every budget, or a one-line error with nothing published
            prepare_tokens(plan, on_cluster=bool(address))
        plan = _train(plan, address, max_concurrent, callbacks)
    trained_s = time.perf_counter() - start
    if not report:
        return SweepRun(plan, trained_s)
    index = write_report(plan)
    return SweepRun(plan, trained_s, index, time.perf_counter() - start - trained_s)


def _train(plan: SweepPlan, address: str | None, max_concurrent: int | None, callbacks: Sequence) -> SweepPlan:
    """Every input is valid: from here on the results directory is written. Returns the plan
    with the store as it is after the run."""
    plan.results.makedirs()
    info = provenance()
    # what a saved model's card says reproduces it: the command, and the resolved spec it ran
    info["sweep_record"] = write_sweep_record(plan.results, plan.sweep, info, data=plan.data.fields)
    info["command"] = reproduce_command(plan.sweep, plan.results)
    heal(plan)  # what the store holds damaged is set aside, and made again below
    searching = _searching(plan)
    if searching:
        console.info(f"{plan.sweep.name}: search over {', '.join(plan.sweep.search.ladders)}: {states_line(plan.searches)}")
    pending, stages_left, evaluations_left = _to_do(plan)
    if not pending and not stages_left and not evaluations_left and not searching:
        return plan
    with console.ray_messages_kept(ray_log_file(plan)), ray_session(address):
        if searching:  # the walks first: their optima are the grid points of the ensembles and students
            launcher.search(plan, info, max_concurrent=max_concurrent, callbacks=callbacks)
            plan = plan.refresh()
            if _searching(plan):  # interrupted: a re-run goes on from the store
                return plan
            pending, stages_left, evaluations_left = _to_do(plan)
        if pending:
            launcher.schedule(plan, info, max_concurrent=max_concurrent, callbacks=callbacks)
            plan = plan.refresh()
        if stages_left:
            run_stages(plan, plan.snapshot, info, max_concurrent=max_concurrent, callbacks=callbacks)
            plan = plan.refresh()
        if evaluations_left and run_evaluations(plan, info):
            plan = plan.refresh()
            _record_stages(plan)  # `status` reads the evaluations' states from the final record
    return plan


def ray_log_file(plan: SweepPlan) -> Path:
    """Where Ray's own messages of this run go unless -v: RESULTS/logs/, or this node's cache for remote results."""
    parts = plan.results.ray_log(f"{plan.sweep.name}-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log")  # drivers side by side: one each
    return plan.results.local(*parts) or node_cache_dir().joinpath(*parts)


def write_report(plan: SweepPlan) -> str | None:
    """The report is a view of the store: failing to draw it never fails the run. Returns where
    index.html is (None when it could not be written, said on stderr)."""
    try:
        return str(report_of(plan.results, snapshot=plan.snapshot))
    except Exception as err:  # noqa: BLE001 - report after the fact with `scalegrid report`
        print(f"scalegrid: warning: the report could not be written ({err}); retry with `scalegrid report {plan.results}`", file=sys.stderr)
        return None


def _with_cluster_gpu_memory(plan: SweepPlan) -> SweepPlan:
    """Without `resources.gpu_memory_gb`, plan every trial's memory on the cluster's smallest GPU
    (refusing one that cannot fit) when its nodes say which GPUs they have."""
    if plan.sweep.resources.gpu_memory_gb or not plan.sweep.resources.worker["GPU"]:
        return plan
    detected = cluster_gpu_memory_gb()
    return plan.with_gpu_memory(detected) if detected else plan


def _ray_running() -> bool:
    """Ray already initialised in this process (a notebook, the tests): `run` uses that session."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _has_work(plan: SweepPlan) -> bool:
    """Trials to train, ensembles and students not done, or evaluations to run: Ray is needed."""
    stages = plan.graph.has_stages and bool((plan.dependants()["state"] != "done").any())
    return bool(plan.pending) or _searching(plan) or stages or any(j.state not in (DONE, BLOCKED) for j in plan.evaluations())


def _searching(plan: SweepPlan) -> bool:
    return plan.searches is not None and not all(s.finished for s in plan.searches.values())


def _to_do(plan: SweepPlan):
    """(the trials to train, the ensembles and students left, the evaluations left), said on stderr;
    the stage graph recorded."""
    pending = plan.pending
    if not _searching(plan):  # a search's trials are counted by its own lines
        console.info(f"{plan.sweep.name}: {len(plan.trials)} trials, {len(plan.trials) - len(pending)} done, {len(pending)} to run")
    stages_left = int((plan.dependants()["state"] != "done").sum()) if plan.graph.has_stages else 0
    if stages_left:
        console.info(f"{plan.sweep.name}: {stages_left} ensembles and students to do once their inputs are complete")
    evaluations = plan.evaluations()
    left = sum(j.state not in (DONE, BLOCKED) for j in evaluations)
    if evaluations:
        console.info(f"{plan.sweep.name}: {len(evaluations)} downstream evaluations, {sum(j.state == DONE for j in evaluations)} done, "
                     f"{left} to run once their models are trained")
    _record_stages(plan, evaluations)
    return pending, stages_left, left


def _record_stages(plan: SweepPlan, evaluations=None) -> None:
    """RESULTS/stages/<sweep>.json: the ensembles, students and evaluations, for `status`."""
    evaluations = plan.evaluations() if evaluations is None else evaluations
    graph = {**plan.graph.to_json(), "evaluations": jobs_json(evaluations)} if plan.graph.has_stages or evaluations else None
    store.write_stage_graph(plan.results, plan.sweep.name, graph)

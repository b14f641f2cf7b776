"""`scalegrid run SPEC`: train every trial of the spec that the results store does not hold yet.

The spec is planned once; the store is read once at each stage boundary (when planned, after
the train stage, after the ensembles and students), and the last read feeds both the summary and
the report.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scalegrid import store
from scalegrid.commands.args import positive_int
from scalegrid.commands.output import print_json, records
from scalegrid.orchestrator.display.tracking import check as check_tracking
from scalegrid.orchestrator.planning.sweep_plan import SweepPlan, format_table, make_plan, space_needed
from scalegrid.orchestrator.execution.provenance import provenance, write_sweep_record
from scalegrid.orchestrator.planning.capacity import slots
from scalegrid.orchestrator.planning.cells import cells_table, states_line
from scalegrid.orchestrator.planning.cells import losses as search_losses
from scalegrid.orchestrator.execution.ray_session import check_address, check_feasible, check_shared_results, cluster_gpu_memory_gb, ray_session
from scalegrid.orchestrator.execution.token_build import prepare_tokens
from scalegrid.spec import ResourcesSpec
from scalegrid.storage.space import check_space

SUMMARY_COLUMNS = ["trial_id", "model", "unique_tokens", "epochs", "lr", "weight_decay", "seed", "member", "status", "val_loss", "wall_s"]


def register(subparsers) -> None:
    sub = subparsers.add_parser("run", help="run the missing trials of a sweep on Ray Tune")
    sub.add_argument("spec", help="sweep spec YAML, e.g. sweeps/quickstart.yaml")
    sub.add_argument("--address", help="Ray cluster address HOST:PORT (default: an embedded local Ray)")
    sub.add_argument("--results", help="results directory (default: the spec's `results:`)")
    sub.add_argument("--max-concurrent", type=positive_int, help="trials running at once (default: as resources allow)")
    sub.add_argument("--no-report", action="store_true", help="do not write the scaling report at the end")
    sub.add_argument("--json-summary", action="store_true",
                     help="print the summary as one JSON document on stdout (progress stays on stderr)")
    sub.set_defaults(func=run)


def run(args) -> int:
    start = time.perf_counter()
    plan = run_sweep(args.spec, results=args.results, address=args.address, max_concurrent=args.max_concurrent)
    summary = Summary.of(plan, time.perf_counter() - start)
    if args.json_summary:
        report = None if args.no_report else write_report_of(plan, quiet=True)
        print_json(summary.document(plan) | {"report": report})
    else:
        summary.print(plan)
        if not args.no_report:
            write_report_of(plan)
    if summary.advice:
        print(summary.advice, file=sys.stderr)
    return summary.exit_code


def run_sweep(spec: str | Path | dict, *, results: str | None = None, address: str | None = None,
              max_concurrent: int | None = None) -> SweepPlan:
    """Validate everything, then train what the store lacks; returns the plan with the store as it
    is after the run. `spec` is a YAML file or a spec as a dict (the Python API)."""
    if not address:
        # Keep the embedded Ray on 127.0.0.1. Ray reads this when it is imported, which the
        # data and trainer modules may do before the session starts: set it first.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    plan = make_plan(spec, results=results)
    check_tracking(plan.spec, plan.results)
    if address:
        check_address(address)
    resources = plan.spec.resources
    with contextlib.ExitStack() as cluster:
        if address:  # the last checks need the cluster: joined before anything is written
            cluster.enter_context(ray_session(address))
            check_feasible(resources, embedded=False)
            check_shared_results(plan.results, resources)  # a node-local path
            plan = _check_gpu_memory(plan)  # the cluster's smallest GPU bounds each trial's memory
        elif _has_work(plan):
            check_feasible(resources, embedded=not _ray_running())
        if plan.results.local_path is not None and _has_work(plan):
            check_space(plan.results.local_path, space_needed(plan, slots=_slots(max_concurrent, resources)))
        if plan.pending or _searching(plan):  # tokens for every budget, or a one-line error with nothing published
            prepare_tokens(plan, on_cluster=bool(address))
        spec_path = str(spec) if isinstance(spec, (str, Path)) else "(a spec given as a dict)"
        return _run_checked(plan, spec_path, address, max_concurrent)


def _check_gpu_memory(plan: SweepPlan) -> SweepPlan:
    """Without `resources.gpu_memory_gb`, plan every trial's memory on the cluster's smallest GPU
    (refusing one that cannot fit) when its nodes say which GPUs they have."""
    if plan.spec.resources.gpu_memory_gb or not plan.spec.resources.worker["GPU"]:
        return plan
    detected = cluster_gpu_memory_gb()
    return plan.with_gpu_memory(detected) if detected else plan


def _slots(max_concurrent: int | None, resources: ResourcesSpec) -> int:
    """Trials that may run at once: --max-concurrent, else what the CPUs and GPUs of Ray (or this
    machine's CPUs) allow."""
    if max_concurrent:
        return max_concurrent
    ray = sys.modules.get("ray")
    available = ray.cluster_resources() if ray is not None and ray.is_initialized() else {"CPU": os.cpu_count() or 1}
    return slots(available, resources)


def _ray_running() -> bool:
    """Ray already initialised in this process (a notebook, the tests): `run` uses that session."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _has_work(plan: SweepPlan) -> bool:
    """Trials to train, or ensembles and students not done: Ray is needed."""
    return bool(plan.pending) or _searching(plan) or (plan.graph.has_stages and bool((plan.dependants()["state"] != "done").any()))


def _run_checked(plan: SweepPlan, spec_path: str, address: str | None, max_concurrent: int | None) -> SweepPlan:
    """Every input is valid: from here on the results directory is written. Returns the plan
    with the store as it is after the run."""
    plan.results.makedirs()
    info = provenance()
    write_sweep_record(plan.results, plan.spec, spec_path, info, data=plan.data.fields)
    for path, reason in plan.snapshot.unreadable:
        print(f"scalegrid: warning: {path} is unreadable ({reason}); skipped and kept, its trial will be re-run", file=sys.stderr)
    searching = _searching(plan)
    if searching:
        print(f"{plan.spec.name}: search over {', '.join(plan.spec.search.axes)}: {states_line(plan.searches)}", file=sys.stderr)
    pending, stages_left = _to_do(plan)
    if not pending and not stages_left and not searching:
        return plan
    from scalegrid.orchestrator.execution.launcher import schedule
    from scalegrid.orchestrator.execution.stage_tasks import run_stages

    with ray_session(address):
        if searching:  # the walks first: their optima are the grid points of the ensembles and students
            from scalegrid.orchestrator.execution.trial_feeds import run_search

            run_search(plan, info, max_concurrent=max_concurrent)
            plan = plan.refresh()
            if _searching(plan):  # interrupted: a re-run goes on from the store
                return plan
            pending, stages_left = _to_do(plan)
        if pending:
            schedule(plan, info, max_concurrent=max_concurrent)
            plan = plan.refresh()
        if stages_left:
            run_stages(plan, plan.snapshot, info, max_concurrent=max_concurrent)
            plan = plan.refresh()
    return plan


def _searching(plan: SweepPlan) -> bool:
    return plan.searches is not None and not all(s.finished for s in plan.searches.values())


def _to_do(plan: SweepPlan):
    """(the trials to train, the ensembles and students left), said on stderr; the stage graph recorded."""
    pending = plan.pending
    if not _searching(plan):  # a search's trials are counted by its own lines
        print(f"{plan.spec.name}: {len(plan.trials)} trials, {len(plan.trials) - len(pending)} done, {len(pending)} to run", file=sys.stderr)
    stages_left = int((plan.dependants()["state"] != "done").sum()) if plan.graph.has_stages else 0
    if stages_left:
        print(f"{plan.spec.name}: {stages_left} ensembles and students to do once their inputs are complete", file=sys.stderr)
    store.write_stage_graph(plan.results, plan.spec.name, plan.graph.to_json() if plan.graph.has_stages else None)
    return pending, stages_left


def write_report_of(plan: SweepPlan, *, quiet: bool = False) -> str | None:
    """The report is a view of the store: failing to draw it never fails the run. Returns where
    index.html is (None when it could not be written); printed unless `quiet`."""
    from scalegrid.commands.report import report_of

    start = time.perf_counter()
    try:
        index = report_of(plan.results, snapshot=plan.snapshot)
    except Exception as err:  # noqa: BLE001 - report after the fact with `scalegrid report`
        print(f"scalegrid: warning: the report could not be written ({err}); retry with `scalegrid report {plan.results}`", file=sys.stderr)
        return None
    if not quiet:
        print(f"report: {index} ({time.perf_counter() - start:.1f} s; open it in a browser, it works offline)")
    return str(index)


@dataclass
class Summary:
    """What a run ends with: a row per trial, the ensembles and students, the exit code and why."""

    table: pd.DataFrame  # SUMMARY_COLUMNS, one row per train-stage trial
    stages: pd.DataFrame | None  # ensembles and students with their state and val_loss
    elapsed_s: float
    exit_code: int
    advice: str | None  # the line on stderr that says what to do about a non-zero exit

    @classmethod
    def of(cls, plan: SweepPlan, elapsed_s: float) -> Summary:
        runs = plan.snapshot.runs.drop_duplicates("trial_id", keep="last").set_index("trial_id")
        table = plan.table()
        for column in ("val_loss", "wall_s"):
            table[column] = [runs[column].get(t) for t in table["trial_id"]]
        stages = plan.dependants() if plan.graph.has_stages else None
        if stages is not None:
            losses = plan.snapshot.all_runs.drop_duplicates("trial_id", keep="last").set_index("trial_id")["val_loss"]
            stages["val_loss"] = [losses.get(i) for i in stages["id"]]  # an ensemble's: its largest k
        code, advice = _exit_code(table["status"].value_counts(), stages)
        return cls(table[SUMMARY_COLUMNS], stages, elapsed_s, code, advice)

    @property
    def counts(self) -> dict[str, int]:
        counts = self.table["status"].value_counts()
        return {state: int(counts.get(state, 0)) for state in ("done", "diverged", "failed", "pending")}

    def document(self, plan: SweepPlan) -> dict:
        """`run --json-summary`: the summary as one JSON document."""
        return {
            "sweep": plan.spec.name, "results": str(plan.results), "elapsed_s": round(self.elapsed_s, 3),
            "exit_code": self.exit_code, "counts": self.counts, "trials": records(self.table), "stages": records(self.stages),
            "searches": records(cells_table(plan.searches, search_losses(plan.snapshot, failed_count=True).get)) if plan.searches else None,
        }

    def print(self, plan: SweepPlan) -> None:
        """The summary table, the val_loss-by-epochs pivot, the ensembles and students."""
        table = self.table
        print(format_table(table))
        if plan.spec.trainer == "lm" and table["val_loss"].notna().any():
            print("\nval_loss by epochs (best single model over the other axes; extra ensemble members left out):")
            singles = table[table["member"] == 0]  # a lucky member seed is not a better recipe
            pivot = singles.pivot_table(index=["model", "unique_tokens"], columns="epochs", values="val_loss", aggfunc="min")
            print(pivot.map(lambda v: f"{v:.4f}" if pd.notna(v) else "-").to_string())
        if plan.searches is not None:
            print(f"\nsearch: {states_line(plan.searches)}")
            print(format_table(cells_table(plan.searches, search_losses(plan.snapshot, failed_count=True).get)))
        if self.stages is not None:
            print("\nensembles and students:")
            print(format_table(self.stages))
        c = self.counts
        print(
            f"\n{plan.spec.name}: {c['done']} completed, {c['diverged']} diverged, {c['failed']} failed, "
            f"{c['pending']} not finished of {len(table)} trials in {self.elapsed_s:.1f} s; results in {plan.results}"
        )


def _exit_code(counts: pd.Series, stage_rows: pd.DataFrame | None) -> tuple[int, str | None]:
    if counts.get("failed", 0):
        return 1, "some trials FAILED: see the `error` column (`scalegrid status`); a re-run retries them"
    if stage_rows is not None and (stage_rows["state"] == "blocked").any():
        return 1, "some ensembles or students are blocked by a FAILED or DIVERGED member: a re-run retries it"
    if counts.get("pending", 0) or (stage_rows is not None and (stage_rows["state"] != "done").any()):
        return 1, "some trials did not finish (interrupted?): re-run the same command to train only those"
    return 0, None

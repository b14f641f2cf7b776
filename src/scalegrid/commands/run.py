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

import pandas as pd

from scalegrid import store
from scalegrid.commands.args import positive_int
from scalegrid.orchestrator.plan import SweepPlan, format_table, make_plan, prepare_data
from scalegrid.orchestrator.provenance import provenance, write_sweep_record
from scalegrid.orchestrator.search import cells_table, states_line
from scalegrid.orchestrator.search import losses as search_losses
from scalegrid.orchestrator.session import check_address, check_shared_results, ray_session

SUMMARY_COLUMNS = ["trial_id", "model", "unique_tokens", "epochs", "lr", "weight_decay", "seed", "member", "status", "val_loss", "wall_s"]


def register(subparsers) -> None:
    sub = subparsers.add_parser("run", help="run the missing trials of a sweep on Ray Tune")
    sub.add_argument("spec", help="sweep spec YAML, e.g. sweeps/quickstart.yaml")
    sub.add_argument("--address", help="Ray cluster address HOST:PORT (default: an embedded local Ray)")
    sub.add_argument("--results", help="results directory (default: the spec's `results:`)")
    sub.add_argument("--max-concurrent", type=positive_int, help="trials running at once (default: as resources allow)")
    sub.add_argument("--no-report", action="store_true", help="do not write the scaling report at the end")
    sub.set_defaults(func=run)


def run(args) -> int:
    start = time.perf_counter()
    if not args.address:
        # Keep the embedded Ray on 127.0.0.1. Ray reads this when it is imported, which the
        # data and trainer modules may do before the session starts: set it first.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    plan = make_plan(args.spec, results=args.results)
    if args.address:
        check_address(args.address)
    save_tokens = prepare_data(plan)  # tokens exist for every budget
    with contextlib.ExitStack() as cluster:
        if args.address:  # the last check: a node-local results path on a multi-node cluster
            cluster.enter_context(ray_session(args.address))
            check_shared_results(plan.results, cpus=plan.spec.resources.cpus, gpus=plan.spec.resources.gpus)
        plan = _run_checked(args, plan, save_tokens)
    code = summarize(plan, time.perf_counter() - start)
    if not args.no_report:
        write_report_of(plan)
    return code


def _run_checked(args, plan: SweepPlan, save_tokens) -> SweepPlan:
    """Every input is valid: from here on the results directory is written. Returns the plan
    with the store as it is after the run."""
    plan.results.makedirs()
    save_tokens()
    info = provenance()
    write_sweep_record(plan.results, plan.spec, args.spec, info)
    for path, reason in plan.snapshot.unreadable:
        print(f"scalegrid: warning: {path} is unreadable ({reason}); skipped and kept, its trial will be re-run", file=sys.stderr)
    searching = _searching(plan)
    if searching:
        print(f"{plan.spec.name}: search over {', '.join(plan.spec.search.axes)}: {states_line(plan.searches)}", file=sys.stderr)
    pending, stages_left = _to_do(plan)
    if not pending and not stages_left and not searching:
        return plan
    from scalegrid.orchestrator.runner import schedule
    from scalegrid.orchestrator.stages import run_stages

    with ray_session(args.address):
        if searching:  # the walks first: their optima are the grid points of the ensembles and students
            from scalegrid.orchestrator.searcher import run_search

            run_search(plan, info, max_concurrent=args.max_concurrent)
            plan = plan.refresh()
            if _searching(plan):  # interrupted: a re-run goes on from the store
                return plan
            pending, stages_left = _to_do(plan)
        if pending:
            schedule(plan, info, max_concurrent=args.max_concurrent)
            plan = plan.refresh()
        if stages_left:
            run_stages(plan, plan.snapshot, info, max_concurrent=args.max_concurrent)
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


def write_report_of(plan: SweepPlan) -> None:
    """The report is a view of the store: failing to draw it never fails the run."""
    from scalegrid.commands.report import report_of

    start = time.perf_counter()
    try:
        index = report_of(plan.results, snapshot=plan.snapshot)
    except Exception as err:  # noqa: BLE001 - report after the fact with `scalegrid report`
        print(f"scalegrid: warning: the report could not be written ({err}); retry with `scalegrid report {plan.results}`", file=sys.stderr)
        return
    print(f"report: {index} ({time.perf_counter() - start:.1f} s; open it in a browser, it works offline)")


def summarize(plan: SweepPlan, elapsed_s: float) -> int:
    """The summary table, the val_loss-by-epochs pivot, the ensembles and students; the exit code."""
    runs = plan.snapshot.runs.drop_duplicates("trial_id", keep="last").set_index("trial_id")
    table = plan.table()
    for column in ("val_loss", "wall_s"):
        table[column] = [runs[column].get(t) for t in table["trial_id"]]
    print(format_table(table[SUMMARY_COLUMNS]))
    if plan.spec.trainer == "lm" and table["val_loss"].notna().any():
        print("\nval_loss by epochs (best single model over the other axes; extra ensemble members left out):")
        singles = table[table["member"] == 0]  # a lucky member seed is not a better recipe
        pivot = singles.pivot_table(index=["model", "unique_tokens"], columns="epochs", values="val_loss", aggfunc="min")
        print(pivot.map(lambda v: f"{v:.4f}" if pd.notna(v) else "-").to_string())
    if plan.searches is not None:
        print(f"\nsearch: {states_line(plan.searches)}")
        print(format_table(cells_table(plan.searches, search_losses(plan.snapshot, failed_count=True).get)))
    stage_rows = plan.dependants() if plan.graph.has_stages else None
    if stage_rows is not None:
        losses = plan.snapshot.all_runs.drop_duplicates("trial_id", keep="last").set_index("trial_id")["val_loss"]
        stage_rows["val_loss"] = [losses.get(i) for i in stage_rows["id"]]  # an ensemble's: its largest k
        print("\nensembles and students:")
        print(format_table(stage_rows))
    counts = table["status"].value_counts()
    print(
        f"\n{plan.spec.name}: {counts.get('done', 0)} completed, {counts.get('diverged', 0)} diverged, "
        f"{counts.get('failed', 0)} failed, {counts.get('pending', 0)} not finished of {len(table)} trials "
        f"in {elapsed_s:.1f} s; results in {plan.results}"
    )
    return _exit_code(counts, stage_rows)


def _exit_code(counts: pd.Series, stage_rows: pd.DataFrame | None) -> int:
    if counts.get("failed", 0):
        print("some trials FAILED: see the `error` column (`scalegrid status`); a re-run retries them", file=sys.stderr)
        return 1
    if stage_rows is not None and (stage_rows["state"] == "blocked").any():
        print("some ensembles or students are blocked by a FAILED or DIVERGED member: a re-run retries it", file=sys.stderr)
        return 1
    if counts.get("pending", 0) or (stage_rows is not None and (stage_rows["state"] != "done").any()):
        print("some trials did not finish (interrupted?): re-run the same command to train only those", file=sys.stderr)
        return 1
    return 0

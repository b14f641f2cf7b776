"""`scalegrid status RESULTS`: trials by status, the table of runs, each searched cell's state, the
ensembles and students, and the downstream evaluations (done, pending, waiting, blocked) of a results directory."""

from __future__ import annotations

import pandas as pd

from scalegrid import store
from scalegrid.analysis.walk import search_outcomes
from scalegrid.commands.output import print_json, records, unreadable
from scalegrid.orchestrator.planning.evaluations import recorded_states
from scalegrid.orchestrator.planning.stage_graph import dependants
from scalegrid.orchestrator.planning.sweep_plan import format_table
from scalegrid.storage import ResultsLayout, check_readable, layout
from scalegrid.storage.layout import SEARCH

COLUMNS = ["trial_id", "sweep", "model", "unique_tokens", "epochs", "lr", "weight_decay", "seed", "status", "val_loss", "wall_s", "error"]


def register(subparsers) -> None:
    sub = subparsers.add_parser("status", help="summarise the runs in a results directory")
    sub.add_argument("results", help="a results directory, e.g. results/quickstart")
    sub.add_argument("--json", action="store_true", help="print one JSON document: counts, runs, ensembles and students")
    sub.set_defaults(func=run)


def run(args) -> int:
    results = layout(args.results)
    check_readable(results)
    snapshot = store.read(results)
    runs = snapshot.runs
    counts = {str(status): int(n) for status, n in runs["status"].value_counts().items()}
    order = ["sweep", "params", "model", "unique_tokens", "epochs", "lr", "weight_decay", "seed"]  # smallest model first
    shown = runs.sort_values(order, kind="stable")[COLUMNS] if len(runs) else None
    graph = store.read_stage_graphs(results)
    stage_rows = dependants_of(graph, snapshot, results)
    evaluations = recorded_states(graph["evaluations"], snapshot) if graph["evaluations"] else None
    cells = search_cells(results)
    if args.json:
        print_json({
            "results": str(results), "trials": len(runs), "counts": counts, "runs": records(shown),
            "stages": records(stage_rows), "searches": records(cells.drop(columns=["edge_axes"], errors="ignore") if cells is not None else None),
            "evaluations": records(evaluations), "unreadable": unreadable(snapshot.unreadable),
        })
        return 0
    snapshot.warn()
    summary = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no runs yet"
    print(f"{args.results}: {len(runs)} trials ({summary}); {len(snapshot.unreadable)} unreadable files")
    if shown is not None:
        shown["error"] = shown["error"].fillna("").str.slice(0, 60)
        print(format_table(shown))
    if cells is not None:
        counts = cells["outcome"].replace({"edge": "at edge"}).value_counts()
        print(f"\nsearches: {len(cells)} cells ({', '.join(f'{n} {state}' for state, n in counts.items())})")
        print(format_table(cells[["sweep", "cell", "state", "centre", "val_loss", "steps", "trials"]]))
    if stage_rows is not None:
        states = stage_rows["state"].value_counts()
        print(f"\nensembles and students: {', '.join(f'{n} {state}' for state, n in states.items())}")
        print(format_table(stage_rows))
    if evaluations is not None:
        states = evaluations["state"].value_counts()
        print(f"\nevaluations: {', '.join(f'{n} {state}' for state, n in states.items())} (rows: RESULTS/evals/)")
        if (evaluations["state"] != "done").any():
            print(format_table(evaluations[evaluations["state"] != "done"]))
    return 0


def search_cells(results: ResultsLayout) -> pd.DataFrame | None:
    """Each searched cell's latest step (RESULTS/search/): searching, certified or at an edge; None without any."""
    cells = search_outcomes(store.scan(results, SEARCH).frame)
    if not len(cells):
        return None
    cells["state"] = [f"at edge ({', '.join(e)})" if o == "edge" else o for o, e in zip(cells["outcome"], cells["edge_axes"])]
    return cells.rename(columns={"loss": "val_loss"}).sort_values(["sweep", "params", "unique_tokens"])


def dependants_of(graph: dict, snapshot: store.Snapshot, results: ResultsLayout) -> pd.DataFrame | None:
    """Ensembles and students of the latest runs (RESULTS/stages/): done, pending or blocked; None without any."""
    if not graph["ensembles"] and not graph["students"]:
        return None
    return dependants(graph, snapshot.status, snapshot.ensembles_done, results.has_model)

"""`scalegrid status RESULTS`: trials by status and the table of runs in a results directory."""

from __future__ import annotations

import pandas as pd

from scalegrid import store
from scalegrid.commands.output import print_json, records, unreadable
from scalegrid.orchestrator.graph import dependants
from scalegrid.orchestrator.plan import format_table
from scalegrid.storage import ResultsLayout, check_readable, layout

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
    shown = runs[COLUMNS].sort_values(["sweep", "model", "unique_tokens", "epochs", "lr", "weight_decay", "seed"]) if len(runs) else None
    stage_rows = dependants_of(results, snapshot)
    if args.json:
        print_json({
            "results": str(results), "trials": len(runs), "counts": counts, "runs": records(shown),
            "stages": records(stage_rows), "unreadable": unreadable(snapshot.unreadable),
        })
        return 0
    snapshot.warn()
    summary = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no runs yet"
    print(f"{args.results}: {len(runs)} trials ({summary}); {len(snapshot.unreadable)} unreadable files")
    if shown is not None:
        shown["error"] = shown["error"].fillna("").str.slice(0, 60)
        print(format_table(shown))
    if stage_rows is not None:
        states = stage_rows["state"].value_counts()
        print(f"\nensembles and students: {', '.join(f'{n} {state}' for state, n in states.items())}")
        print(format_table(stage_rows))
    return 0


def dependants_of(results: ResultsLayout, snapshot: store.Snapshot) -> pd.DataFrame | None:
    """Ensembles and students of the latest runs (RESULTS/stages/): done, pending or blocked; None without any."""
    graph = store.read_stage_graphs(results)
    if not graph["ensembles"] and not graph["students"]:
        return None
    return dependants(graph, snapshot.status, snapshot.ensembles_done)

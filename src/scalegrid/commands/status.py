"""`scalegrid status RESULTS`: trials by status, the table of runs, each searched cell's state, and the
ensembles and students of a results directory."""

from __future__ import annotations

from scalegrid import store
from scalegrid.analysis.search import search_outcomes
from scalegrid.orchestrator.graph import dependants
from scalegrid.orchestrator.plan import format_table
from scalegrid.storage import ResultsLayout, check_readable, layout
from scalegrid.storage.layout import SEARCH

COLUMNS = ["trial_id", "sweep", "model", "unique_tokens", "epochs", "lr", "weight_decay", "seed", "status", "val_loss", "wall_s", "error"]


def register(subparsers) -> None:
    sub = subparsers.add_parser("status", help="summarise the runs in a results directory")
    sub.add_argument("results", help="a results directory, e.g. results/quickstart")
    sub.set_defaults(func=run)


def run(args) -> int:
    results = layout(args.results)
    check_readable(results)
    snapshot = store.read(results)
    snapshot.warn()
    runs = snapshot.runs
    counts = runs["status"].value_counts()
    summary = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no runs yet"
    print(f"{args.results}: {len(runs)} trials ({summary}); {len(snapshot.unreadable)} unreadable files")
    if len(runs):
        shown = runs[COLUMNS].sort_values(["sweep", "model", "unique_tokens", "epochs", "lr", "weight_decay", "seed"])
        shown["error"] = shown["error"].fillna("").str.slice(0, 60)
        print(format_table(shown))
    print_searches(results)
    print_dependants(results, snapshot)
    return 0


def print_searches(results: ResultsLayout) -> None:
    """Each searched cell's latest step (RESULTS/search/): searching, certified or at an edge."""
    cells = search_outcomes(store.scan(results, SEARCH).frame)
    if not len(cells):
        return
    cells["state"] = [f"at edge ({', '.join(e)})" if o == "edge" else o for o, e in zip(cells["outcome"], cells["edge_axes"])]
    counts = cells["outcome"].replace({"edge": "at edge"}).value_counts()
    print(f"\nsearches: {len(cells)} cells ({', '.join(f'{n} {state}' for state, n in counts.items())})")
    shown = cells.rename(columns={"loss": "val_loss"}).sort_values(["sweep", "unique_tokens", "params"])
    print(format_table(shown[["sweep", "cell", "state", "centre", "val_loss", "steps", "trials"]]))


def print_dependants(results: ResultsLayout, snapshot: store.Snapshot) -> None:
    """Ensembles and students of the latest runs (RESULTS/stages/): done, pending or blocked."""
    graph = store.read_stage_graphs(results)
    if not graph["ensembles"] and not graph["students"]:
        return
    table = dependants(graph, snapshot.status, snapshot.ensembles_done)
    counts = table["state"].value_counts()
    print(f"\nensembles and students: {', '.join(f'{n} {state}' for state, n in counts.items())}")
    print(format_table(table))

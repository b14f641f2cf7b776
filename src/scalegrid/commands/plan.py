"""`scalegrid plan SPEC`: the grid as a table with sizes, tokens, FLOPs and status; starts no Ray.

A searched spec's table holds every trial its walks looked at so far (the pending ones are what
`run` trains next), then each cell's state: searching, certified, at an edge, or waiting."""

from __future__ import annotations

from scalegrid.orchestrator.plan import SweepPlan, format_table, make_plan, totals_line
from scalegrid.orchestrator.search import cells_table, losses, states_line


def register(subparsers) -> None:
    sub = subparsers.add_parser("plan", help="print the trials of a sweep spec and their status")
    sub.add_argument("spec", help="sweep spec YAML, e.g. sweeps/quickstart.yaml")
    sub.add_argument("--results", help="results directory (default: the spec's `results:`)")
    sub.set_defaults(func=run)


def run(args) -> int:
    plan = make_plan(args.spec, results=args.results)
    for path, reason in plan.snapshot.unreadable:
        print(f"warning: {path} is unreadable ({reason}); skipped and kept")
    table = plan.table()
    print(format_table(table))
    print(totals_line(table))
    if plan.searches is not None:
        print_search(plan)
    if plan.graph.has_stages:
        stage_rows = plan.dependants()
        counts = stage_rows["state"].value_counts()
        print(f"\nensembles and students: {', '.join(f'{n} {state}' for state, n in counts.items())}")
        print(format_table(stage_rows))
    return 0


def print_search(plan: SweepPlan) -> None:
    """Each cell's walk as the store has it; ensembles and students wait for every cell's optimum."""
    print(f"\nsearch over {', '.join(plan.spec.search.axes)}: {states_line(plan.searches)}")
    print(format_table(cells_table(plan.searches, losses(plan.snapshot, failed_count=False).get)))
    if (plan.spec.ensemble or plan.spec.distill) and not plan.graph.has_stages:
        print("ensembles and students: after the search, at each cell's optimum")

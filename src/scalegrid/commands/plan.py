"""`scalegrid plan SPEC`: the grid as a table with sizes, tokens, FLOPs and status; starts no Ray."""

from __future__ import annotations

from scalegrid.orchestrator.plan import format_table, make_plan, totals_line


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
    if plan.graph.has_stages:
        stage_rows = plan.dependants()
        counts = stage_rows["state"].value_counts()
        print(f"\nensembles and students: {', '.join(f'{n} {state}' for state, n in counts.items())}")
        print(format_table(stage_rows))
    return 0

"""`scalegrid plan SPEC`: the grid as a table with sizes, tokens, FLOPs and status; starts no Ray.

A searched spec's table holds every trial its walks looked at so far (the pending ones are what
`run` trains next), then each cell's state: searching, certified, at an edge, or waiting."""

from __future__ import annotations

import sys

from scalegrid.commands.args import add_max_trials, add_overrides
from scalegrid.commands.output import print_json, records, unreadable
from scalegrid.orchestrator.planning.sweep_plan import SweepPlan, format_table, make_plan, memory_table, totals, totals_line
from scalegrid.orchestrator.planning.cells import cells_table, states_line
from scalegrid.orchestrator.planning.evaluations import jobs_table
from scalegrid.spec import load_sweep


def register(subparsers) -> None:
    sub = subparsers.add_parser("plan", help="print the trials of a sweep spec and their status")
    sub.add_argument("spec", help="sweep spec YAML, e.g. sweeps/quickstart.yaml")
    sub.add_argument("--results", help="results directory (default: the spec's `results:`)")
    add_max_trials(sub)
    sub.add_argument("--json", action="store_true", help="print one JSON document: trials, totals, ensembles and students")
    add_overrides(sub)
    sub.set_defaults(func=run)


def run(args) -> int:
    plan = make_plan(load_sweep(args.spec, args.overrides), results=args.results, max_trials=args.max_trials)
    table = plan.table()
    stage_rows = plan.dependants() if plan.graph.has_stages else None
    evaluations = jobs_table(plan.evaluations()) if plan.tasks else None
    if args.json:
        print_json({
            "sweep": plan.sweep.name, "results": str(plan.results), "totals": totals(table),
            "trials": records(table), "stages": records(stage_rows),
            "memory": records(memory_table(plan)) if plan.memory else None,
            "searches": records(cells_table(plan.searches)) if plan.searches else None,
            "evaluations": records(evaluations), "unreadable": unreadable(plan.snapshot.unreadable),
        })
        return 0
    for path, reason in plan.snapshot.unreadable:
        print(f"scalegrid: warning: {path} is unreadable ({reason}); skipped and kept", file=sys.stderr)
    print(format_table(table))
    print(totals_line(table))
    print_memory(plan)
    if plan.searches is not None:
        print_search(plan)
    if stage_rows is not None:
        counts = stage_rows["state"].value_counts()
        print(f"\nensembles and students: {', '.join(f'{n} {state}' for state, n in counts.items())}")
        print(format_table(stage_rows))
    if evaluations is not None:
        counts = evaluations["state"].value_counts()
        tasks = ", ".join(f"{t.name} (v{t.version})" if t.version else t.name for t in plan.tasks)
        if evaluations.empty:  # a search names its models when its cells have ended
            print(f"\ndownstream evaluations on {tasks}, harness {plan.harness}: after the search, of each cell's optimum")
        else:
            print(f"\ndownstream evaluations on {tasks}, harness {plan.harness}: {', '.join(f'{n} {state}' for state, n in counts.items())}")
            print(format_table(evaluations))
    return 0


def print_memory(plan) -> None:
    """Where each model's GPU memory goes, or how to get it checked before anything runs."""
    resources = plan.sweep.resources
    if plan.memory:
        print(f"\nestimated peak GPU memory per trial in GiB (of a {resources.gpu_memory_gb:g} GB GPU; "
              f"activations_ckpt: with train.activation_checkpointing):")
        print(format_table(memory_table(plan)))
    elif plan.sweep.trainer == "lm" and resources.worker["GPU"]:
        print("\nGPU memory: set resources.gpu_memory_gb to see each trial's micro-batch and peak memory here and have "
              "a trial that cannot fit refused before anything runs (`run --address` detects it from the cluster)")


def print_search(plan: SweepPlan) -> None:
    """Each cell's walk as the store has it; ensembles and students wait for every cell's optimum."""
    print(f"\nsearch over {', '.join(plan.sweep.search.ladders)}: {states_line(plan.searches)}")
    print(format_table(cells_table(plan.searches)))
    if (plan.sweep.ensemble or plan.sweep.distill) and not plan.graph.has_stages:
        print("ensembles and students: after the search, at each cell's optimum")

"""`scalegrid plan SPEC`: the grid as a table with sizes, tokens, FLOPs and status; starts no Ray."""

from __future__ import annotations

from scalegrid.orchestrator.plan import format_table, make_plan, memory_table, totals_line


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
    print_memory(plan)
    if plan.graph.has_stages:
        stage_rows = plan.dependants()
        counts = stage_rows["state"].value_counts()
        print(f"\nensembles and students: {', '.join(f'{n} {state}' for state, n in counts.items())}")
        print(format_table(stage_rows))
    return 0


def print_memory(plan) -> None:
    """Where each model's GPU memory goes, or how to get it checked before anything runs."""
    resources = plan.spec.resources
    if plan.memory:
        print(f"\nestimated peak GPU memory per trial in GiB (of a {resources.gpu_memory_gb:g} GB GPU; "
              f"activations_ckpt: with train.activation_checkpointing):")
        print(format_table(memory_table(plan)))
    elif plan.spec.trainer == "lm" and resources.gpus:
        print("\nGPU memory: set resources.gpu_memory_gb to see each trial's micro-batch and peak memory here and have "
              "a trial that cannot fit refused before anything runs (`run --address` detects it from the cluster)")

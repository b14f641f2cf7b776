"""`scalegrid run SPEC`: train every trial of the spec that the results store does not hold yet
(`orchestrator/pipeline.py`), then print the summary: a row per trial, the val_loss-by-epochs pivot,
each searched cell, the ensembles and students, and the exit code that says what to do next.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pandas as pd

from scalegrid.analysis import models_by_size
from scalegrid.commands.args import add_max_trials, add_overrides, add_verbosity, positive_int
from scalegrid.commands.output import print_json, records
from scalegrid.orchestrator.pipeline import run_sweep
from scalegrid.orchestrator.planning.cells import cells_table, states_line
from scalegrid.orchestrator.planning.sweep_plan import SweepPlan, format_table
from scalegrid.spec import load_sweep

SUMMARY_COLUMNS = ["trial_id", "model", "unique_tokens", "epochs", "lr", "weight_decay", "seed", "member", "status", "val_loss", "wall_s"]


def register(subparsers) -> None:
    sub = subparsers.add_parser("run", help="run the missing trials of a sweep on Ray Tune")
    sub.add_argument("spec", help="sweep spec YAML, e.g. sweeps/quickstart.yaml")
    sub.add_argument("--address", help="Ray cluster address HOST:PORT (default: an embedded local Ray)")
    sub.add_argument("--results", help="results directory (default: the spec's `results:`)")
    add_max_trials(sub)
    sub.add_argument("--max-concurrent", type=positive_int, help="trials running at once (default: as resources allow)")
    sub.add_argument("--no-report", action="store_true", help="do not write the scaling report at the end")
    sub.add_argument("--json-summary", action="store_true",
                     help="print the summary as one JSON document on stdout (progress stays on stderr)")
    add_overrides(sub)
    add_verbosity(sub)
    sub.set_defaults(func=run)


def run(args) -> int:
    done = run_sweep(load_sweep(args.spec, args.overrides), results=args.results, address=args.address,
                     max_concurrent=args.max_concurrent, max_trials=args.max_trials, report=not args.no_report, verbosity=args.verbosity)
    plan = done.plan
    summary = Summary.of(plan, done.trained_s)
    if args.json_summary:
        print_json(summary.document(plan) | {"report": done.report})
    else:
        summary.print(plan)
        if done.report is not None:
            print(f"report: {done.report} ({done.report_s:.1f} s; open it in a browser, it works offline)")
    if summary.advice:
        print(summary.advice, file=sys.stderr)
    return summary.exit_code


@dataclass
class Summary:
    """What a run ends with: a row per trial, the ensembles and students, the exit code and why."""

    table: pd.DataFrame  # SUMMARY_COLUMNS, one row per train-stage trial, smallest model first
    models: list[str]  # the models, smallest first
    stages: pd.DataFrame | None  # ensembles and students with their state and val_loss
    elapsed_s: float
    exit_code: int
    advice: str | None  # the line on stderr that says what to do about a non-zero exit
    evaluations: pd.DataFrame | None = None  # each downstream evaluation: its state and score

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
        evaluations = evaluation_rows(plan) if plan.tasks else None
        if code == 0 and evaluations is not None and (evaluations["state"] == "failed").any():
            code, advice = 1, "some evaluations FAILED: see `error` in RESULTS/evals/ (`scalegrid.load_evals`); a re-run retries them"
        return cls(table[SUMMARY_COLUMNS], models_by_size(table), stages, elapsed_s, code, advice, evaluations)

    @property
    def counts(self) -> dict[str, int]:
        counts = self.table["status"].value_counts()
        return {state: int(counts.get(state, 0)) for state in ("done", "diverged", "failed", "pending")}

    def document(self, plan: SweepPlan) -> dict:
        """`run --json-summary`: the summary as one JSON document."""
        return {
            "sweep": plan.sweep.name, "results": str(plan.results), "elapsed_s": round(self.elapsed_s, 3),
            "exit_code": self.exit_code, "counts": self.counts, "trials": records(self.table), "stages": records(self.stages),
            "evaluations": records(self.evaluations),
            "searches": records(cells_table(plan.searches)) if plan.searches else None,
        }

    def print(self, plan: SweepPlan) -> None:
        """The summary table, the val_loss-by-epochs pivot, the ensembles and students."""
        table = self.table
        print(format_table(table))
        if plan.sweep.trainer == "lm" and table["val_loss"].notna().any():
            print("\nval_loss by epochs (best single model over the other axes; extra ensemble members left out):")
            singles = table[table["member"] == 0]  # a lucky member seed is not a better recipe
            pivot = singles.pivot_table(index=["model", "unique_tokens"], columns="epochs", values="val_loss", aggfunc="min")
            pivot = pivot.reindex(self.models, level="model")  # smallest model first, as the table above
            print(pivot.map(lambda v: f"{v:.4f}" if pd.notna(v) else "-").to_string())
        if plan.searches is not None:
            print(f"\nsearch: {states_line(plan.searches)}")
            print(format_table(cells_table(plan.searches)))
        if self.stages is not None:
            print("\nensembles and students:")
            print(format_table(self.stages))
        if self.evaluations is not None:
            print("\ndownstream evaluations (± one standard error):")
            print(format_table(self.evaluations))
        c = self.counts
        print(
            f"\n{plan.sweep.name}: {c['done']} completed, {c['diverged']} diverged, {c['failed']} failed, "
            f"{c['pending']} not finished of {len(table)} trials in {self.elapsed_s:.1f} s; results in {plan.results}"
        )


def evaluation_rows(plan: SweepPlan) -> pd.DataFrame:
    """One row per downstream evaluation: the model and task, its state (a FAILED one: `failed`) and
    its score (acc_norm where the task has it, else acc)."""
    evals = plan.snapshot.evals
    rows = []
    for job in plan.evaluations():
        mine = evals[evals["eval_id"] == job.eval_id] if len(evals) else evals
        metric = next((m for m in ("acc_norm", "acc") if m in set(mine.get("metric", ()))), None)
        score = mine[mine["metric"] == metric].iloc[-1] if metric else None
        failed = job.state != "done" and len(mine) and (mine["status"] == "FAILED").any()
        rows.append({"what": job.what, "state": "failed" if failed else job.state, "metric": metric or "-",
                     "score": f"{score['value']:.3f} ± {score['stderr']:.3f}" if score is not None else "-",
                     "why": (mine["error"].iloc[-1] or "")[:80] if failed else job.why})
    return pd.DataFrame(rows, columns=["what", "state", "metric", "score", "why"])


def _exit_code(counts: pd.Series, stage_rows: pd.DataFrame | None) -> tuple[int, str | None]:
    if counts.get("failed", 0):
        return 1, "some trials FAILED: see the `error` column (`scalegrid status`); a re-run retries them"
    if stage_rows is not None and (stage_rows["state"] == "blocked").any():
        return 1, "some ensembles or students are blocked by a FAILED or DIVERGED member: a re-run retries it"
    if counts.get("pending", 0) or (stage_rows is not None and (stage_rows["state"] != "done").any()):
        return 1, "some trials did not finish (interrupted?): re-run the same command to train only those"
    return 0, None

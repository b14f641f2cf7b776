"""`scalegrid submit SPEC --address http://HEAD:8265`: run a sweep on a Ray cluster as a Ray job.

Validates the spec here first (the same checks as `run`, `--set` overrides included: nothing is
submitted on bad input), submits `scalegrid run SPEC --address auto` (with the same overrides and
`-q` / `-v`) with the current directory and this scalegrid as the job's runtime environment,
prints the job id and returns. Follow it with `scalegrid jobs logs`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from scalegrid.commands.args import add_max_trials, add_overrides, add_verbosity, positive_int
from scalegrid.data.corpus.sources import resolve_files
from scalegrid.errors import UserError
from scalegrid.orchestrator.execution import ray_jobs as jobs
from scalegrid.orchestrator.planning.sweep_plan import make_plan
from scalegrid.spec import load_sweep
from scalegrid.storage import is_uri, redacted


def register(subparsers) -> None:
    sub = subparsers.add_parser("submit", help="submit a sweep to a Ray cluster as a Ray job (prints the job id)")
    sub.add_argument("spec", help="sweep spec YAML inside the working directory, e.g. sweeps/quickstart.yaml")
    sub.add_argument("--address", help="the Ray dashboard, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS)")
    sub.add_argument("--results", help="results directory or URI (default: the spec's `results:`); use s3://, gs:// "
                                       "or file:///shared/... on a multi-node cluster")
    add_max_trials(sub)
    sub.add_argument("--working-dir", type=Path, default=Path("."),
                     help="the directory shipped to the cluster (default: the current one)")
    sub.add_argument("--max-concurrent", type=positive_int, help="trials running at once (default: as resources allow)")
    sub.add_argument("--no-report", action="store_true", help="do not write the scaling report at the end")
    add_overrides(sub)
    add_verbosity(sub)
    sub.set_defaults(func=run)


def run(args) -> int:
    working_dir = args.working_dir.resolve()
    if not working_dir.is_dir():
        raise UserError(f"--working-dir {args.working_dir}: not a directory")
    spec_path = Path(args.spec).resolve()
    plan = make_plan(load_sweep(args.spec, args.overrides), results=args.results, max_trials=args.max_trials)  # every check, before the cluster is asked
    try:
        spec_in_job = spec_path.relative_to(working_dir).as_posix()
    except ValueError:
        raise UserError(
            f"{args.spec}: the spec must be inside the working directory {working_dir} that is shipped to the "
            "cluster; run from its project directory or pass --working-dir"
        ) from None
    _check_shipped(plan.sweep, working_dir)
    results, results_inside = _results_for_job(plan.results.uri, working_dir)
    client = jobs.job_client(args.address)
    job_id = _submit(client, plan, spec_in_job, results, results_inside, working_dir, args)
    print(job_id)
    print(
        f"submitted {plan.sweep.name} ({len(plan.trials)} trials, results in {redacted(results)}); follow it with "
        f"`scalegrid jobs logs {job_id} --follow`",
        file=sys.stderr,
    )
    return 0


def _check_shipped(spec, working_dir: Path) -> None:
    """Data files and a local tokenizer travel in the working directory: they must lie inside it."""
    paths = [(f.where, f.path) for f in resolve_files(spec.data)] if spec.data.source in ("files", "tokens") else []
    tokenizer = spec.data.tokenizer
    if tokenizer.kind == "hf" and tokenizer.path and os.path.exists(os.path.expanduser(tokenizer.path)):
        paths.append(("data.tokenizer.path", tokenizer.path))
    for field, path in paths:
        try:
            Path(os.path.abspath(os.path.expanduser(path))).relative_to(working_dir)
        except ValueError:
            raise UserError(
                f"{field}: {path} is outside the working directory {working_dir} that is shipped to the cluster; "
                "move it inside (and name it by a relative path) or pass --working-dir"
            ) from None


def _results_for_job(results: str, working_dir: Path) -> tuple[str, str | None]:
    """A URI as given; a path made absolute (a path on the cluster's head node, or a shared mount
    at the same path), and left out of the shipped directory when it lies inside it."""
    if is_uri(results):
        return results, None
    absolute = Path(os.path.abspath(os.path.expanduser(results)))
    try:
        inside = absolute.relative_to(working_dir).as_posix()
    except ValueError:
        inside = None
    return str(absolute), inside


def _submit(client, plan, spec_in_job, results, results_inside, working_dir, args) -> str:
    try:
        return client.submit_job(
            entrypoint=jobs.entrypoint(spec_in_job, results, max_concurrent=args.max_concurrent, no_report=args.no_report,
                                       overrides=args.overrides, verbosity=args.verbosity),
            runtime_env=jobs.runtime_env(working_dir, results_inside),
            submission_id=jobs.submission_id(plan.sweep.name),
            metadata={"scalegrid_sweep": plan.sweep.name, "scalegrid_results": redacted(results)},
        )
    except Exception as err:  # noqa: BLE001 - upload too large, auth, version mismatch
        raise UserError(f"submit: {jobs.explain(err)}") from None

"""Schedule a plan's pending trials on Ray Tune and report what the store holds afterwards.

One Tune trial per pending grid point (`param_space` is a grid over trial ids; the `Trial`
objects travel through the object store once, with `tune.with_parameters`). Tune's own
experiment state is kept under `RESULTS/tune/` for debugging only: whether a trial is done is
read from the results store, so a re-run never depends on it.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from scalegrid.grid import estimated_flops
from scalegrid.orchestrator.plan import SweepPlan
from scalegrid.orchestrator.progress import Progress
from scalegrid.orchestrator.worker import tune_trainable


def schedule(plan: SweepPlan, provenance: dict[str, str], *, max_concurrent: int | None = None) -> None:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress lines replace Tune's tables
    from ray import tune

    # Longest first: the grid's makespan is not left to one long trial started last.
    pending = sorted(plan.pending, key=lambda t: estimated_flops(t.config), reverse=True)
    if not pending:
        return
    resources = plan.spec.resources
    trainable = tune.with_resources(
        tune.with_parameters(tune_trainable, trials={t.trial_id: t for t in pending}, provenance=provenance),
        {"cpu": resources.cpus, "gpu": resources.gpus},
    )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    tuner = tune.Tuner(
        trainable,
        param_space={"trial_id": tune.grid_search([t.trial_id for t in pending])},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, trial_dirname_creator=_dirname),
        run_config=tune.RunConfig(
            name=f"{plan.spec.name}-{stamp}",
            storage_path=_tune_storage(plan),
            verbose=0,
            callbacks=[Progress(total=len(pending), already_done=len(plan.trials) - len(pending))],
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    tuner.fit()


def _tune_storage(plan: SweepPlan) -> str:
    """Tune's experiment state beside the results: a local directory, or the object store's URI."""
    if isinstance(plan.results_dir, Path):
        return str(Path(plan.results_dir, "tune").resolve())
    return plan.location.uri_of("tune")


def _dirname(tune_trial) -> str:
    return tune_trial.config["trial_id"]

"""A trial on several processes: Ray Train's `TorchTrainer`, launched from the trial's Tune trial.

The pattern of Ray's "hyperparameter optimization" guide (Ray 2.60, Train V2): the Tune trial is
the driver. It reserves next to nothing, keeps the trial's lease and writes its rows
(`worker.execute`); `resources.workers` Train workers hold the CPUs and GPUs and run the trainer
itself, the same `train(trial, report)` a one-process trial runs (`trainers/parallelize.py` splits
each batch over them and averages the gradients). The Train run is named by the trial_id, so a
retried trial's run is found again under `RESULTS/tune/train/`.

Every worker reports each evaluation row (`ray.train.report`: a barrier over the workers); Ray's
`TuneReportCallback` forwards rank 0's to the Tune trial, so the live progress and the trackers see
them as they see a one-process trial's. Rank 0's `TrialResult` comes back through a Ray queue.
A worker that dies is restarted with its group (`FailureConfig(max_failures)`), and the trainer
resumes from the trial's newest checkpoint, whatever the number of workers that wrote it; rank 0
records each start of the group in the trial's lease history (`starting`), and its rows say the
step it resumed from.

    train_distributed(trial, report)      -> TrialResult, like any trainer
"""

from __future__ import annotations

from typing import Any, Callable, TypedDict

from scalegrid.trainers import trainer_of
from scalegrid.trial import Report, Trial, TrialResult

RESULT_TIMEOUT_S = 60.0  # rank 0 puts the result before its loop returns: it is there when fit() is


def train_distributed(
    trial: Trial, report: Report, *, reports: Callable[[Callable[[dict], None]], Any], starting: Callable[[], None] | None = None,
) -> TrialResult:
    """Train `trial` on its `resources.workers` Ray Train workers; rank 0's result.

    `report` is unused: the workers' rows reach the Tune trial through `TuneReportCallback`, each
    made by `reports(send).row(trial)` in the worker (`worker.TuneReports`: the row with its FLOPs).
    `starting` is called by rank 0 at each start of the workers, before they train."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback
    from ray.util.queue import Queue

    r, results = trial.resources, trial.results
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    try:
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config={"trial": trial, "queue": queue, "reports": reports, "starting": starting},
            scaling_config=ScalingConfig(
                num_workers=r.workers, use_gpu=r.worker["GPU"] > 0,
                resources_per_worker={k: v for k, v in r.worker.items() if v},
            ),
            run_config=RunConfig(
                name=trial.trial_id,
                storage_path=results.uri_of(*results.train_runs_dir()),
                failure_config=FailureConfig(max_failures=trial.fault_tolerance.max_failures),
                callbacks=[TuneReportCallback()],
            ),
        )
        trainer.fit()
        return queue.get(timeout=RESULT_TIMEOUT_S)
    finally:
        ray.kill(queue.actor)


class WorkerConfig(TypedDict):
    """Ray Train's `train_loop_config` of a trial: the trial, the queue rank 0 answers on, and how
    a worker's evaluation rows become Tune reports."""

    trial: Trial
    queue: Any  # ray.util.queue.Queue
    reports: Callable[[Callable[[dict], None]], Any]  # send -> a `trial_worker.TuneReports`
    starting: Callable[[], None] | None  # rank 0, at each start: `trial_worker.record_start`


def _train_worker(config: WorkerConfig) -> None:
    """One Train worker: the trial's trainer on this process's share; rank 0 sends the result."""
    import ray.train

    trial, main = config["trial"], ray.train.get_context().get_world_rank() == 0
    if main and config["starting"] is not None:
        config["starting"]()  # sets unreadable checkpoints aside before rank 0 lists them for all (`lm_run.agreed`)
    result = trainer_of(trial)(trial, config["reports"](ray.train.report).row(trial))
    if main:
        config["queue"].put(result)

"""Experiment tracking through Ray Tune's own integrations: Weights & Biases, MLflow, TensorBoard.

Tune's config of every trial carries its hyperparameters, flattened (`pack_hyperparameters`), beside
the pack and the trials to rebuild, and the worker reports every evaluation row to Tune as it
happens (`worker.tune_trainable`), so every Tune logger callback sees both: those the spec's
`tracking:` section turns on (`callbacks`), or any a user adds. One tracked run per trial, named by
its trial_id:

    tracking:
      wandb: {project: my-project}     # W&B group = the sweep's name; files under RESULTS/wandb/
      mlflow: {}                       # experiment = the sweep's name; file store RESULTS/mlruns/
      tensorboard: true                # event files under RESULTS/tune/<sweep>/<trial_id>/

Ray's callbacks log every key of every result at Tune's report counter and the whole config as
parameters; the subclasses here (`TensorBoardRuns`, `WandbRuns`, `MlflowRuns`) log what a
researcher reads instead: the hyperparameters (`tracked_hyperparameters`), each evaluation row's
numbers with the optimizer step as the step axis (`training_metrics`: tokens seen is a metric),
and for TensorBoard's HParams tab the final val_loss.

`check` validates the section before anything is written (packages installed, W&B credentials
unless offline, a place for MLflow's store); `environment` sets, for the duration of a Tune run,
the variables Ray's callbacks read in the driver.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import io
import math
import os
from pathlib import Path

from scalegrid.errors import UserError
from scalegrid.spec import Sweep
from scalegrid.storage import ResultsLayout
from scalegrid.store import CurveRow
from scalegrid.trial import Scalar, Trial

ROUTING = ("pack", "trials")  # a Tune trial's config besides its hyperparameters (`trial_feeds.Pack.config`)
CURVE_METRICS = frozenset(f.name for f in dataclasses.fields(CurveRow)) - {"trial_id"}  # what a tracker logs
EXTRAS = {"wandb": "scalegrid[wandb]", "mlflow": "scalegrid[mlflow]", "tensorboardX": "tensorboardX"}


# --- what a tracked run is told: the trial's hyperparameters --------------------------------------


def pack_hyperparameters(trials: list[Trial]) -> dict[str, Scalar]:
    """One Tune trial's config: its trial's hyperparameters, or for a pack those all its trials share."""
    each = [t.hyperparameters() for t in trials]
    if len(each) == 1:
        return each[0]
    return {k: v for k, v in each[0].items() if all(e.get(k) == v for e in each[1:])} | {"pack_size": len(each)}


# --- checks, before anything is written -------------------------------------------------------------


def check(sweep: Sweep, results: ResultsLayout) -> None:
    """Every tracker the spec turns on can start: its package is installed, W&B has credentials
    (or is offline), MLflow has somewhere to write."""
    tracking = sweep.tracking
    if tracking.wandb is not None:
        _need("wandb", "tracking.wandb")
        if wandb_mode(sweep) == "online" and not _wandb_logged_in():
            raise UserError(
                "tracking.wandb: no W&B credentials; set WANDB_API_KEY, run `wandb login`, or set "
                "tracking.wandb.mode: offline (WANDB_MODE=offline) and `wandb sync` later"
            )
    if tracking.mlflow is not None:
        _need("mlflow", "tracking.mlflow")
        uri = mlflow_uri(sweep, results)
        if uri.startswith(("sqlite:", "postgresql", "mysql", "mssql")) and importlib.util.find_spec("sqlalchemy") is None:
            raise UserError(f"tracking.mlflow.tracking_uri: {uri} is a database store, which needs MLflow's full package; pip install mlflow")
    if tracking.tensorboard:
        _need("tensorboardX", "tracking.tensorboard")


def _need(package: str, field: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise UserError(f"{field}: the {package} package is not installed; pip install '{EXTRAS[package]}'")


def _wandb_logged_in() -> bool:
    import wandb

    with contextlib.redirect_stderr(io.StringIO()):  # its notes on where the key came from
        return bool(wandb.login(prompt=False, verify=False))


def wandb_mode(sweep: Sweep) -> str:
    return sweep.tracking.wandb.mode or os.environ.get("WANDB_MODE") or "online"


def wandb_dir(sweep: Sweep, results: ResultsLayout) -> str | None:
    """W&B's local files: the spec's `dir`, else RESULTS/wandb on a local results directory (else W&B's default)."""
    given = sweep.tracking.wandb.dir
    if given:
        return os.path.abspath(os.path.expanduser(given))
    local = results.local(*results.wandb_dir())
    return str(local) if local is not None else None


def mlflow_uri(sweep: Sweep, results: ResultsLayout) -> str:
    """The spec's tracking URI, else $MLFLOW_TRACKING_URI, else a file store in RESULTS/mlruns."""
    uri = sweep.tracking.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri if "://" in uri or uri.startswith(("sqlite:", "databricks")) else Path(uri).expanduser().resolve().as_uri()
    local = results.local(*results.mlflow_dir())
    if local is None:
        raise UserError(
            f"tracking.mlflow.tracking_uri: results {results} are not on this machine, so there is no default "
            "file store; give a tracking server (http://HOST:5000) or a database URI"
        )
    return local.as_uri()


# --- the callbacks and their environment ------------------------------------------------------------


def tracked_hyperparameters(config: dict[str, object]) -> dict[str, object]:
    """What a tracker logs as a Tune trial's parameters: its config without the pack and the trials
    to rebuild (`trial_feeds.Pack.config`), which are routing, not hyperparameters."""
    return {k: v for k, v in config.items() if k not in ROUTING}


def training_metrics(result: dict[str, object]) -> dict[str, float] | None:
    """An evaluation row as a tracker logs it: the curve's numbers, the optimizer step included
    (each tracker's step axis); None for any other result (a pack's count, a trial's outcome) and
    none of Tune's own bookkeeping (pid, timestamp, time_*, done, config)."""
    if "step" not in result:
        return None
    return {k: float(v) for k, v in result.items()
            if k in CURVE_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def callbacks(sweep: Sweep, results: ResultsLayout) -> list:
    """Tune's logger callbacks: its CSV and JSON results (Tune's own experiment state), and the trackers asked for."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    out: list = [CSVLoggerCallback(), JsonLoggerCallback()]
    tracking, trackers = sweep.tracking, _tracker_classes()
    if tracking.tensorboard:
        out.append(trackers["tensorboard"]())
    if tracking.wandb is not None:
        w, directory = tracking.wandb, wandb_dir(sweep, results)
        if directory:
            os.makedirs(directory, exist_ok=True)
        where = {"entity": w.entity} if w.entity else {}
        where |= {"dir": directory} if directory else {}
        out.append(trackers["wandb"](project=w.project, group=sweep.name, mode=wandb_mode(sweep), settings={"silent": True}, **where))
    if tracking.mlflow is not None:
        experiment = tracking.mlflow.experiment or sweep.name
        out.append(trackers["mlflow"](tracking_uri=mlflow_uri(sweep, results), experiment_name=experiment, save_artifact=False))
    return out


class TensorBoardRuns:
    """Ray's TensorBoard logger, logging what a researcher reads: each evaluation row's numbers at
    the optimizer step (tags `val_loss`, `train_loss`, `tokens_seen`, ...), and when the trial ends
    its hyperparameters in the HParams plugin with its final val_loss as the metric. A Tune trial
    that trained nothing here (another driver held it) writes no event file."""

    def log_trial_start(self, trial) -> None:
        pass  # the writer opens with the first row

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        metrics = training_metrics(result)
        if not metrics:
            return
        if trial not in self._trial_writer:
            trial.init_local_path()
            self._trial_writer[trial] = self._summary_writer_cls(trial.local_path, flush_secs=30)
        step = int(metrics.pop("step"))
        for name, value in metrics.items():
            self._trial_writer[trial].add_scalar(name, value, global_step=step)
        self._trial_result[trial] = metrics
        self._trial_writer[trial].flush()

    def log_trial_end(self, trial, failed: bool = False) -> None:
        from tensorboardX.summary import hparams

        writer, last = self._trial_writer.pop(trial, None), self._trial_result.pop(trial, {})
        if writer is None:
            return
        if "val_loss" in last:  # TensorBoard's HParams tab: the trial's hyperparameters and its final loss
            params = {k: v for k, v in tracked_hyperparameters(trial.config).items() if v is not None}
            for summary in hparams(hparam_dict=params, metric_dict={"val_loss": last["val_loss"]}):
                writer.file_writer.add_summary(summary)
        writer.close()


class WandbRuns:
    """Ray's W&B logger with the trial's hyperparameters as the run's config and each evaluation
    row logged at the optimizer step (W&B's step axis), through the logging actor below."""

    def log_trial_start(self, trial) -> None:
        init = dict(id=trial.trial_id, name=str(trial), resume=False, reinit=True, allow_val_change=True,
                    group=self.group, project=self.project, config=tracked_hyperparameters(trial.config))
        self._start_logging_actor(trial, [], **(init | self.kwargs))

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        metrics = training_metrics(result)
        if not metrics:
            return
        if trial not in self._trial_logging_actors:
            self.log_trial_start(trial)
        self._trial_queues[trial].put((self.RESULT, metrics))


class WandbStepActor:
    """The W&B logging actor's loop, logging each row at its optimizer step (Ray's logs at Tune's
    report counter) and nothing of Tune's."""

    def run(self) -> None:
        os.environ["WANDB_START_METHOD"] = "thread"
        self._wandb.init(*self.args, **self.kwargs)
        while True:
            kind, row = self.queue.get()
            if kind == self.END:
                break
            if kind == self.RESULT:
                step = int(row.pop("step"))
                self._wandb.log(row, step=step)
        self._wandb.finish()


class MlflowRuns:
    """Ray's MLflow logger, logging the trial's hyperparameters as the run's parameters and each
    evaluation row's numbers at the optimizer step."""

    def log_trial_start(self, trial) -> None:
        if trial not in self._trial_runs:
            run = self.mlflow_util.start_run(tags={**self.tags, "trial_name": str(trial)}, run_name=str(trial))
            self._trial_runs[trial] = run.info.run_id
        self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=tracked_hyperparameters(trial.config))

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        metrics = training_metrics(result)
        if metrics:
            step = int(metrics.pop("step"))
            self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=metrics, step=step)


@functools.cache
def _tracker_classes() -> dict[str, type]:
    """The trackers as Ray's own callbacks (Ray loads where a sweep runs, never where it is planned)."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem, _WandbLoggingActor
    from ray.tune.logger import TBXLoggerCallback

    module = {"__module__": __name__}
    queue_items = {"RESULT": _QueueItem.RESULT, "END": _QueueItem.END}
    actor = type("WandbStepLoggingActor", (WandbStepActor, _WandbLoggingActor), module | queue_items)
    return {
        "tensorboard": type("TensorBoardCallback", (TensorBoardRuns, TBXLoggerCallback), module),
        "wandb": type("WandbCallback", (WandbRuns, WandbLoggerCallback), module | queue_items | {"_logger_actor_cls": actor}),
        "mlflow": type("MlflowCallback", (MlflowRuns, MLflowLoggerCallback), module),
    }


@contextlib.contextmanager
def environment(sweep: Sweep):
    """The variables Ray's callbacks read in the driver, set while Tune runs: an offline W&B needs
    no key; MLflow 3 refuses a file store unless told it is wanted."""
    wanted: dict[str, str] = {}
    if sweep.tracking.wandb is not None and wandb_mode(sweep) == "offline":
        wanted["WANDB_MODE"] = "offline"
    if sweep.tracking.mlflow is not None:
        wanted["MLFLOW_ALLOW_FILE_STORE"] = "true"
    # MLflow sets MLFLOW_TRACKING_URI to the store it logged to (for its subprocesses): restored
    # afterwards, or the next sweep of this process would log into this one's store.
    before = {name: os.environ.get(name) for name in [*wanted, "MLFLOW_TRACKING_URI"]}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

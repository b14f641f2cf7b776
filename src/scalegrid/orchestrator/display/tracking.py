"""Experiment tracking through Ray Tune's own integrations: Weights & Biases, MLflow, TensorBoard.

Tune's config of every trial carries its hyperparameters, flattened (`pack_hyperparameters`), and the
worker reports every evaluation row to Tune as it happens (`worker.tune_trainable`), so every Tune
logger callback sees both: those the spec's `tracking:` section turns on (`callbacks`), or any a
user adds. One tracked run per trial, named by its trial_id:

    tracking:
      wandb: {project: my-project}     # W&B group = the sweep's name; files under RESULTS/wandb/
      mlflow: {}                       # experiment = the sweep's name; file store RESULTS/mlruns/
      tensorboard: true                # event files under RESULTS/tune/<run>/<trial_id>/

`check` validates the section before anything is written (packages installed, W&B credentials
unless offline, a place for MLflow's store); `environment` sets, for the duration of a Tune run,
the variables Ray's callbacks read in the driver.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
from pathlib import Path

from scalegrid.errors import UserError
from scalegrid.spec import Sweep
from scalegrid.storage import ResultsLayout
from scalegrid.trial import Stage, Trial

Scalar = str | int | float | bool | None
EXTRAS = {"wandb": "scalegrid[wandb]", "mlflow": "scalegrid[mlflow]", "tensorboardX": "tensorboardX"}


# --- what a tracked run is told: the trial's hyperparameters --------------------------------------


def hyperparameters(trial: Trial) -> dict[str, Scalar]:
    """A trial's config as trackers show it: flat names, plain values."""
    c = trial.config
    params: dict[str, Scalar] = {
        "trial_id": trial.trial_id, "sweep": trial.sweep, "stage": Stage(trial.stage).value, "trainer": c.trainer,
        "model": trial.model_label, "params": c.num_params, "params_nonembed": c.num_params_nonembed,
        "unique_tokens": c.unique_tokens, "epochs": c.epochs, "lr": c.lr, "weight_decay": c.weight_decay,
        "seed": c.seed, "member": c.member, "tokens_seen": c.tokens_seen, "flops": c.estimated_flops,
        **{f"train.{name}": value for name, value in c.train.model_dump(mode="json").items()},
    }
    if c.distill is not None:
        params |= {"teacher_members": len(c.distill.teacher), "distill_method": c.distill.method, "combine": c.distill.combine}
    return params


def pack_hyperparameters(trials: list[Trial]) -> dict[str, Scalar]:
    """One Tune trial's config: its trial's hyperparameters, or for a pack those all its trials share."""
    each = [hyperparameters(t) for t in trials]
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


def callbacks(sweep: Sweep, results: ResultsLayout) -> list:
    """Tune's logger callbacks: its CSV and JSON results (Tune's own experiment state), and the trackers asked for."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    out: list = [CSVLoggerCallback(), JsonLoggerCallback()]
    tracking = sweep.tracking
    if tracking.tensorboard:
        out.append(TBXLoggerCallback())
    if tracking.wandb is not None:
        out.append(_wandb_callback(sweep, results))
    if tracking.mlflow is not None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        experiment = tracking.mlflow.experiment or sweep.name
        out.append(MLflowLoggerCallback(tracking_uri=mlflow_uri(sweep, results), experiment_name=experiment, save_artifact=False))
    return out


def _wandb_callback(sweep: Sweep, results: ResultsLayout):
    from ray.air.integrations.wandb import WandbLoggerCallback

    w = sweep.tracking.wandb
    directory = wandb_dir(sweep, results)
    if directory:
        os.makedirs(directory, exist_ok=True)
    where = {"entity": w.entity} if w.entity else {}
    where |= {"dir": directory} if directory else {}
    callback = WandbLoggerCallback(project=w.project, group=sweep.name, mode=wandb_mode(sweep), settings={"silent": True}, **where)
    # Tune adds its own `trial_id` to every result, and Ray copies that key into the W&B config,
    # over the scalegrid trial_id the config holds: keep ours.
    callback.AUTO_CONFIG_KEYS = [k for k in WandbLoggerCallback.AUTO_CONFIG_KEYS if k != "trial_id"]
    return callback


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

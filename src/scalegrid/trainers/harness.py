"""Downstream evaluation on lm-evaluation-harness: a saved model, a student or an ensemble scored on tasks.

Every model goes through the harness's Hugging Face class (`HFLM`) on its saved weights (loaded
here, safetensors only: `weights.load_model`), as `ScoredLM`, which adds two things only: it
counts the requests whose context was cut from the left to fit the model's context (the `truncated`
column) and refuses, in one line, a task whose answers alone do not fit. An ensemble is
`EnsembleLM`, the same class whose forward pass runs every member on the batch and returns the log
of their averaged next-token distribution, exactly as `ensemble.combine` says
(`distill.averaged_logprobs`: the mean of the members' probabilities, or softmax of their mean
logits): the harness's own batching, sorting, truncation and scoring apply unchanged, and its
log-softmax of a normalised log-distribution is the identity.

    scores = evaluate_models(members, combine="probs", tasks=[TaskRef(...)], num_fewshot=0, limit=None, batch_size=32)

On a GPU the members compute under bf16 autocast (fp32 weights, fp32 log-probabilities), as the
other stages do; on a CPU in fp32. The harness and its task data never reach a hub here: tasks are
local (`synthetic_facts`, `evaluate.include`) or the harness's own, whose datasets `datasets` must
find in its cache when HF_DATASETS_OFFLINE is set.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import torch
from lm_eval.models.huggingface import HFLM

from scalegrid.data.eval_tasks import FACTS_TASK, TaskRef, write_facts_task
from scalegrid.trainers.devices import device_name, trial_device
from scalegrid.trainers.distill import averaged_logprobs
from scalegrid.trainers.weights import load_model, local_model_dir
from scalegrid.trial import TaskScores, Trial

BOOTSTRAP_ITERS = 1000  # for metrics without a closed-form standard error (a mean's is closed-form)
QUIET = ("lm_eval", "lm-eval", "datasets", "transformers", "accelerate", "peft")


class ContextTooShort(ValueError):
    """A task's answers alone are longer than the model's context: nothing would fit."""


class ScoredLM(HFLM):
    """The harness's HFLM, counting left-truncated requests and refusing what cannot fit at all."""

    truncated = 0

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        longest = max((len(continuation) for _, _, continuation in requests), default=0)
        if longest > self.max_length:
            raise ContextTooShort(
                f"an answer of {longest} tokens does not fit the model's context of {self.max_length} tokens "
                "(train.seq_len): nothing to score; evaluate models trained on longer sequences"
            )
        self.truncated += sum(len(context) + len(continuation) > self.max_length + 1 for _, context, continuation in requests)
        return super()._loglikelihood_tokens(requests, disable_tqdm=True, override_bs=override_bs)


class EnsembleLM(ScoredLM):
    """k members as one language model: the log of their averaged next-token distribution."""

    def __init__(self, members: Sequence[torch.nn.Module], combine: str, **kwargs) -> None:
        super().__init__(pretrained=members[0], **kwargs)
        self.members, self.combine = list(members), combine

    def _model_call(self, inps: torch.Tensor, attn_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        precision = self.mixed_precision_dtype
        with torch.no_grad(), torch.autocast(self.device.type, dtype=precision, enabled=precision is not None):
            return averaged_logprobs((member(inps).logits for member in self.members), combine=self.combine)


def language_model(members: Sequence[Trial], combine: str, batch_size: int, device: torch.device) -> ScoredLM:
    """The harness LM of one model (a `ScoredLM`) or of an ensemble of `members` (an `EnsembleLM`)."""
    first = members[0]
    models = [load_model(m.results, m.trial_id, device) for m in members]
    options = dict(
        tokenizer=str(local_model_dir(first.results, first.trial_id)), batch_size=batch_size, softmax_dtype=torch.float32,
        mixed_precision_dtype=torch.bfloat16 if device.type == "cuda" else None, logits_cache=True,
    )
    if len(models) == 1:
        return ScoredLM(pretrained=models[0], **options)
    return EnsembleLM(models, combine, **options)


def evaluate_models(
    members: Sequence[Trial], *, combine: str, tasks: Sequence[TaskRef], num_fewshot: int, limit: int | None, batch_size: int,
) -> list[TaskScores]:
    """Score one model (or the ensemble of `members`) on each task: one `TaskScores` per task, with
    the error of a task that failed (the others still run)."""
    _quiet()
    device = trial_device()
    lm = language_model(members, combine, batch_size, device)
    out = []
    with tempfile.TemporaryDirectory(prefix="scalegrid-tasks-") as scratch:
        for task in tasks:
            start, lm.truncated = time.perf_counter(), 0
            try:
                spec = task_spec(task, members[0], Path(scratch))
                scores = _scores(lm, task, spec, num_fewshot, limit)
            except Exception as err:  # noqa: BLE001 - a task that cannot be scored fails alone
                scores = TaskScores(task.name, task.version, error=_one_line(err))
            scores.seconds, scores.device, scores.truncated, scores.max_length = (
                time.perf_counter() - start, device_name(device), lm.truncated, lm.max_length,
            )
            out.append(scores)
    return out


def task_spec(task: TaskRef, model: Trial, scratch: Path):
    """What the harness loads for `task`: its own task by name, or a local task's config with its
    relative data files made absolute (relative to its YAML; the harness would read them relative
    to the working directory, which a Ray worker does not share with the spec)."""
    if task.name == FACTS_TASK:
        synthetic = getattr(model.config.data, "synthetic", None)
        if synthetic is None:
            raise ValueError(f"{FACTS_TASK} needs a model trained on a synthetic corpus")
        return _local_config(write_facts_task(synthetic, scratch / FACTS_TASK))
    return task.name if task.yaml_path is None else _local_config(Path(task.yaml_path))


def _local_config(yaml_path: Path):
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(yaml_path, resolve_func=True, recursive=True)
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if files is not None:
        config["dataset_kwargs"] = {**config["dataset_kwargs"], "data_files": _absolute(files, yaml_path.parent)}
    return config


def _absolute(files, base: Path):
    """`data_files` (a path, a list, or split -> either) with each relative path made absolute under `base`."""
    if isinstance(files, dict):
        return {split: _absolute(f, base) for split, f in files.items()}
    if isinstance(files, list):
        return [_absolute(f, base) for f in files]
    return str(base / files) if "://" not in str(files) and not Path(str(files)).is_absolute() else files


def _scores(lm: ScoredLM, task: TaskRef, spec, num_fewshot: int, limit: int | None) -> TaskScores:
    """One task through the harness's `evaluate` (not `simple_evaluate`: that also gathers the
    machine's environment, seconds per call), with `simple_evaluate`'s few-shot settings."""
    from lm_eval.evaluator import evaluate

    loaded = _task_manager(needs_defaults=isinstance(spec, str)).load([spec])
    for task_obj in loaded["tasks"].values():
        if task_obj.get_config("num_fewshot") != 0:  # a task that fixes 0 shots keeps it (as simple_evaluate does)
            task_obj.set_config(key="num_fewshot", value=num_fewshot)
        task_obj.set_fewshot_seed(seed=1234)  # simple_evaluate's default: the same shots on every run
    results = evaluate(lm=lm, task_dict=loaded, limit=limit, bootstrap_iters=BOOTSTRAP_ITERS, log_samples=False, verbosity="ERROR")
    (name,) = loaded["tasks"]
    return TaskScores(
        task.name, str(results["versions"].get(name, task.version)), metrics=_metrics(results["results"][name]),
        samples=int(results["n-samples"][name]["effective"]),
    )


def _metrics(reported: dict) -> dict[str, tuple[float, float]]:
    """{"acc": (value, stderr), ...} from the harness's {"acc,none": v, "acc_stderr,none": s, ...}."""
    out = {}
    for key, value in reported.items():
        if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
            continue
        metric, filter_name = key.split(",", 1)
        stderr = reported.get(f"{metric}_stderr,{filter_name}")
        label = metric if filter_name == "none" else key
        out[label] = (float(value), float(stderr) if isinstance(stderr, (int, float)) else float("nan"))
    return out


_MANAGERS: dict[bool, object] = {}  # per process: the harness's own index takes seconds to build


def _task_manager(*, needs_defaults: bool):
    from lm_eval.tasks import TaskManager

    if needs_defaults not in _MANAGERS:
        _MANAGERS[needs_defaults] = TaskManager(include_defaults=needs_defaults)
    return _MANAGERS[needs_defaults]


def _quiet() -> None:
    """The harness logs every request batch and setting: keep the driver's stderr to scalegrid's lines."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def _one_line(err: BaseException) -> str:
    return traceback.format_exception_only(type(err), err)[-1].strip().splitlines()[0][:2000]

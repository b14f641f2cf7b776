"""The `lm` trainer: a Llama built from its shape, trained for E epochs over exactly U unique tokens.

The U tokens are the first `unique_tokens` of the cached train stream (`data.open_tokens`), cut
into `U / seq_len` sequences that live on the device for the whole run. Each epoch visits every
sequence once in an order drawn from `(seed, epoch)`; the model's initial weights are drawn from
`seed` (the same seed gives the same result on a CPU; CUDA kernels may differ in the last bits).
One optimizer step is `batch_size` sequences (the last step of an epoch may have fewer),
so a trial takes `epochs * ceil(U / seq_len / batch_size)` steps and sees exactly `epochs * U`
tokens.

Recipe: AdamW with decoupled weight decay on every matrix (`model.param_groups` says why the
embeddings too), linear warmup then cosine / linear / constant decay (`schedule.lr_at`),
gradient-norm clipping, and on a GPU bf16 autocast, fused AdamW and SDPA attention.

Every `eval_every` steps and at the end the validation loss (the first `validation.max_tokens`
held-out tokens, in `seq_len` sequences) is computed and reported as one curve row. Train losses
and gradient norms stay on the device and are read every `log_every` steps (each read is a device
sync). A NaN or infinite loss there or in an eval ends the trial as DIVERGED ("non-finite loss at
step N", N counting optimizer steps from 1), never as an exception; so do a non-finite or exactly
zero gradient norm (overflowed activations: with AdamW and clipping a huge lr often silences the
model at a finite loss instead of producing NaN) and a loss over 10x that of uniform guessing.

Every `fault_tolerance.checkpoint_every` steps (after that step's eval, if any) the whole state is
checkpointed under `RESULTS/checkpoints/<trial_id>/` (`checkpoint.py`): weights, AdamW moments,
the step (which with `(seed, epoch)` fixes the data position), the loss window, the curve rows so
far, the wall time used and every RNG. A trial that finds a checkpoint starts from the newest one,
so an interrupted trial ends exactly where an uninterrupted one does, having lost at most one
interval of work.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from scalegrid.spec import TrainSpec
from scalegrid.trainers import checkpoint
from scalegrid.trainers.base import Report, Trial, TrialResult
from scalegrid.trainers.data import open_tokens
from scalegrid.trainers.model import build_model, count_params, param_groups
from scalegrid.trainers.presets import LlamaShape
from scalegrid.trainers.schedule import lr_at


def train(
    trial: Trial,
    report: Report,
    *,
    extra_sequences: torch.Tensor | None = None,
    batch_loss: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> TrialResult:
    """Train one trial. Distillation (`trainers/distill.py`) adds teacher-generated sequences to the
    training set (`extra_sequences`, [n, seq_len]) or replaces the loss of a batch (`batch_loss`)."""
    start = time.perf_counter()
    cfg, t = trial.config, trial.config.train
    shape = LlamaShape(**cfg.model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    train_seqs, val_seqs, vocab_size = load_sequences(trial, device)
    if extra_sequences is not None:
        train_seqs = torch.cat([train_seqs, extra_sequences.to(device)])
    model = build_model(shape, vocab_size, t.seq_len, seed=cfg.member_seed, device=device)
    params, params_nonembed = count_params(model)
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, t, device)
    order = epoch_orders(len(train_seqs), cfg.epochs, cfg.member_seed, device)
    steps_per_epoch = math.ceil(len(train_seqs) / t.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    losses = LossWindow(t.log_every, device, vocab_size)
    curves: list[dict] = []
    tokens_seen, lr, train_loss, error = 0, cfg.lr, math.nan, None
    resumed_from, saved = checkpoint.latest(trial.checkpoint_dir)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        losses.load_state_dict(saved["losses"])
        curves = saved["curves"]
        tokens_seen, lr, train_loss = saved["tokens_seen"], saved["lr"], saved["train_loss"]
        start -= saved["wall_s"]  # wall_s counts the time of every attempt
        checkpoint.set_rng_state(saved["rng"])
    every, keep = trial.fault_tolerance.checkpoint_every, trial.fault_tolerance.keep_checkpoints

    def eval_row(step: int) -> dict:
        row = {
            "step": step,
            "epoch": step / steps_per_epoch,
            "tokens_seen": tokens_seen,
            "train_loss": train_loss,
            "val_loss": evaluate(model, val_seqs, t.batch_size, autocast),
            "lr": lr,
            "wall_s": time.perf_counter() - start,
        }
        curves.append(row)
        report(row)
        return row

    model.train()
    for step in range(resumed_from, total_steps):  # a resumed run's first step was evaluated and saved
        lr = lr_at(step, total_steps, cfg.lr, t)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if step > resumed_from and step % t.eval_every == 0:
            if losses.count:
                train_loss, error = losses.read()
            if error or not math.isfinite(eval_row(step)["val_loss"]):
                break
        if step > resumed_from and step % every == 0:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "losses": losses.state_dict(),
                "curves": curves,
                "tokens_seen": tokens_seen,
                "lr": lr,
                "train_loss": train_loss,
                "wall_s": time.perf_counter() - start,
                "rng": checkpoint.rng_state(),
            }
            checkpoint.save(trial.checkpoint_dir, step, state, keep=keep)
        x = next_batch(train_seqs, order, step, steps_per_epoch, t.batch_size)
        with autocast:
            loss = model(input_ids=x, labels=x).loss if batch_loss is None else batch_loss(model, x)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip or math.inf)  # inf: measure only
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += x.numel()
        losses.add(step + 1, loss, grad_norm)
        if losses.count == t.log_every:  # note: a device sync
            train_loss, error = losses.read()
            if error:
                break
    else:  # no break: the run finished, read the last window and evaluate the final model
        if losses.count:
            train_loss, error = losses.read()
        if not error:
            eval_row(total_steps)

    if not error and not math.isfinite(curves[-1]["val_loss"]):
        error = f"non-finite validation loss at step {curves[-1]['step']}"
    diverged = error is not None
    if trial.save_model and not diverged:
        save_model(model, trial)
    return TrialResult(
        status="DIVERGED" if diverged else "COMPLETED",
        params=params,
        params_nonembed=params_nonembed,
        tokens_seen=tokens_seen,
        flops=float(shape.flops_per_token(vocab_size, t.seq_len) * tokens_seen),
        val_loss=math.nan if diverged else curves[-1]["val_loss"],
        best_val_loss=min((r["val_loss"] for r in curves if math.isfinite(r["val_loss"])), default=math.nan),
        train_loss=math.nan if diverged else train_loss,
        error=error,
        extra={"curves": curves, "steps": total_steps, "resumed_from_step": resumed_from},
    )


def save_model(model: torch.nn.Module, trial: Trial) -> Path:
    """The final weights in RESULTS/models/<trial_id>/ (`save_pretrained`, safetensors), written
    under a temporary name and renamed: a directory that exists is complete. Kept apart from
    training checkpoints: this is what ensemble evaluation and distillation load."""
    from transformers.utils import logging

    logging.disable_progress_bar()  # its bar reaches the driver's stderr through Ray's log forwarding
    final = model_dir(trial.results_dir, trial.trial_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{trial.trial_id}.", dir=final.parent))
    try:
        model.save_pretrained(tmp)  # safetensors
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if final.exists():  # a re-trained member (its weights were missing or it failed before)
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def model_dir(results_dir: str | Path, trial_id: str) -> Path:
    return Path(results_dir) / "models" / trial_id


def load_sequences(trial: Trial, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(train sequences [U / seq_len, seq_len], validation sequences, vocab_size), int64 on `device`."""
    cfg, seq_len = trial.config, trial.config.train.seq_len
    if trial.data_dir is None:
        raise ValueError("the lm trainer needs Trial.data_dir (a token-cache directory)")
    train, val, meta = open_tokens(trial.data_dir)
    if cfg.unique_tokens % seq_len:
        raise ValueError(f"unique_tokens {cfg.unique_tokens} is not a multiple of train.seq_len {seq_len}")
    if cfg.unique_tokens > len(train):
        raise ValueError(f"unique_tokens {cfg.unique_tokens} exceeds the corpus's {len(train)} training tokens")
    val_tokens = min(len(val), cfg.data.get("validation", {}).get("max_tokens", len(val))) // seq_len * seq_len
    if val_tokens == 0:
        raise ValueError(f"the validation split has fewer than train.seq_len = {seq_len} tokens")

    def sequences(tokens: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(tokens.astype(np.int64)).view(-1, seq_len).to(device)

    return sequences(train[: cfg.unique_tokens]), sequences(val[:val_tokens]), int(meta["vocab_size"])


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, t: TrainSpec, device: torch.device):
    return torch.optim.AdamW(
        param_groups(model, weight_decay),
        lr=lr,
        betas=(t.beta1, t.beta2),
        eps=t.eps,
        fused=device.type == "cuda",
    )


def epoch_orders(num_sequences: int, epochs: int, seed: int, device: torch.device) -> torch.Tensor:
    """[epochs, num_sequences]: each epoch's visiting order, from a generator seeded by (seed, epoch)."""
    orders = []
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
        orders.append(torch.randperm(num_sequences, generator=generator))
    return torch.stack(orders).to(device)  # one host->device copy for the whole run


def next_batch(sequences: torch.Tensor, order: torch.Tensor, step: int, steps_per_epoch: int, batch_size: int):
    epoch, i = divmod(step, steps_per_epoch)
    return sequences[order[epoch, i * batch_size : (i + 1) * batch_size]]


@torch.no_grad()
def evaluate(model: torch.nn.Module, sequences: torch.Tensor, batch_size: int, autocast) -> float:
    """Mean next-token loss over the validation sequences."""
    model.eval()
    total = torch.zeros((), device=sequences.device)
    for i in range(0, len(sequences), batch_size):
        x = sequences[i : i + batch_size]
        with autocast:
            total += model(input_ids=x, labels=x).loss.float() * len(x)
    model.train()
    return (total / len(sequences)).item()  # note: a device sync


class LossWindow:
    """Train losses and gradient norms since the last read, kept on the device: a step never syncs.

    `read` names the first step that diverged: a non-finite loss or gradient, a gradient norm of
    exactly 0 (activations overflowed: an RMSNorm of inf outputs 0 and the model goes silent,
    which a healthy model never does), or a loss over 10x that of uniform guessing.
    """

    def __init__(self, size: int, device: torch.device, vocab_size: int):
        self.losses = torch.zeros(size, device=device)
        self.grad_norms = torch.zeros(size, device=device)
        self.loss_limit = 10 * math.log(vocab_size)
        self.count = 0
        self.first_step = 1

    def add(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        if self.count == 0:
            self.first_step = step
        self.losses[self.count] = loss.detach()
        self.grad_norms[self.count] = grad_norm
        self.count += 1

    def state_dict(self) -> dict:
        return {"losses": self.losses.cpu(), "grad_norms": self.grad_norms.cpu(), "count": self.count, "first_step": self.first_step}

    def load_state_dict(self, state: dict) -> None:
        self.losses.copy_(state["losses"])
        self.grad_norms.copy_(state["grad_norms"])
        self.count, self.first_step = state["count"], state["first_step"]

    def read(self) -> tuple[float, str | None]:
        """(mean loss of the window, why the first diverged step diverged, or None); empties it."""
        losses = self.losses[: self.count].tolist()  # note: a device sync
        grad_norms = self.grad_norms[: self.count].tolist()
        self.count = 0
        for step, loss, grad_norm in zip(itertools.count(self.first_step), losses, grad_norms):
            if not math.isfinite(loss):
                return math.nan, f"non-finite loss at step {step}"
            if not math.isfinite(grad_norm) or grad_norm == 0.0:
                return math.nan, f"non-finite activations or gradient at step {step} (gradient norm {grad_norm})"
            if loss > self.loss_limit:
                uniform = self.loss_limit / 10
                return math.nan, f"loss exploded to {loss:.4g} at step {step} (uniform guessing: {uniform:.4g})"
        return sum(losses) / len(losses), None

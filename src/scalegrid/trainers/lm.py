"""The `lm` trainer: a Llama built from its shape, trained for E epochs over exactly U unique tokens.

The U tokens are the first `unique_tokens` of the cached train stream (`data.TokenCache`), cut
into `U / seq_len` sequences that live on the device for the whole run. Each epoch visits every
sequence once in an order drawn from `(seed, epoch)` (`data_order: sequential`: in the corpus'
order, so a batch holds neighbouring text); the model's initial weights are drawn from
`seed` (the same seed gives the same result on a CPU; CUDA kernels may differ in the last bits).
One optimizer step is `batch_size` sequences (the last step of an epoch may have fewer),
so a trial takes `epochs * ceil(U / seq_len / batch_size)` steps and sees exactly `epochs * U`
tokens.

Recipe: AdamW with decoupled weight decay on every matrix (the input embedding too unless
`train.decay_embeddings: false`; `model.param_groups` says why), linear warmup then cosine / linear
/ constant / warmup-stable-decay (`schedule.lr_at`), gradient-norm clipping, and on a GPU bf16 autocast, fused
AdamW, SDPA attention and torch.compile per decoder layer (`parallelize.py`).

    train(trial, report)                  the loop, top to bottom
      Run.build                           everything fixed for the trial: device, model, data, optimizer
      TrainState                          everything a checkpoint restores
      at_step_start                       the hooks: evaluation every `eval_every` steps, checkpoints
      train_step                          one optimizer step: forward_backward_step, clip, AdamW
        forward_backward_step             the batch in micro-batches, gradients accumulated

A trial of `resources.workers` > 1 runs this same loop in every Ray Train worker
(`orchestrator/execution/train_workers.py`): each takes its share of every batch and the gradients are
averaged under DDP or FSDP2 (`parallelize.py`: `Ranks`, `gradient_sync`); every process writes its
own shards of each checkpoint, and rank 0 alone the saved model (gathered whole from the shards
under FSDP2, once, at the end).

A trial computes on the GPU Ray gave it, or the CPU (`devices.py`). An optimizer step's batch
runs as micro-batches of `micro_batch_size` sequences (`auto`: the largest divisor of the batch
that `memory.plan_micro_batch` fits in the GPU; the whole batch on a CPU), each micro-batch's loss
being its summed token cross-entropy over the whole batch's predicted tokens (`loss.py`, which
never materialises more than one chunk of logits), so the accumulated gradient is the batch's.

Every `eval_every` steps and at the end the validation loss (the first `validation.max_tokens`
held-out tokens, in `seq_len` sequences) is computed and reported as one curve row. Train losses
and gradient norms stay on the device and are read every `log_every` steps (each read is a device
sync). A NaN or infinite loss there or in an eval ends the trial as DIVERGED ("non-finite loss at
step N", N counting optimizer steps from 1), never as an exception; so do a non-finite or exactly
zero gradient norm (overflowed activations: with AdamW and clipping a huge lr often silences the
model at a finite loss instead of producing NaN) and a loss over 10x that of uniform guessing.

Every `fault_tolerance.checkpoint_every` steps (after that step's eval, if any) the `TrainState`
is checkpointed under `RESULTS/checkpoints/<trial_id>/step-<N>/` (`checkpoint.py`): weights, AdamW
moments, the step (which with `(seed, epoch)` fixes the data position), the loss window, the curve
rows so far, the wall time used and every RNG; each process writes its own shards, in the
background while training goes on (`dcp_checkpoint.py`). A trial that finds a checkpoint starts
from the newest one, on however many processes it has now, so an interrupted trial ends exactly
where an uninterrupted one does, having lost at most one interval of work; its result, its run row
and every curve row after it say the step it resumed from (`resumed_from_step`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time

import torch

from scalegrid.trainers import devices, memorisation
from scalegrid.trainers.dcp_checkpoint import Checkpointer
from scalegrid.trainers.loss import lm_loss, predicted_tokens
from scalegrid.trainers.losswindow import LossWindow
from scalegrid.trainers.model import count_params
from scalegrid.spec.stopping import should_stop
from scalegrid.trainers.parallelize import (
    evaluation_module, evaluation_stance, full_model_state, full_tensor, gradient_sync, is_sharded,
)
from scalegrid.trainers.probe import GradientProbe
from scalegrid.trainers.schedule import decay_start, decay_steps_after, lr_at, wsd_lr
from scalegrid.trainers.trunks import Trunk, train_group
from scalegrid.data.sequences import next_batch
from scalegrid.trainers.weights import save_model
from scalegrid.trainers.lm_run import BatchLoss, Run, TrainState
from scalegrid.trial import Report, Status, Trial, TrialResult



def train(
    trial: Trial, report: Report, *, extra_sequences: torch.Tensor | None = None, batch_loss: BatchLoss | None = None,
    trunk: Trunk | None = None,
) -> TrialResult:
    """Train one trial. Distillation (`trainers/distill.py`) adds teacher-generated sequences to the
    training set (`extra_sequences`, [n, seq_len]) or replaces the loss of a batch (`batch_loss`);
    a `wsd` epochs axis starts from and saves trunk states (`trunk`, `trunks.py`)."""
    run = Run.build(trial, extra_sequences, batch_loss)
    run.trunk = trunk  # one process only: `trial_feeds.make_packs` groups trunks of one-worker trials
    state = TrainState(run.step, run.optimizer, LossWindow(run.t.log_every, run.device, run.vocab_size), lr=trial.config.lr,
                       probe=GradientProbe.build(run) if run.t.diagnostics else None)
    state.total_steps, state.decay_start = run.total_steps, decay_start(run.total_steps, run.t)
    with run.checkpointer(trial.checkpoint_dir, trial.fault_tolerance.keep_checkpoints) as checkpoints, \
            (run.checkpointer(trunk.directory, keep=1 << 30) if trunk else contextlib.nullcontext()) as trunk_states:
        resumed_from = state.resume(trial.checkpoint_dir, run.group)
        if resumed_from == 0 and trunk and trunk.start is not None:
            resumed_from = state.branch(trunk)
        error, step = None, resumed_from
        while step < state.total_steps and not error:  # a resumed run's first step was evaluated and saved
            state.set_lr(lr_of(run, state, step))
            if step > resumed_from:
                error = at_step_start(run, state, step, report, (checkpoints, trunk_states))
            if not error:
                error = train_step(run, state, step)
                step += 1
    if not error:  # the run finished: read the last window and evaluate the final model
        error = state.read_losses()
        if not error:
            evaluate_into(run, state, state.total_steps, report)
    return finish(run, state, error)


def lr_of(run: Run, state: TrainState, step: int) -> float:
    """The lr of `step`: a `wsd` run's decay is the state's (an adaptive stop moves it)."""
    if run.t.schedule == "wsd":
        return wsd_lr(step, state.decay_start, state.total_steps, run.trial.config.lr, run.t, run.steps_per_epoch)
    return lr_at(step, run.total_steps, run.trial.config.lr, run.t)


def at_step_start(run: Run, state: TrainState, step: int, report: Report, savers: tuple[Checkpointer, Checkpointer | None]) -> str | None:
    """The hooks before step `step`: an evaluation every `eval_every` steps (and at every epoch's
    end with `diagnostics`, which it measures), then a checkpoint every `checkpoint_every` steps
    (and a trunk state where a shorter epoch count branches off). Returns why the trial diverged,
    if it did."""
    epoch_end = step % run.steps_per_epoch == 0 and (state.probe or run.t.stop)
    if step % run.t.eval_every == 0 or epoch_end:
        error = state.read_losses()
        if error:
            return error
        val_loss = evaluate_into(run, state, step, report)
        if not math.isfinite(val_loss):
            return f"non-finite validation loss at step {step}"
        if epoch_end and run.t.stop:
            decide_stop(run, state, step)
    checkpoints, trunk_states = savers
    if step % run.trial.fault_tolerance.checkpoint_every == 0:
        state.save(checkpoints, step, wall_s(run, state))  # every process: its own shards
    if trunk_states and step in run.trunk.saves:  # a shorter epoch count's decay starts here
        state.save(trunk_states, step, wall_s(run, state))
    return None


def decide_stop(run: Run, state: TrainState, step: int) -> None:
    """At an epoch's end in the stable phase: enter the decay now if the stop rule says so."""
    if state.stopped_epoch is not None or step >= state.decay_start:
        return
    history = [r for r in state.curves if r["step"] % run.steps_per_epoch == 0 and r["step"] > 0]
    if should_stop(run.t.stop, history):
        state.stopped_epoch, state.decay_start = step // run.steps_per_epoch, step
        state.total_steps = min(run.total_steps, step + decay_steps_after(step, run.t))
        state.set_lr(lr_of(run, state, step))  # this step is the decay's first
        state.curves[-1]["lr"] = state.lr


def train_step(run: Run, state: TrainState, step: int) -> str | None:
    """One optimizer step on batch `step` of the epoch orders; the divergence, if the window says so."""
    x = next_batch(run.train_seqs, run.order, step, run.steps_per_epoch, run.t.batch_size)
    loss = forward_backward_step(run, x)
    grad_norm = full_tensor(torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.t.clip or math.inf))  # inf: measure only
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    state.tokens_seen += x.numel()
    state.losses.add(step + 1, loss, grad_norm)
    if state.losses.count == run.t.log_every:  # note: a device sync
        return state.read_losses()
    return None


def forward_backward_step(run: Run, batch: torch.Tensor) -> torch.Tensor:
    """Forward and backward of this process's share of `batch` in micro-batches, their gradients
    accumulated in the parameters' `.grad` (across processes on the last one); returns the
    batch's mean token loss (detached, on the device)."""
    num_tokens = predicted_tokens(batch)
    micros = run.ranks.micro_batches(batch, run.micro_batch)
    total = torch.zeros((), device=batch.device)
    for i, (micro, weight) in enumerate(micros):
        with gradient_sync(run.step, enabled=i == len(micros) - 1):
            with run.autocast():
                loss = run.step(micro, num_tokens, run.loss)
            (loss * weight if weight != 1.0 else loss).backward()
        total += loss.detach() * (weight / run.ranks.world_size)
    return run.ranks.sum(total)


def wall_s(run: Run, state: TrainState) -> float:
    return time.perf_counter() - run.start + state.wall_s_before


def evaluate_into(run: Run, state: TrainState, step: int, report: Report) -> float:
    """Evaluate, append the curve row, report it; returns the validation loss."""
    row = {
        "step": step,
        "epoch": step / run.steps_per_epoch,
        "tokens_seen": state.tokens_seen,
        "train_loss": state.train_loss,
        "val_loss": evaluate(run, run.val_seqs),
        "lr": state.lr,
        "wall_s": wall_s(run, state),
        "resumed_from_step": state.resumed_from_step,  # the attempt that evaluated it started there
    }
    if state.probe is not None and step % run.steps_per_epoch == 0:
        row |= state.probe.measure(run, row["val_loss"])
    state.curves.append(row)
    report(row)
    return row["val_loss"]


def finish(run: Run, state: TrainState, error: str | None) -> TrialResult:
    """The trial's result: COMPLETED with its final losses, or DIVERGED with why; saves the weights if asked."""
    cfg, curves = run.trial.config, state.curves
    if not error and not math.isfinite(curves[-1]["val_loss"]):
        error = f"non-finite validation loss at step {curves[-1]['step']}"
    diverged = error is not None
    if run.trial.save_model and not diverged:
        whole = full_model_state(run.step) if is_sharded(run.step) else None  # a collective
        if run.ranks.is_main:
            save_model(run.model, run.trial, whole)
    memorised = {}
    if run.t.memorisation_samples and not diverged:  # one process (the spec refuses it with resources.workers > 1)
        memorised = memorisation.measure(run.model, run.train_seqs, run.val_seqs, run.t.memorisation_samples,
                                         run.t.memorisation_ngram, cfg.member_seed)
    params, params_nonembed = count_params(run.model)
    return TrialResult(
        status=Status.DIVERGED if diverged else Status.COMPLETED,
        params=params,
        params_nonembed=params_nonembed,
        tokens_seen=state.tokens_seen,
        flops=float(cfg.model.flops_per_token(run.vocab_size, run.t.seq_len) * state.tokens_seen),
        val_loss=math.nan if diverged else curves[-1]["val_loss"],
        best_val_loss=min((r["val_loss"] for r in curves if math.isfinite(r["val_loss"])), default=math.nan),
        train_loss=math.nan if diverged else state.train_loss,
        error=error,
        device=devices.device_name(run.device),
        curves=curves,
        steps=state.total_steps, resumed_from_step=state.resumed_from_step, world_size=run.ranks.world_size,
        stopped_epoch=state.stopped_epoch, **memorised,
    )


@torch.no_grad()
def evaluate(run: Run, sequences: torch.Tensor) -> float:
    """Mean next-token loss over the validation sequences (all of one length), a micro-batch at a
    time, eager (`parallelize.evaluation_stance`)."""
    run.model.eval()
    total = torch.zeros((), device=sequences.device)
    forward, loss = evaluation_module(run.step), functools.partial(lm_loss, chunk_tokens=run.chunk_tokens)
    with evaluation_stance():
        for x in sequences.split(run.micro_batch):
            with run.autocast():
                total += forward(x, predicted_tokens(x), loss).float() * len(x)
    run.model.train()
    return (total / len(sequences)).item()  # note: a device sync


def train_many(trials, reports=None) -> list[TrialResult]:
    """The trials of one trunk: the longest trained once, the shorter ones branching off it."""
    return train_group(trials, reports, train)

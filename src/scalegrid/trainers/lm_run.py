"""What an `lm` trial fixes before its first step (`Run`: device, data, model, optimizer, how a
batch is split, where checkpoints go) and everything that changes while it trains (`TrainState`:
what a checkpoint restores). The loop that uses them is `lm.py`."""

from __future__ import annotations

import functools
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from scalegrid.payloads import StateDict
from scalegrid.data.sequences import epoch_orders, load_sequences
from scalegrid.gpu_memory import loss_chunk_tokens, plan_micro_batch, sharded, usable_bytes
from scalegrid.spec import TrainSpec
from scalegrid.storage.layout import CheckpointDir
from scalegrid.trainers import checkpoint, devices
from scalegrid.trainers.dcp_checkpoint import Checkpointer
from scalegrid.trainers.dcp_checkpoint import load as load_checkpoint
from scalegrid.trainers.loss import lm_loss
from scalegrid.trainers.losswindow import LossWindow
from scalegrid.trainers.model import build_model, param_groups
from scalegrid.trainers.parallelize import Ranks, checkpoint_group, load_shard_state_dicts, parallelize, shard_state_dicts
from scalegrid.trainers.probe import GradientProbe
from scalegrid.trainers.trunks import Trunk
from scalegrid.trial import Trial

# (model, micro-batch [b, s], predicted tokens of the whole optimizer batch) -> the micro-batch's
# summed token loss divided by that count: micro-batches' losses add up to the batch's mean.
BatchLoss = Callable[[torch.nn.Module, torch.Tensor, int], torch.Tensor]


@dataclass
class Run:
    """What a trial fixes before its first step: the device, the data, the model and optimizer."""

    trial: Trial
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_seqs: torch.Tensor
    val_seqs: torch.Tensor
    vocab_size: int
    order: torch.Tensor  # [epochs, sequences]: each epoch's visiting order
    loss: BatchLoss
    micro_batch: int  # sequences per forward/backward
    chunk_tokens: int  # positions per chunk of the lm head and cross-entropy
    ranks: Ranks  # this process among the trial's (`parallelize.py`): one, or Ray Train's W workers
    step: torch.nn.Module  # what a training step calls: the model with a loss, under DDP or FSDP2 when W > 1
    group: object = None  # the processes' group for checkpoint writes (`parallelize.checkpoint_group`); None alone
    start: float = field(default_factory=time.perf_counter)
    trunk: Trunk | None = None  # a wsd epochs axis: the trunk states this run starts from and saves

    @classmethod
    def build(cls, trial: Trial, extra_sequences: torch.Tensor | None, batch_loss: BatchLoss | None) -> Run:
        start = time.perf_counter()
        cfg, t = trial.config, trial.config.train
        device = devices.trial_device()
        if device.type == "cuda":
            torch.set_float32_matmul_precision("high")
        train_seqs, val_seqs, vocab_size = load_sequences(trial, device)
        if extra_sequences is not None:
            train_seqs = torch.cat([train_seqs, extra_sequences.to(device)])
        model = build_model(cfg.model, vocab_size, t.seq_len, seed=cfg.member_seed, device=device)
        model.train()
        order = epoch_orders(len(train_seqs), cfg.epochs, cfg.member_seed, device, shuffled=cfg.data_order == "shuffled")
        chunk_tokens = loss_chunk_tokens(t, vocab_size, device.type)
        loss = batch_loss or functools.partial(lm_loss, chunk_tokens=chunk_tokens)
        ranks = Ranks.current()
        shard = use_fsdp(trial, vocab_size, device, ranks.world_size)
        step = parallelize(model, t, device, ranks, shard=shard)
        optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, t, device)  # after FSDP2 replaced the parameters
        micro_batch = micro_batch_size(trial, vocab_size, device, shards=ranks.world_size if shard else 1)
        return cls(
            trial, device, model, optimizer, train_seqs, val_seqs, vocab_size, order, loss, micro_batch, chunk_tokens, ranks, step,
            checkpoint_group(ranks), start,
        )

    @property
    def t(self) -> TrainSpec:
        return self.trial.config.train

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_seqs) / self.t.batch_size)

    @property
    def total_steps(self) -> int:
        return self.trial.config.epochs * self.steps_per_epoch

    def autocast(self):
        return devices.autocast(self.device)

    def checkpointer(self, directory: CheckpointDir, keep: int) -> Checkpointer:
        return Checkpointer(directory, keep=keep, group=self.group)


@dataclass
class TrainState:
    """Everything that changes while training, and all that a checkpoint restores."""

    trained: torch.nn.Module  # the training step (`Run.step`): its state dicts, under DDP or FSDP2 too
    optimizer: torch.optim.Optimizer
    losses: LossWindow
    curves: list[dict] = field(default_factory=list)
    tokens_seen: int = 0
    lr: float = math.nan
    train_loss: float = math.nan
    wall_s_before: float = 0.0  # time of earlier attempts: wall_s counts every attempt
    probe: GradientProbe | None = None  # train.diagnostics: measured at every epoch's end
    total_steps: int = 0  # the run's steps; with an adaptive stop, fixed when the rule stops it
    decay_start: int = 0  # the first step of a wsd run's decay
    stopped_epoch: int | None = None  # the epoch an adaptive stop entered the decay after
    resumed_from_step: int = 0  # the checkpoint (or trunk state) this attempt started from; 0: from scratch

    def set_lr(self, lr: float) -> None:
        self.lr = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def read_losses(self) -> str | None:
        """Read the loss window (a device sync): its mean becomes `train_loss`; the divergence, if any."""
        if not self.losses.count:
            return None
        self.train_loss, error = self.losses.read()
        return error

    def trainer_state(self, wall_s: float) -> StateDict:
        """What a checkpoint holds besides the model's and optimizer's shards (`checkpoint.TRAINER`)."""
        return {
            "losses": self.losses.state_dict(),
            "curves": self.curves,
            "tokens_seen": self.tokens_seen,
            "lr": self.lr,
            "train_loss": self.train_loss,
            "wall_s": wall_s,
            "rng": checkpoint.rng_state(),
            "probe": self.probe.state_dict() if self.probe else None,
            "stopped": None if self.stopped_epoch is None else [self.stopped_epoch, self.decay_start, self.total_steps],
        }

    def load_trainer_state(self, state: StateDict) -> None:
        self.losses.load_state_dict(state["losses"])
        self.curves = state["curves"]
        self.tokens_seen, self.lr, self.train_loss = state["tokens_seen"], state["lr"], state["train_loss"]
        self.wall_s_before = state["wall_s"]
        checkpoint.set_rng_state(state["rng"])
        if self.probe and state.get("probe"):
            self.probe.load_state_dict(state["probe"])
        if state.get("stopped"):
            self.stopped_epoch, self.decay_start, self.total_steps = state["stopped"]

    def save(self, checkpoints: Checkpointer, step: int, wall_s: float) -> None:
        """Checkpoint at `step`: every process its shards, in the background (`dcp_checkpoint.py`)."""
        checkpoints.save(step, shard_state_dicts(self.trained, self.optimizer), self.trainer_state(wall_s))

    def branch(self, trunk: Trunk) -> int:
        """Start from the trunk's state at this run's decay start; 0 when it is gone (from scratch)."""
        return self.resume(trunk.directory, only=trunk.start)

    def resume(self, directory: CheckpointDir, group: object = None, *, only: int | None = None) -> int:
        """Load the newest readable checkpoint (or the one at `only`), written by any number of
        processes; the step to continue from (0: none). One that cannot be read is set aside, with
        a warning, and the one before it tried; one that reads but does not fit this model raises.
        Every process tries the steps rank 0 found (a collective when there are several)."""
        for step in reversed([s for s in agreed(checkpoint.steps(directory), group) if only is None or s == only]):
            shards = shard_state_dicts(self.trained, self.optimizer)
            try:
                trainer = load_checkpoint(directory, step, shards, group=group)
            except Exception as err:  # noqa: BLE001 - truncated, foreign, a refused pickle: the one before
                if group is None or torch.distributed.get_rank() == 0:
                    print(f"scalegrid: warning: {checkpoint.set_aside(directory, step, err)}", file=sys.stderr)
                continue
            load_shard_state_dicts(self.trained, self.optimizer, shards)
            self.load_trainer_state(trainer)
            self.resumed_from_step = step
            return step
        return 0


def agreed(steps: list[int], group: object) -> list[int]:
    """Rank 0's list of checkpoint steps on every process (another may list while rank 0 sets one aside)."""
    if group is None:
        return steps
    shared = [steps]
    torch.distributed.broadcast_object_list(shared, src=0, group=group)
    return shared[0]


def use_fsdp(trial: Trial, vocab_size: int, device: torch.device, world_size: int) -> bool:
    """FSDP2 rather than DDP (`memory.sharded`: `train.parallelism`, or under `auto` when one GPU
    cannot hold the model's training step; never under `auto` on a CPU)."""
    t = trial.config.train
    if world_size == 1 or (t.parallelism == "auto" and device.type != "cuda"):
        return False
    return sharded(trial.config.model, vocab_size, t, gpu_budget(device) if device.type == "cuda" else 0, world_size)


def gpu_budget(device: torch.device) -> int:
    """Bytes this trial may use of its GPU: its share of it (`memory.usable_bytes`)."""
    return usable_bytes(torch.cuda.get_device_properties(device).total_memory / 1024**3, devices.gpu_share())


def micro_batch_size(trial: Trial, vocab_size: int, device: torch.device, shards: int = 1) -> int:
    """Sequences per forward/backward: `train.micro_batch_size`, or under `auto` the whole batch on
    a CPU and on a GPU the largest divisor of the batch whose estimated peak fits this trial's
    share of the GPU's memory (`gpu_memory.py`; raises naming the fix when none does)."""
    t = trial.config.train
    if t.micro_batch_size != "auto":
        return t.micro_batch_size
    if device.type != "cuda":
        return t.batch_size
    return plan_micro_batch(trial.config.model, vocab_size, t, gpu_budget(device), shards=shards).micro_batch


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, t: TrainSpec, device: torch.device):
    return torch.optim.AdamW(
        param_groups(model, weight_decay, decay_embeddings=t.decay_embeddings),
        lr=lr,
        betas=(t.beta1, t.beta2),
        eps=t.eps,
        fused=device.type == "cuda",
    )

"""What is applied to a built model before training, one small function each (torchtitan's order:
activation checkpointing, then compilation, then data parallelism over the trial's processes).

Checkpointing and compilation act on the decoder layers in place, so the model's parameter names
never change: checkpoints and saved models carry neither a `_checkpoint_wrapped_module.` nor an
`_orig_mod.` prefix, and a compiled model saves and loads like an eager one.

A trial of W > 1 processes (Ray Train workers, `resources.workers`) trains one model: every
process builds the same model from the same seed and walks the same batches, each taking its
share of every batch (`Ranks.micro_batches`); the gradients are averaged by DDP or, when the model
is sharded, by FSDP2. Both wrap the `TrainingStep` (the model and its loss as one module), not the
model: their hooks run on a module's forward, and the chunked loss calls the model's parts
(`loss.py`). The loop is the same for one process and for W.

    apply_activation_checkpointing(model)   each layer's activations recomputed in backward
    apply_compile(model)                    torch.compile per decoder layer
    apply_ddp(step)                         gradients all-reduced once per optimizer step
    apply_fsdp(step)                        FSDP2: parameters, gradients and AdamW moments sharded
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch

from scalegrid.spec import TrainSpec


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes that train one trial (one alone: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> Ranks:
        """From torch.distributed's process group (Ray Train sets it up before the loop starts)."""
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def is_main(self) -> bool:
        """The process that writes: checkpoints, the saved model."""
        return self.rank == 0

    def micro_batches(self, batch: torch.Tensor, micro_batch: int) -> list[tuple[torch.Tensor, float]]:
        """This process's share of an optimizer batch in micro-batches, each with its loss's weight.

        The weight W undoes the gradient averaging over the W processes (each loss is already
        divided by the whole batch's tokens), so the summed gradient is the batch's. Every process
        runs the same number of micro-batches (the collectives of DDP and FSDP2 pair up by count):
        one whose share is shorter (the short last batch of an epoch) pads with a weight-0 one.
        """
        if self.world_size == 1:
            return [(micro, 1.0) for micro in batch.split(micro_batch)]
        mine = batch.tensor_split(self.world_size)[self.rank]
        count = math.ceil(math.ceil(len(batch) / self.world_size) / micro_batch)
        micros = [(micro, float(self.world_size)) for micro in mine.split(micro_batch)] if len(mine) else []
        return micros + [(batch[:1], 0.0)] * (count - len(micros))

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """`value` summed over the processes (in place; itself with one process)."""
        if self.world_size > 1:
            torch.distributed.all_reduce(value)
        return value


class TrainingStep(torch.nn.Module):
    """The model with a loss as one module: `step(x, num_tokens, loss)` is `loss(model, x, num_tokens)`.
    What DDP and FSDP2 wrap; its parameters are the model's (`model.` prefixed)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, num_tokens: int, loss: Callable[[torch.nn.Module, torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
        return loss(self.model, x, num_tokens)


def parallelize(model: torch.nn.Module, train: TrainSpec, device: torch.device, ranks: Ranks, *, shard: bool = False) -> torch.nn.Module:
    """Apply what `train` asks to `model` in place; returns the module a training step calls:
    under FSDP2 (`shard`) or DDP over several processes. Build the optimizer after: FSDP2
    replaces the parameters by sharded ones."""
    if train.activation_checkpointing:
        apply_activation_checkpointing(model)
    if compile_enabled(train, device):
        apply_compile(model)
    step = TrainingStep(model)
    if ranks.world_size == 1:
        return step
    return apply_fsdp(step, device, ranks) if shard else apply_ddp(step, device)


def apply_ddp(step: TrainingStep, device: torch.device) -> torch.nn.Module:
    """DDP over the trial's processes (the same initial weights everywhere: built from one seed)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)


def apply_fsdp(step: TrainingStep, device: torch.device, ranks: Ranks) -> torch.nn.Module:
    """FSDP2 (`fully_shard`): each decoder layer one unit (its parameters gathered for its forward
    and backward only), the rest (embeddings, final norm, lm head) the root's. Parameters become
    DTensors sharded over the processes; gradients are reduce-scattered (averaged)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (ranks.world_size,))
    for layer in step.model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(step, mesh=mesh)
    return step


def evaluation_module(step: torch.nn.Module) -> torch.nn.Module:
    """What evaluation calls: the step itself (FSDP2 gathers the parameters in its forward), or
    DDP's inner module (no gradients, nothing to synchronise)."""
    return getattr(step, "module", step)


def is_sharded(step: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(step, FSDPModule)


def gradient_sync(step: torch.nn.Module, enabled: bool):
    """A micro-batch's forward and backward with the gradient reduction on (the last of a batch) or
    off (all before it: their gradients accumulate locally; DDP's `no_sync`, FSDP2's
    `set_requires_gradient_sync`)."""
    if is_sharded(step):
        step.set_requires_gradient_sync(enabled)
        return contextlib.nullcontext()
    if enabled or not hasattr(step, "no_sync"):
        return contextlib.nullcontext()
    return step.no_sync()


def full_tensor(value: torch.Tensor) -> torch.Tensor:
    """A sharded DTensor's whole value (a gradient norm under FSDP2), a plain tensor as it is."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value


def checkpoint_group(ranks: Ranks):
    """A process group of the trial's processes for checkpoint writes (None for one process): gloo,
    since DCP writes in the background over a CPU backend (NCCL trains on GPUs), and a group of its
    own, so a background write's collectives never interleave with training's. A collective."""
    return torch.distributed.new_group(backend="gloo") if ranks.world_size > 1 else None


def shard_state_dicts(step: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    """{"model", "optimizer"} as DCP saves and loads them: this process's DTensor shards under
    FSDP2, whole tensors otherwise; keyed by the training step's names, which one process, DDP and
    FSDP2 share (so a checkpoint of one loads into another). Views, not copies."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(step, optimizer)
    return {"model": model_state, "optimizer": optim_state}


def load_shard_state_dicts(step: torch.nn.Module, optimizer: torch.optim.Optimizer, shards: dict[str, dict]) -> None:
    """Put what `shard_state_dicts` gave (filled from a checkpoint) into the model and optimizer."""
    from torch.distributed.checkpoint.state_dict import set_state_dict

    set_state_dict(step, optimizer, model_state_dict=shards["model"], optim_state_dict=shards["optimizer"])


def full_model_state(step: torch.nn.Module) -> dict:
    """The model's weights of a sharded step, whole, on CPU, on rank 0 (empty elsewhere), keyed by
    the model's own names: what the final Hugging Face weights are saved from. A collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(step, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k.removeprefix("model."): v for k, v in state.items()}


def compile_enabled(train: TrainSpec, device: torch.device) -> bool:
    """`train.compile`, or unset: on a GPU (where it pays), off on a CPU (Inductor's compile takes
    longer than a small CPU trial)."""
    return device.type == "cuda" if train.compile is None else train.compile


def apply_activation_checkpointing(model: torch.nn.Module) -> None:
    """Keep only each decoder layer's input and recompute the layer in backward (non-reentrant).

    Hugging Face's own per-layer checkpointing: it checkpoints each layer's `forward`, so module
    hooks (FSDP2's) stay outside the recomputed region."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # its name since transformers 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def apply_compile(model: torch.nn.Module) -> None:
    """torch.compile each decoder layer in place (`Module.compile`: no wrapper, no renamed weights).

    Per layer, not the whole model: the layers are identical, so one graph serves them all and
    compile time does not grow with depth. The batch dimension is dynamic from the first call
    (marked on the embeddings that enter the first layer), so the short last batch of an epoch
    reuses the graph instead of compiling again; only a micro-batch of exactly one sequence, a
    size dynamo always specialises, compiles once more. Evaluation runs eagerly
    (`evaluation_stance`).
    """
    model.get_input_embeddings().register_forward_hook(_batch_dimension_is_dynamic)
    for layer in model.model.layers:
        layer.compile()


def _batch_dimension_is_dynamic(module: torch.nn.Module, args, output: torch.Tensor) -> None:
    torch._dynamo.maybe_mark_dynamic(output, 0)


def evaluation_stance():
    """Evaluate eagerly: a no-grad graph would be a second compilation for a small share of the work.
    (torch < 2.6 has no stances: there evaluation compiles its own graph once.)"""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance else contextlib.nullcontext()

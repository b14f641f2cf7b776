"""What is applied to a built model before training, one small function each (torchtitan's order:
activation checkpointing, then compilation; sharding over GPUs will come after them).

Both act on the decoder layers in place, so the model's parameter names never change: checkpoints
and saved models carry neither a `_checkpoint_wrapped_module.` nor an `_orig_mod.` prefix, and a
compiled model saves and loads like an eager one.

    apply_activation_checkpointing(model)   each layer's activations recomputed in backward
    apply_compile(model)                    torch.compile per decoder layer
"""

from __future__ import annotations

import contextlib

import torch

from scalegrid.spec import TrainSpec


def parallelize(model: torch.nn.Module, train: TrainSpec, device: torch.device) -> torch.nn.Module:
    if train.activation_checkpointing:
        apply_activation_checkpointing(model)
    if compile_enabled(train, device):
        apply_compile(model)
    return model


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

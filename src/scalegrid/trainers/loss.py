"""The language-model loss without the batch's logits.

A micro-batch of b sequences of s tokens predicts b (s - 1) tokens over a vocabulary of V: at the
paper's 64 x 4,096 and V = 128,256 that is 3.4e10 logits, 63 GiB in bf16 and twice that after
the fp32 cast the loss needs. Here the lm head and the cross-entropy run over `chunk_tokens`
positions at a time, each chunk under activation checkpointing (its logits are recomputed in
backward, never kept) and upcast to fp32 per chunk. On a GPU with `liger-kernel` installed (the
`gpu` extra) its fused linear-cross-entropy kernel does the same without the recomputation.
A micro-batch whose logits fit in one chunk takes Hugging Face's own loss, unchanged.

Every path returns the summed token cross-entropy divided by `num_tokens`, the predicted tokens
of the whole optimizer batch, so the micro-batches' losses add up to the batch's mean exactly,
an uneven last micro-batch included:

    loss = lm_loss(model, micro, predicted_tokens(batch), chunk_tokens=512)
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def predicted_tokens(x: torch.Tensor) -> int:
    """Next-token targets in a batch of sequences: all but each sequence's first token."""
    return x.shape[0] * (x.shape[1] - 1)


def lm_loss(model: torch.nn.Module, x: torch.Tensor, num_tokens: int, *, chunk_tokens: int) -> torch.Tensor:
    """Summed next-token cross-entropy of `x` [b, s] divided by `num_tokens`; fp32 scalar."""
    if predicted_tokens(x) <= chunk_tokens:  # the logits are one chunk: Hugging Face's loss as it always was
        return model(input_ids=x, labels=x, num_items_in_batch=num_tokens).loss
    hidden = model.model(input_ids=x).last_hidden_state[:, :-1].reshape(-1, model.config.hidden_size)
    labels = x[:, 1:].reshape(-1)
    weight = model.get_output_embeddings().weight
    if hidden.is_cuda and fused_linear_cross_entropy() is not None:
        dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else hidden.dtype
        return fused_linear_cross_entropy()(weight.to(dtype), hidden.to(dtype), labels) / num_tokens
    return chunked_cross_entropy(hidden, weight, labels, chunk_tokens) / num_tokens


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_tokens: int) -> torch.Tensor:
    """sum_t CE(hidden[t] @ weight.T, labels[t]), `chunk_tokens` rows at a time; at least fp32.

    `split` (not slicing) so that backward gathers the chunks' input gradients in one
    concatenation instead of adding a zero-padded full-size gradient per chunk.
    """
    total = None
    for h, y in zip(hidden.split(chunk_tokens), labels.split(chunk_tokens)):
        if torch.is_grad_enabled():
            loss = checkpoint(_chunk_loss, h, weight, y, use_reentrant=False)
        else:
            loss = _chunk_loss(h, weight, y)
        total = loss if total is None else total + loss
    return total


def _chunk_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One chunk's summed cross-entropy. The head's weight is cast here, per chunk, rather than by
    autocast: autocast would cast it once for all chunks and then add the chunks' gradients of
    that one bf16 copy in bf16; cast per chunk, they add up in fp32 on the fp32 weight."""
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    with torch.autocast(device, enabled=False):
        logits = F.linear(hidden.to(dtype), weight.to(dtype))
        return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), labels, reduction="sum")


@torch.no_grad()
def next_token_logprobs(model: torch.nn.Module, x: torch.Tensor, chunk_tokens: int) -> torch.Tensor:
    """log p(x[t+1] | x[:t+1]) of every predicted token of `x` [b, s], flattened [b (s - 1)], fp32;
    the lm head and log-softmax over `chunk_tokens` positions at a time (ensemble evaluation)."""
    if predicted_tokens(x) <= chunk_tokens:  # one chunk: the whole logits, as ensemble evaluation always did
        logits = model(input_ids=x).logits[:, :-1].float()
        return torch.log_softmax(logits, dim=-1).gather(-1, x[:, 1:, None]).squeeze(-1).flatten()
    hidden = model.model(input_ids=x).last_hidden_state[:, :-1].reshape(-1, model.config.hidden_size)
    weight, labels = model.get_output_embeddings().weight, x[:, 1:].reshape(-1)
    return torch.cat([
        torch.log_softmax(F.linear(h, weight).float(), dim=-1).gather(-1, y[:, None]).squeeze(-1)
        for h, y in zip(hidden.split(chunk_tokens), labels.split(chunk_tokens))
    ])


@functools.cache
def fused_linear_cross_entropy():
    """liger-kernel's fused linear cross-entropy (summed) when it is installed, else None."""
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:  # not installed, or no triton (CPU-only machines)
        return None
    return LigerFusedLinearCrossEntropyLoss(reduction="sum")

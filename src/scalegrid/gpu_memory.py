"""Peak GPU memory of one lm trial from its shape alone (no torch): what `scalegrid plan` shows,
and how `train.micro_batch_size: auto` picks a micro-batch.

An optimizer step of batch B split into micro-batches of m sequences of s tokens holds, at its
peak (the backward of its last micro-batch, when the accumulated gradients and that micro-batch's
saved activations are alive together):

    weights        4 N       fp32 parameters (bf16 autocast computes in bf16, keeps fp32 weights)
    gradients      4 N       fp32, accumulated over the micro-batches
    optimizer      8 N       AdamW's two fp32 moments
    weight copies  2 M       autocast's bf16 casts of the M matmul weights, cached for the step (GPU)
    activations    m s ((L + 1) a + e)   saved for backward, a bytes per token and layer (e outside
                             them), and the gradients of the one layer backward is working on
    loss chunk     c V b     one chunk of c positions' logits and gradients, b bytes per logit

`a` counts the tensors a Hugging Face Llama decoder layer saves for backward, eager (the table in
`layer_bytes_per_token`). Under activation checkpointing a layer keeps only its input (4 h bytes
per token) and one layer at a time is recomputed, so `(L + 1) a` becomes `L 4h + 2a`. torch.compile's
partitioner saves less than eager (it recomputes pointwise ops), so on a GPU the figure is an
upper bound there; on a CPU (float32) `tests/trainers/test_memory_estimate.py` holds it within
25% of the measured peak.

A GPU never lends all of its memory: `usable_bytes` leaves 1 GiB for the CUDA context and
kernels' workspaces and 5% for the caching allocator's fragmentation.

    >>> plan_micro_batch(preset("llama-600m"), 128256, train, usable_bytes(80))   # -> MemoryEstimate
"""

from __future__ import annotations

from dataclasses import dataclass

from scalegrid.shapes import LlamaShape
from scalegrid.spec import TrainSpec

GIB = 1024**3
CUDA_RESERVED_BYTES = 1 * GIB  # the CUDA context, cuBLAS and attention workspaces: outside torch's allocator
ALLOCATOR_SLACK = 0.05  # fragmentation of the caching allocator
LOSS_BYTES_PER_LOGIT = {"float32": 12, "bfloat16": 14}  # log-probs, their gradient, the logits' gradient (+ bf16 logits)
# Logits per loss chunk unless `train.loss_chunk_tokens` says otherwise: on a CPU few (memory:
# 261 positions at vocab 128,256, ~0.4 GB), on a GPU more (each chunk also writes a full-size
# gradient of the lm head, so small chunks cost time: 2,092 positions at vocab 128,256, ~3.5 GiB).
CHUNK_LOGITS = {"cpu": 2**25, "cuda": 2**28}
# GB of memory by Ray's accelerator type (the `accelerator_type:` resource of a node); a plain
# "A100" may be either model, so it counts as the smaller.
GPU_MEMORY_GB = {
    "H200": 141, "H100": 80, "A100-80G": 80, "A100-40G": 40, "A100": 40, "L40S": 48, "A10G": 24, "L4": 24, "T4": 16, "V100": 16,
}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes at the peak of one optimizer step, by what holds them."""

    micro_batch: int
    weights: int
    gradients: int
    optimizer: int
    weight_copies: int
    activations: int  # with this trial's activation checkpointing setting
    activations_if_checkpointed: int
    activations_if_not_checkpointed: int
    loss_chunk: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.weight_copies + self.activations + self.loss_chunk

    @property
    def states(self) -> int:
        """What no micro-batch size changes: weights, gradients, optimizer state, weight copies."""
        return self.weights + self.gradients + self.optimizer + self.weight_copies


def layer_bytes_per_token(shape: LlamaShape, dtype: str) -> int:
    """Bytes one decoder layer saves for backward per token (Hugging Face Llama, eager, SDPA attention).

    Autograd saves a tensor only for an input that needs its gradient (so `q * cos` keeps `cos`,
    not `q`), and SDPA's output is laid out so that the output projection reads it without a
    copy. Per token, with kv = kv_heads x head_dim (the float32 column was counted with
    `saved_tensors_hooks` on a real layer):

                    float32 (CPU)                         bf16 autocast (GPU; residual and norms stay fp32)
        input norm  x, x/rms, its output          12h     x, x/rms 8h; bf16 casts for q, k, v 6h       14h
        attention   q, k, v, output               8h+8kv  q, k cast for SDPA, v, output             4h+4kv
        post norm   x, x/rms, its output          12h     x, x/rms 8h; casts for gate and up 4h        12h
        MLP         gate, up, silu, their product 16i     the same in bf16                              8i
    """
    h, i = shape.hidden_size, shape.intermediate_size
    kv = shape.kv_heads * (h // shape.num_heads)
    logsumexp = 4 * shape.num_heads  # SDPA keeps one float per head and query
    if dtype == "float32":
        return 32 * h + 8 * kv + 16 * i + logsumexp
    return 30 * h + 4 * kv + 8 * i + logsumexp


def step_memory(
    shape: LlamaShape,
    vocab_size: int,
    seq_len: int,
    micro_batch: int,
    *,
    activation_checkpointing: bool,
    loss_chunk_tokens: int,
    dtype: str = "bfloat16",
    shards: int = 1,
) -> MemoryEstimate:
    """The peak of one optimizer step at `micro_batch` sequences per forward/backward.

    `dtype` is what the matmuls compute in: "bfloat16" (autocast on a GPU) or "float32" (CPU).
    `shards`: the processes FSDP2 shards weights, gradients and AdamW state over (the bf16 weight
    copies are counted whole: a conservative bound on the layers gathered at once).
    """
    n = shape.num_params(vocab_size)
    norms = (2 * shape.num_layers + 1) * shape.hidden_size
    matmul = shape.num_params(vocab_size, non_embedding=True) - norms + vocab_size * shape.hidden_size
    tokens = micro_batch * seq_len
    layer = tokens * layer_bytes_per_token(shape, dtype)
    outside = tokens * (12 * shape.hidden_size + 8)  # the final norm's saved tensors, the lm head's input, token ids
    # Backward works on one layer at a time, with gradients about the size of what it saved;
    # under checkpointing that layer's activations are first recomputed.
    checkpointed = shape.num_layers * tokens * 4 * shape.hidden_size + 2 * layer + outside
    not_checkpointed = (shape.num_layers + 1) * layer + outside
    chunk = min(loss_chunk_tokens, micro_batch * (seq_len - 1))
    return MemoryEstimate(
        micro_batch=micro_batch,
        weights=4 * n // shards,
        gradients=4 * n // shards,
        optimizer=8 * n // shards,
        weight_copies=2 * matmul if dtype == "bfloat16" else 0,
        activations=checkpointed if activation_checkpointing else not_checkpointed,
        activations_if_checkpointed=checkpointed,
        activations_if_not_checkpointed=not_checkpointed,
        loss_chunk=chunk * vocab_size * LOSS_BYTES_PER_LOGIT[dtype],
    )


def loss_chunk_tokens(train: TrainSpec, vocab_size: int, device_type: str) -> int:
    """Positions per chunk of the lm head and cross-entropy (`trainers/loss.py`)."""
    return train.loss_chunk_tokens or max(1, CHUNK_LOGITS[device_type] // vocab_size)


def usable_bytes(gpu_memory_gb: float, gpus: float = 1.0) -> int:
    """What a trial holding `gpus` (a fraction shares one GPU) of a GPU with this much memory may plan for."""
    share = gpu_memory_gb * GIB * min(gpus, 1.0)
    return int(share * (1 - ALLOCATOR_SLACK) - CUDA_RESERVED_BYTES * min(gpus, 1.0))


def micro_batch_candidates(batch_size: int) -> list[int]:
    """The divisors of the batch, largest first: every micro-batch of a full batch has one shape
    (one compiled graph, no idle remainder)."""
    return [m for m in range(batch_size, 0, -1) if batch_size % m == 0]


class DoesNotFit(ValueError):
    """The trial does not fit at any micro-batch; the message names the fix (one line)."""


def sharded(shape: LlamaShape, vocab_size: int, train: TrainSpec, budget_bytes: int, workers: int) -> bool:
    """FSDP2 rather than DDP for a trial of `workers` processes: `train.parallelism`, or under
    `auto` when one GPU's `budget_bytes` cannot hold the step unsharded at any micro-batch."""
    if workers == 1:
        return False
    if train.parallelism != "auto":
        return train.parallelism == "fsdp"
    try:
        plan_micro_batch(shape, vocab_size, train, budget_bytes)
    except DoesNotFit:
        return True
    return False


def plan_micro_batch(shape: LlamaShape, vocab_size: int, train: TrainSpec, budget_bytes: int, shards: int = 1) -> MemoryEstimate:
    """The micro-batch a trial uses within `budget_bytes` and its peak: `micro_batch_size` as set,
    or under `auto` the largest divisor of the batch that fits. Raises `DoesNotFit` naming the fix."""
    def at(m: int, checkpointing: bool = train.activation_checkpointing) -> MemoryEstimate:
        return step_memory(shape, vocab_size, train.seq_len, m, activation_checkpointing=checkpointing,
                           loss_chunk_tokens=loss_chunk_tokens(train, vocab_size, "cuda"), shards=shards)

    if train.micro_batch_size != "auto":
        chosen = at(train.micro_batch_size)
        if chosen.total <= budget_bytes:
            return chosen
        smaller = [m for m in micro_batch_candidates(train.batch_size) if m < train.micro_batch_size]
        fitting = next((m for m in smaller if at(m).total <= budget_bytes), None)
        if fitting is not None:
            raise DoesNotFit(
                f"train.micro_batch_size {train.micro_batch_size} needs {gb(chosen.total)} of the {gb(budget_bytes)} "
                f"usable; use {fitting} or auto"
            )
    else:
        for m in micro_batch_candidates(train.batch_size):
            if at(m).total <= budget_bytes:
                return at(m)
    one = at(1)
    if not train.activation_checkpointing and at(1, True).total <= budget_bytes:
        best = next(m for m in micro_batch_candidates(train.batch_size) if at(m, True).total <= budget_bytes)
        raise DoesNotFit(
            f"needs {gb(one.total)} at micro-batch 1, more than the {gb(budget_bytes)} usable; "
            f"set train.activation_checkpointing: true (then micro-batch {best} needs {gb(at(best, True).total)})"
        )
    raise DoesNotFit(
        f"needs {gb(one.total)} at micro-batch 1 (weights, gradients and AdamW state alone {gb(one.states)}), "
        f"more than the {gb(budget_bytes)} usable of one GPU; shard it over several: resources.workers: N with "
        "gpus_per_worker: 1 (FSDP2), or use a GPU with more memory or a smaller model"
    )


def gb(num_bytes: int) -> str:
    return f"{num_bytes / GIB:.1f} GiB"

"""The memory-light loss: the same loss and gradients as Hugging Face's, without the batch's logits."""

from __future__ import annotations

import pytest
import torch

from scalegrid.gpu_memory import loss_chunk_tokens
from scalegrid.shapes import LlamaShape
from scalegrid.spec import TrainSpec
from scalegrid.trainers.loss import fused_linear_cross_entropy, lm_loss, next_token_logprobs, predicted_tokens
from scalegrid.trainers.model import build_model

SHAPE = LlamaShape(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=160, num_kv_heads=2)


def grads_after(model, loss_fn):
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def reference_loss(model, x):
    """Mean next-token cross-entropy from the whole batch's logits, in the model's dtype (Hugging
    Face's own loss casts the logits to float32 first)."""
    logits = model(input_ids=x).logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))


@pytest.mark.parametrize("chunk", [1, 37, 100])  # one position per chunk, uneven chunks, several sequences
def test_chunked_loss_and_gradients_equal_the_plain_path(chunk):
    model = build_model(SHAPE, 1000, 48, seed=0).double()
    x = torch.randint(1000, (3, 48), generator=torch.Generator().manual_seed(0))
    plain, plain_grads = grads_after(model, lambda m: reference_loss(m, x))
    loss, grads = grads_after(model, lambda m: lm_loss(m, x, predicted_tokens(x), chunk_tokens=chunk))
    assert abs(loss.item() - plain.item()) <= 1e-10 * plain.item()
    for g, p in zip(grads, plain_grads):
        assert (g - p).abs().max() <= 1e-10 * p.abs().max()
    with torch.no_grad():  # evaluation: chunks without checkpointing
        assert abs(lm_loss(model, x, predicted_tokens(x), chunk_tokens=chunk).item() - plain.item()) <= 1e-10 * plain.item()


def test_logits_of_one_chunk_take_hugging_faces_loss_unchanged():
    """So a trial whose batches fit in one chunk (every CPU-sized one) computes bit for bit what it did."""
    model = build_model(SHAPE, 1000, 48, seed=0)
    x = torch.randint(1000, (3, 48), generator=torch.Generator().manual_seed(0))
    plain, plain_grads = grads_after(model, lambda m: m(input_ids=x, labels=x).loss)
    loss, grads = grads_after(model, lambda m: lm_loss(m, x, predicted_tokens(x), chunk_tokens=3 * 47))
    assert torch.equal(loss, plain) and all(torch.equal(g, p) for g, p in zip(grads, plain_grads))


def test_micro_batch_losses_add_up_to_the_batch_mean():
    model = build_model(SHAPE, 1000, 48, seed=0).double()
    x = torch.randint(1000, (5, 48), generator=torch.Generator().manual_seed(1))
    whole = reference_loss(model, x)
    parts = sum(lm_loss(model, micro, predicted_tokens(x), chunk_tokens=40) for micro in x.split(2))  # 2 + 2 + 1
    assert abs(parts.item() - whole.item()) <= 1e-10 * whole.item()


def test_no_fused_kernel_on_a_cpu_machine():
    """liger-kernel needs triton (CUDA/ROCm): here the chunked path is the one that runs."""
    assert fused_linear_cross_entropy() is None or torch.cuda.is_available()


def test_chunked_loss_needs_a_third_of_the_memory_at_the_papers_vocabulary(peak_bytes):
    """Batch 4 x 512 at vocab 128,256: the plain path holds 2,044 x 128,256 logits and their
    gradients (~3 GiB); the chunked path one chunk of the default size at a time."""
    vocab = 128_256
    chunk = loss_chunk_tokens(TrainSpec(batch_size=4, seq_len=512), vocab, "cpu")
    job = {"kind": "loss", "vocab": vocab, "batch": 4, "seq": 512,
           "shape": {"hidden_size": 256, "num_layers": 2, "num_heads": 4, "intermediate_size": 768}}
    plain = peak_bytes(**job, chunk=10**9)
    chunked = peak_bytes(**job, chunk=chunk)
    assert plain > 2.5 * 2**30  # the logits alone are 1 GiB
    assert chunked <= plain / 3, (chunked / 2**20, plain / 2**20)


def test_ensemble_log_probabilities_in_chunks_equal_the_whole_logits():
    model = build_model(SHAPE, 1000, 48, seed=0).double().eval()
    x = torch.randint(1000, (3, 48), generator=torch.Generator().manual_seed(2))
    whole = next_token_logprobs(model, x, chunk_tokens=10**6)
    assert whole.shape == (3 * 47,)
    assert torch.allclose(next_token_logprobs(model, x, chunk_tokens=37), whole, rtol=0, atol=1e-10)

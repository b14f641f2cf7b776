"""The memory plan's estimate against the peak measured on a CPU, and the micro-batch it picks."""

from __future__ import annotations

import pytest

from scalegrid.gpu_memory import DoesNotFit, loss_chunk_tokens, plan_micro_batch, step_memory, usable_bytes
from scalegrid.shapes import LlamaShape, preset
from scalegrid.spec import TrainSpec

# (shape, vocab, batch x seq, micro-batch): activations dominate the first, the vocabulary's
# weights, their AdamW state and the loss chunk the second.
MEASURED = [
    ({"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 768}, 2048, 8, 512, 8),
    ({"hidden_size": 256, "num_layers": 2, "num_heads": 8, "intermediate_size": 768, "num_kv_heads": 2}, 128_256, 4, 512, 4),
]


@pytest.mark.parametrize("sizes, vocab, batch, seq, micro", MEASURED)
def test_estimate_is_within_a_quarter_of_the_measured_peak(sizes, vocab, batch, seq, micro, peak_bytes):
    """Two AdamW steps of real float32 training on a CPU: weights, gradients, AdamW moments,
    activations and the loss chunk, against the process's peak resident memory."""
    chunk = loss_chunk_tokens(TrainSpec(batch_size=batch, seq_len=seq), vocab, "cpu")
    measured = peak_bytes(kind="step", shape=sizes, vocab=vocab, batch=batch, seq=seq, micro=micro, chunk=chunk, checkpointing=False)
    estimate = step_memory(LlamaShape(**sizes), vocab, seq, micro, activation_checkpointing=False,
                           loss_chunk_tokens=chunk, dtype="float32")
    assert abs(estimate.total - measured) <= 0.25 * measured, (estimate, measured / 2**20)


def test_checkpointing_keeps_a_layer_input_instead_of_its_activations():
    shape, train = preset("llama-600m"), TrainSpec(batch_size=64, seq_len=4096)
    plain = step_memory(shape, 128_256, 4096, 8, activation_checkpointing=False, loss_chunk_tokens=2048)
    checkpointed = step_memory(shape, 128_256, 4096, 8, activation_checkpointing=True, loss_chunk_tokens=2048)
    assert checkpointed.activations < plain.activations / 4
    assert checkpointed.states == plain.states and plain.weights == 4 * shape.num_params(128_256)
    assert plan_micro_batch(shape, 128_256, train, usable_bytes(80)).micro_batch in (1, 2, 4, 8, 16, 32, 64)


def test_auto_takes_the_largest_divisor_of_the_batch_that_fits():
    shape, train = preset("llama-300m"), TrainSpec(batch_size=64, seq_len=4096)
    chosen = plan_micro_batch(shape, 128_256, train, usable_bytes(80))
    assert 64 % chosen.micro_batch == 0 and chosen.total <= usable_bytes(80)
    if chosen.micro_batch < 64:
        twice = step_memory(shape, 128_256, 4096, 2 * chosen.micro_batch, activation_checkpointing=False,
                            loss_chunk_tokens=loss_chunk_tokens(train, 128_256, "cuda"))
        assert twice.total > usable_bytes(80)


def test_what_does_not_fit_names_the_fix():
    train = TrainSpec(batch_size=64, seq_len=4096)
    with pytest.raises(DoesNotFit, match="set train.activation_checkpointing: true"):
        plan_micro_batch(preset("llama-1.4b"), 128_256, train, usable_bytes(32))
    with pytest.raises(DoesNotFit, match="shard it over several: resources.workers: N"):
        plan_micro_batch(preset("llama-1.4b"), 128_256, train, usable_bytes(24))
    with pytest.raises(DoesNotFit, match="use 4 or auto"):
        plan_micro_batch(preset("llama-300m"), 128_256, train.model_copy(update={"micro_batch_size": 64}), usable_bytes(24))


def test_a_shared_gpu_is_a_share_of_its_memory():
    assert usable_bytes(80, 0.5) == pytest.approx(usable_bytes(80) / 2, rel=0.01)

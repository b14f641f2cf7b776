"""A `LlamaShape` as a real `transformers` Llama, built from a config (never downloaded).

    model = build_model(llama_200k(), vocab_size=257, seq_len=64, seed=0)
    count_params(model) == (shape.num_params(257), shape.num_params(257, non_embedding=True))

Non-embedding parameters exclude the input embedding and the output head, as in
`LlamaShape.num_params(non_embedding=True)` (Kaplan et al.'s N); tests hold the two equal.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from scalegrid.shapes import LlamaShape


def llama_config(shape: LlamaShape, vocab_size: int, seq_len: int, *, attn_implementation: str = "sdpa") -> LlamaConfig:
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=seq_len,
        tie_word_embeddings=shape.tie_embeddings,
        initializer_range=0.02,
        rms_norm_eps=1e-5,
        use_cache=False,  # training only: no KV cache
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    config._attn_implementation = attn_implementation
    return config


def build_model(
    shape: LlamaShape,
    vocab_size: int,
    seq_len: int,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
) -> LlamaForCausalLM:
    """A freshly initialised model, its weights drawn on `device` from `seed` (fp32; autocast does bf16).

    `device="meta"` builds the structure without memory, for counting the parameters of big shapes.
    """
    config = llama_config(shape, vocab_size, seq_len, attn_implementation=attn_implementation)
    torch.manual_seed(seed)  # seeds the CPU and every CUDA generator: the init is the seed's
    with torch.device(device):
        model = LlamaForCausalLM(config)
    return model


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, non-embedding parameters: without the input embedding and the output head)."""
    total = sum(p.numel() for p in model.parameters())  # parameters() counts a tied weight once
    embedding_weights = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    embeddings = sum(p.numel() for p in model.parameters() if id(p) in embedding_weights)
    return total, total - embeddings


def param_groups(model: torch.nn.Module, weight_decay: float, *, decay_embeddings: bool = True) -> list[dict]:
    """AdamW groups: every matrix decays (the output head included), vectors do not, and the input
    embedding does unless `decay_embeddings` is False.

    "Pre-training under infinite compute" trains with Levanter's default mask, which leaves out
    norms, biases and embedding modules (its lm head is a Linear and decays): that is
    `decay_embeddings=False` (`train.decay_embeddings: false`). scalegrid decayed the embedding
    before that knob existed, as nanoGPT does, and keeps doing so by default so that existing
    results keep their meaning. RMSNorm gains (1-D) never decay: shrinking a gain toward 0 is not
    a simpler function, only a rescaled one.
    """
    embedding = model.get_input_embeddings().weight
    trainable = [p for p in model.parameters() if p.requires_grad]
    matrices = [p for p in trainable if p.dim() >= 2 and (decay_embeddings or p is not embedding)]
    decayed = {id(p) for p in matrices}
    rest = [p for p in trainable if id(p) not in decayed]
    return [{"params": matrices, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]

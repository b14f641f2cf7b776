"""The real transformers Llama has exactly the parameters that presets.py counts."""

from __future__ import annotations

import pytest
import torch

from scalegrid.trainers.model import build_model, count_params, param_groups
from scalegrid.shapes import PAPER_PRESETS, PAPER_VOCAB_SIZE, PRESETS, LlamaShape


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("vocab_size", [257, 1024, 50257])
def test_param_counts_match_preset_arithmetic(name, vocab_size):
    shape = PRESETS[name]()
    if not isinstance(shape, LlamaShape):
        pytest.skip("not a Llama shape")
    big = shape.num_params(vocab_size) > 20_000_000
    model = build_model(shape, vocab_size, seq_len=64, device="meta" if big else "cpu")
    assert count_params(model) == (shape.num_params(vocab_size), shape.num_params(vocab_size, non_embedding=True))


@pytest.mark.parametrize("shape", [
    LlamaShape(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, num_kv_heads=2),
    LlamaShape(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, tie_embeddings=True),
])
def test_grouped_query_and_tied_shapes(shape):
    model = build_model(shape, 300, seq_len=32)
    assert count_params(model) == (shape.num_params(300), shape.num_params(300, non_embedding=True))


def test_built_from_seed_on_the_device():
    shape = PRESETS["llama-50k"]()
    a, b, c = (build_model(shape, 257, 32, seed=s) for s in (0, 0, 1))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)
    assert a.config._attn_implementation == "sdpa" and a.config.use_cache is False


def test_every_matrix_decays_and_no_vector_does():
    model = build_model(PRESETS["llama-50k"](), 257, 32)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.layers.0.mlp.up_proj.weight"} <= decayed
    assert all("norm" in names[id(p)] for p in no_decay["params"]) and no_decay["params"]
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


PAPER_PARAMS = {"llama-150m": 154.1e6, "llama-300m": 299.6e6, "llama-600m": 602.5e6, "llama-1.4b": 1.431e9}


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_paper_presets_have_the_papers_shapes_and_parameter_counts(name):
    """Kim et al. 2025 (its code's experiments/llama.py) at the Llama-3 vocabulary of 128,256."""
    shape = PRESETS[name]()
    assert shape.num_params(PAPER_VOCAB_SIZE) == pytest.approx(PAPER_PARAMS[name], rel=0.005)
    model = build_model(shape, PAPER_VOCAB_SIZE, seq_len=4096, device="meta")
    assert count_params(model)[0] == shape.num_params(PAPER_VOCAB_SIZE)
    config = model.config
    assert config.rope_parameters["rope_theta"] == 10_000 and config.rms_norm_eps == 1e-5
    assert config.hidden_act == "silu" and not config.tie_word_embeddings


def test_the_papers_mask_leaves_the_input_embedding_undecayed():
    """Levanter's default mask: norms and embedding modules do not decay; the lm head (a Linear) does."""
    model = build_model(PRESETS["llama-50k"](), 257, 32)
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = param_groups(model, 0.1, decay_embeddings=False)
    assert "model.embed_tokens.weight" not in {names[id(p)] for p in decay["params"]}
    assert {"lm_head.weight", "model.layers.0.self_attn.q_proj.weight"} <= {names[id(p)] for p in decay["params"]}
    assert {names[id(p)] for p in no_decay["params"]} == {n for n, p in model.named_parameters() if "norm" in n} | {"model.embed_tokens.weight"}

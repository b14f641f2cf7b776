"""Model shapes by name, and the scaling arithmetic that lives on a shape.

A shape is plain numbers (no torch): `scalegrid plan` counts parameters and FLOPs from it without
building a model. `trainers/model.py` turns an `LlamaShape` into a real `transformers` Llama.

The paper-sized shapes are those of "Pre-training under infinite compute" (its code's llama_150m /
300m / 600m / 1.4b); the small ones exist so that a CPU can train them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

# A shape is validated when it is made, from a preset, a spec's explicit sizes or a stored config:
# strict types field by field (a bool or "64" is not a size; a dict of sizes still makes a shape)
# and ranges well past any model a cluster trains.
_SHAPE = ConfigDict(extra="forbid")
MAX_WIDTH = 1 << 17  # hidden and intermediate sizes (Llama 3 405B: 16,384 and 53,248)
MAX_LAYERS_OR_HEADS = 1024


@dataclass(frozen=True, kw_only=True, config=_SHAPE)
class LlamaShape:
    hidden_size: int = Field(ge=1, le=MAX_WIDTH, strict=True)
    num_layers: int = Field(ge=1, le=MAX_LAYERS_OR_HEADS, strict=True)
    num_heads: int = Field(ge=1, le=MAX_LAYERS_OR_HEADS, strict=True)
    intermediate_size: int = Field(ge=1, le=MAX_WIDTH, strict=True)
    num_kv_heads: int | None = Field(None, ge=1, le=MAX_LAYERS_OR_HEADS, strict=True)  # None: as many as num_heads (no GQA)
    tie_embeddings: bool = Field(False, strict=True)

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.kv_heads < 1 or self.num_heads % self.kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not divisible by num_kv_heads {self.kv_heads}")

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    def num_params(self, vocab_size: int, *, non_embedding: bool = False) -> int:
        """Parameters of the Llama model built from this shape (checked against the real model in tests)."""
        h, kv_dim = self.hidden_size, self.kv_heads * (self.hidden_size // self.num_heads)
        attention = 2 * h * h + 2 * h * kv_dim  # q, o and k, v projections, no biases
        mlp = 3 * h * self.intermediate_size  # gate, up, down
        per_layer = attention + mlp + 2 * h  # two RMSNorm weights
        body = self.num_layers * per_layer + h  # final norm
        if non_embedding:
            return body
        embeddings = vocab_size * h * (1 if self.tie_embeddings else 2)
        return body + embeddings

    def flops_per_token(self, vocab_size: int, seq_len: int) -> int:
        """Training FLOPs per token: 6 x (matmul parameters) plus attention scores (Kaplan et al. 2020).

        Matmul parameters are the non-embedding ones plus the output head (the input embedding
        is a lookup); attention adds 6 * layers * seq_len * hidden per token for QK^T and AV.
        """
        matmul_params = self.num_params(vocab_size, non_embedding=True) + vocab_size * self.hidden_size
        return 6 * matmul_params + 6 * self.num_layers * seq_len * self.hidden_size

    def as_dict(self) -> dict:
        return {**asdict(self), "num_kv_heads": self.kv_heads}


@dataclass(frozen=True, kw_only=True, config=_SHAPE)
class LinregShape:
    """Over-parameterised linear regression: the model is a weight vector of `dims` entries."""

    dims: int = Field(ge=1, le=1 << 24, strict=True)  # 64 MiB per float32 vector; the trainer holds a few

    def num_params(self, vocab_size: int = 0, *, non_embedding: bool = False) -> int:
        return self.dims

    def flops_per_token(self, vocab_size: int = 0, seq_len: int = 1) -> int:
        return 6 * self.dims  # one sample = one "token": forward dot product and gradient

    def as_dict(self) -> dict:
        return asdict(self)


ModelShape = LlamaShape | LinregShape

PRESETS: dict[str, Callable[[], ModelShape]] = {}


def register_preset(name: str):
    def decorate(fn: Callable[[], ModelShape]):
        if name in PRESETS:
            raise ValueError(f"model preset {name!r} is registered twice")
        PRESETS[name] = fn
        return fn

    return decorate


@register_preset("llama-50k")
def llama_50k() -> LlamaShape:  # ~50k params with the byte tokenizer: CPU tests
    return LlamaShape(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=96)


@register_preset("llama-200k")
def llama_200k() -> LlamaShape:
    return LlamaShape(hidden_size=64, num_layers=3, num_heads=4, intermediate_size=176)


@register_preset("llama-1m")
def llama_1m() -> LlamaShape:
    return LlamaShape(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=384)


@register_preset("llama-10m")
def llama_10m() -> LlamaShape:
    return LlamaShape(hidden_size=384, num_layers=6, num_heads=6, intermediate_size=1024)


# The paper's shapes ("Pre-training under infinite compute", Kim et al. 2025; its public code's
# experiments/llama.py): untied embeddings, RoPE theta 10,000, RMSNorm eps 1e-5, SiLU, seq 4,096.
# At the Llama-3 tokenizer's vocab of 128,256 they have 154.1M / 299.6M / 602.5M / 1.431B
# parameters (tests/trainers/test_model_params.py pins them).


@register_preset("llama-150m")
def llama_150m() -> LlamaShape:
    return LlamaShape(hidden_size=512, num_layers=6, num_heads=8, intermediate_size=1792)


@register_preset("llama-300m")
def llama_300m() -> LlamaShape:
    return LlamaShape(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=2688)


@register_preset("llama-600m")
def llama_600m() -> LlamaShape:
    return LlamaShape(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=3584, num_kv_heads=8)


@register_preset("llama-1.4b")
def llama_1_4b() -> LlamaShape:
    return LlamaShape(hidden_size=2048, num_layers=16, num_heads=16, intermediate_size=7168, num_kv_heads=8)


PAPER_PRESETS = ("llama-150m", "llama-300m", "llama-600m", "llama-1.4b")
PAPER_VOCAB_SIZE = 128_256  # the Llama-3 tokenizer


def preset(name: str) -> ModelShape:
    return PRESETS[name]()

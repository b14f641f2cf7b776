"""Memorisation at a trial's end: how much of what the model generates is copied from its training data.

With `train.memorisation_samples: k` (k > 0), k training sequences and k validation sequences are
drawn once (a generator of their own: training's draws are untouched), their first half is the
prompt and the model samples the second half (temperature 1, seeded, with its KV cache). A
generated n-gram (n = `train.memorisation_ngram` tokens, default 8; the n-grams lying wholly in
the generated half) is memorised when it occurs anywhere in the trial's U training tokens. The
run row gets the memorised fraction after training prompts (`memorised_train`) and after
validation prompts (`memorised_val`): a model that has memorised its data copies it after the
prompts it was trained on; one that has learnt the language produces common n-grams after both.
It runs after the final evaluation, so it changes no loss.

n-grams are compared by a 64-bit polynomial hash (`ngram_keys`): a false match needs a collision,
about U / 2^64 per n-gram.
"""

from __future__ import annotations

import numpy as np
import torch

from scalegrid.trainers.parallelize import evaluation_stance

_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: the hash is a bijection of the last token given the rest


def ngram_keys(tokens: np.ndarray, n: int) -> np.ndarray:
    """[..., L] token ids -> [..., L - n + 1] uint64 hashes of each window of n tokens."""
    tokens = np.asarray(tokens).astype(np.uint64)
    length = tokens.shape[-1] - n + 1
    if length <= 0:
        return np.zeros((*tokens.shape[:-1], 0), dtype=np.uint64)
    keys = np.zeros((*tokens.shape[:-1], length), dtype=np.uint64)
    with np.errstate(over="ignore"):  # the hash wraps modulo 2^64 by design
        for i in range(n):
            keys = keys * _BASE + tokens[..., i : i + length] + np.uint64(1)
    return keys


def memorised_fraction(generated: np.ndarray, train_keys: np.ndarray, n: int) -> float:
    """The fraction of the n-grams of `generated` [k, g] found among `train_keys` (sorted, unique)."""
    keys = ngram_keys(generated, n).ravel()
    return float(np.isin(keys, train_keys, assume_unique=False).mean()) if keys.size else float("nan")


def prompts(sequences: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """`count` sequences (with replacement when there are fewer), from a generator of their own."""
    rng = np.random.default_rng([seed, 0x3E3])
    rows = rng.permutation(len(sequences))[:count] if count <= len(sequences) else rng.integers(0, len(sequences), count)
    return sequences[torch.from_numpy(rows).to(sequences.device)]


@torch.no_grad()
def continue_prompts(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int, seed: int) -> torch.Tensor:
    """[k, new_tokens] sampled after each prompt [k, p] at temperature 1, with the model's KV cache."""
    from transformers import DynamicCache

    generator = torch.Generator(device=prompt.device).manual_seed(seed)
    cache = DynamicCache(config=model.config)
    logits = model(input_ids=prompt, cache=cache, use_cache=True).logits[:, -1]
    tokens = []
    for _ in range(new_tokens):
        ids = torch.multinomial(torch.softmax(logits.float(), dim=-1), 1, generator=generator)
        tokens.append(ids)
        logits = model(input_ids=ids, cache=cache, use_cache=True).logits[:, -1]
    return torch.cat(tokens, dim=1)


def measure(model: torch.nn.Module, train_seqs: torch.Tensor, val_seqs: torch.Tensor, samples: int, n: int, seed: int) -> dict:
    """`memorised_train` and `memorised_val` of a trained model (see the module docstring)."""
    train_keys = np.unique(ngram_keys(train_seqs.cpu().numpy().reshape(-1), n))
    half = train_seqs.shape[1] // 2
    was_training = model.training
    model.eval()
    fractions = {}
    with evaluation_stance():  # eager: no compilation for the growing cache
        for name, sequences in (("memorised_train", train_seqs), ("memorised_val", val_seqs)):
            prompt = prompts(sequences, samples, seed)[:, :half]
            generated = continue_prompts(model, prompt, train_seqs.shape[1] - half, seed)
            fractions[name] = memorised_fraction(generated.cpu().numpy(), train_keys, n)
    model.train(was_training)
    return fractions

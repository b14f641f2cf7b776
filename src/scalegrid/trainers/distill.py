"""Distilled students: a `lm` trial trained against a teacher, an ensemble of k members or one model.

A student's `TrialConfig.distill` names its teacher by the members' trial ids and says how:

- `token`: every batch's loss is (1 - kl_weight) CE(data) + kl_weight T^2 KL(q_T || p_T), where
  p_T is the student's next-token distribution at temperature T and q_T the teacher's: the
  average of the members' softmax(logits / T), or with `combine: logits` the softmax of their
  averaged logits / T (Hinton et al.; T^2 keeps the gradient scale).
- `sequence`: the teacher generates a corpus (`generate`: sampling with a KV cache per member
  from the members' averaged distribution, seeded), cached under RESULTS/cache/teacher/<id>/ and
  made once by the orchestrator; the student trains on its real sequences plus
  w / (1 - w) times as many generated ones, so a fraction w of what it sees is synthetic.

Everything else (model, optimiser, schedule, evaluation on the real validation tokens,
divergence checks) is the `lm` trainer's loop.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from scalegrid.storage import CACHE_MARKER, ResultsLayout, node_cache_dir
from scalegrid.trainers import lm
from scalegrid.data.corpus.cache import TokenCache
from scalegrid.trainers.devices import autocast, trial_device
from scalegrid.trainers.loss import predicted_tokens
from scalegrid.trainers.weights import load_model
from scalegrid.trial import CORPUS_VERSION, Report, SequenceDistill, TeacherCorpusRequest, TokenDistill, Trial, TrialResult



def train(trial: Trial, report: Report) -> TrialResult:
    spec = trial.config.distill
    if spec is None:
        raise ValueError("a distilled student needs TrialConfig.distill (its teacher and method)")
    if isinstance(spec, TokenDistill):
        return lm.train(trial, report, batch_loss=token_loss(trial, spec))
    return lm.train(trial, report, extra_sequences=teacher_sequences(trial, spec))


def token_loss(trial: Trial, spec: TokenDistill) -> lm.BatchLoss:
    """The batch loss of a token-level student: CE on the data mixed with KL to the teacher."""
    device = trial_device()
    teachers = [load_model(trial.results, tid, device) for tid in spec.teacher]
    temperature, weight = spec.temperature, spec.kl_weight

    def batch_loss(model: torch.nn.Module, x: torch.Tensor, num_tokens: int) -> torch.Tensor:
        out = model(input_ids=x, labels=x, num_items_in_batch=num_tokens)
        student = torch.log_softmax(out.logits[:, :-1].float() / temperature, dim=-1)
        teacher = teacher_logprobs(teachers, x[:, :-1], temperature, spec.combine)
        # The mean KL over x's positions, weighted by x's share of the batch's predicted tokens
        # (exactly 1 for a whole batch, so an unsplit batch computes what it always did).
        kl = (teacher.exp() * (teacher - student)).sum(-1).mean() * (predicted_tokens(x) / num_tokens)
        return (1 - weight) * out.loss + weight * temperature**2 * kl

    return batch_loss


def teacher_sequences(trial: Trial, spec: SequenceDistill) -> torch.Tensor:
    """The generated sequences a sequence-level student trains on beside its real ones."""
    generated = load_corpus(trial.results, spec.corpus)
    real = trial.config.unique_tokens // trial.config.train.seq_len
    wanted = round(spec.synthetic_weight / (1 - spec.synthetic_weight) * real)
    if wanted > len(generated):
        raise ValueError(f"the teacher corpus {spec.corpus} has {len(generated)} sequences; the student needs {wanted}")
    return torch.from_numpy(generated[:wanted].astype(np.int64))


def averaged_logprobs(member_logits: Iterable[torch.Tensor], temperature: float = 1.0, combine: str = "probs") -> torch.Tensor:
    """log of k members' averaged next-token distribution at `temperature`, from their logits one
    member at a time: the mean of their probabilities (`probs`), or softmax of their mean logits (`logits`)."""
    total, k = None, 0
    for k, logits in enumerate(member_logits, start=1):
        scaled = logits.float() / temperature
        if combine == "probs":
            logprobs = torch.log_softmax(scaled, dim=-1)
            total = logprobs if total is None else torch.logaddexp(total, logprobs)
        else:
            total = scaled if total is None else total + scaled
    return total - math.log(k) if combine == "probs" else torch.log_softmax(total / k, dim=-1)


@torch.no_grad()
def teacher_logprobs(teachers: list[torch.nn.Module], x: torch.Tensor, temperature: float = 1.0, combine: str = "probs") -> torch.Tensor:
    """log of the members' averaged next-token distribution at `temperature`: [batch, len, vocab]."""
    return averaged_logprobs((model(input_ids=x).logits for model in teachers), temperature, combine)


@torch.no_grad()
def generate(
    teachers: list[torch.nn.Module],
    *,
    sequences: int,
    seq_len: int,
    start_token: int,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    combine: str = "probs",
) -> np.ndarray:
    """[sequences, seq_len] token ids: `start_token` then seq_len - 1 tokens sampled one at a time
    from the members' averaged next-token distribution (`averaged_logprobs`), each member with its
    own KV cache (one new token per forward pass, not the whole prefix). Seeded: the same seed
    gives the same corpus."""
    from transformers import DynamicCache

    device = next(teachers[0].parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    out = np.empty((sequences, seq_len), dtype=np.int64)
    for first in range(0, sequences, batch_size):
        n = min(batch_size, sequences - first)
        ids = torch.full((n, 1), start_token, dtype=torch.long, device=device)
        caches = [DynamicCache(config=model.config) for model in teachers]
        tokens = [ids]
        for _ in range(seq_len - 1):
            total = averaged_logprobs(
                (model(input_ids=ids, cache=cache, use_cache=True).logits[:, -1] for model, cache in zip(teachers, caches)),
                temperature, combine,
            )
            ids = torch.multinomial(torch.softmax(total, dim=-1), 1, generator=generator)
            tokens.append(ids)
        out[first : first + n] = torch.cat(tokens, dim=1).cpu().numpy()
    return out


def load_corpus(results: ResultsLayout, corpus_id: str) -> np.ndarray:
    """[sequences, seq_len] of a generated teacher corpus (a local copy when it lives on an object store)."""
    parts = results.teacher_corpus(corpus_id)
    path = results.materialise_dir(parts, node_cache_dir() / "teacher" / corpus_id, marker=CACHE_MARKER)
    if path is None:
        raise FileNotFoundError(f"{results.shown(*parts)}: the teacher corpus was not generated (no {CACHE_MARKER})")
    meta = json.loads((path / CACHE_MARKER).read_text())
    return np.load(path / "tokens.npy", mmap_mode="r").reshape(meta["sequences"], meta["seq_len"])


def make_corpus(results: ResultsLayout, corpus_id: str, request: TeacherCorpusRequest, data_key: str) -> dict:
    """Generate and save the corpus `request` describes unless it is already there; returns its
    meta (with `generated`: whether this call made it)."""
    parts = results.teacher_corpus(corpus_id)
    if results.is_file(*parts, CACHE_MARKER):
        return {**json.loads(results.read_bytes(*parts, CACHE_MARKER)), "generated": False}
    eos_id = TokenCache(results).open(data_key)[2]["eos_id"]
    if eos_id is None:  # token arrays made elsewhere say their EOS only if the spec did
        raise ValueError("a sequence-level teacher samples from the end-of-document token: set data.eos_id for source tokens")
    device = trial_device()
    teachers = [load_model(results, tid, device) for tid in request.teacher]
    start = time.perf_counter()
    with autocast(device):  # bf16 on a GPU
        tokens = generate(
            teachers, sequences=request.sequences, seq_len=request.seq_len, start_token=eos_id,
            temperature=request.temperature, seed=request.seed, combine=request.combine,
        )
    seconds = time.perf_counter() - start
    meta = {
        **request.model_dump(mode="json"), "id": corpus_id, "version": CORPUS_VERSION, "tokens": int(tokens.size),
        "seconds": seconds, "tokens_per_s": tokens.size / seconds, "device": device.type,
    }

    def fill(directory: Path) -> None:
        np.save(directory / "tokens.npy", tokens.astype(np.int32 if int(tokens.max()) < 2**31 else np.int64))
        (directory / CACHE_MARKER).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    results.publish_dir(parts, fill, marker=CACHE_MARKER)
    return {**meta, "generated": True}

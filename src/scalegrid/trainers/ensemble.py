"""Ensemble evaluation: the validation loss of K members' averaged predictions, for every k = 1..K.

Two ways of averaging are in use, and `combine` picks one (`ensemble.combine` in the spec):

- `probs` (default): p_k(y | x) = (1/k) sum_m p_m(y | x), so the loss on a validation token is
  -log p_k(y) = -(logsumexp_m log p_m(y) - log k): only each member's log-probability of the
  *observed* next token is needed, never the whole vocabulary at once. One pass per member gives
  a vector of T log-probabilities; a running logsumexp over members yields every k's loss, in
  O(T) memory.
- `logits` (the paper's code): p_k = softmax((1/k) sum_m z_m), the members' logits z averaged.
  This needs the whole vocabulary per token: a running sum of logits over members, [T, V] float32.
  The validation tokens are taken in chunks that keep that sum under LOGIT_SUM_BYTES (one chunk
  for byte and small BPE vocabularies; a 128k vocabulary is chunked, and members are then loaded
  once per chunk).

Either way all K ensemble sizes cost about K single evaluations (not K^2).

    losses, own, seconds = evaluate_members(member_ids, results, val_seqs, batch_size=16)
    losses[0] == the first member's own val_loss; with `probs`, losses[k - 1] <= mean(member losses[:k])  (Jensen)

The members are loaded from RESULTS/models/<trial_id>/ (`weights.py`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import torch

from scalegrid.data.sequences import load_sequences
from scalegrid.gpu_memory import loss_chunk_tokens
from scalegrid.storage import ResultsLayout
from scalegrid.trainers.devices import autocast, trial_device
from scalegrid.trainers.loss import next_token_logprobs
from scalegrid.trainers.weights import load_model, model_vocab_size
from scalegrid.trial import Trial

LOGIT_SUM_BYTES = 2**30  # combine logits: one chunk's running sum of logits (peak memory about 4x: a member's logits, the mean, its log-softmax)


@torch.no_grad()
def token_logprobs(model: torch.nn.Module, sequences: torch.Tensor, batch_size: int, chunk_tokens: int | None = None) -> torch.Tensor:
    """log p(x[t+1] | x[:t+1]) for every predicted validation token, float32, flattened [N * (L - 1)];
    the logits of at most `chunk_tokens` positions at a time (None: a batch's at once)."""
    chunk = chunk_tokens or sequences.numel()
    return torch.cat([next_token_logprobs(model, x, chunk) for x in sequences.split(batch_size)])


@torch.no_grad()
def token_logits(model: torch.nn.Module, sequences: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The logits of every predicted validation token, float32, [N * (L - 1), V]."""
    out = [model(input_ids=sequences[i : i + batch_size]).logits[:, :-1].float() for i in range(0, len(sequences), batch_size)]
    return torch.cat(out).flatten(0, 1)


def cumulative_losses(member_logprobs: Iterable[torch.Tensor]) -> list[float]:
    """`probs`: the loss of the ensemble of the first k members, for k = 1, 2, ...: one running logsumexp."""
    total, losses = None, []
    for k, logprobs in enumerate(member_logprobs, start=1):
        total = logprobs.double() if total is None else torch.logaddexp(total, logprobs.double())
        losses.append(-(total - math.log(k)).mean().item())
    return losses


def cumulative_logit_nll(member_logits: Iterable[torch.Tensor], targets: torch.Tensor) -> list[float]:
    """`logits`: the summed next-token loss of softmax(mean of the first k members' logits), for k = 1, 2, ..."""
    total, sums = None, []
    for k, logits in enumerate(member_logits, start=1):
        total = logits.clone() if total is None else total.add_(logits)
        sums.append(torch.nn.functional.cross_entropy(total / k, targets, reduction="sum").double().item())
    return sums


def evaluate_members(
    member_ids: list[str], results: ResultsLayout, sequences: torch.Tensor, batch_size: int, combine: str = "probs",
    chunk_tokens: int | None = None,
) -> tuple[list[float], list[float], list[float]]:
    """(ensemble loss of the first k members for k = 1..K, each member's own loss, seconds per member).

    Members are loaded and evaluated one at a time: one model in memory, one pass each (per chunk
    of validation tokens, for `logits`). With `probs`, the lm head and log-softmax see at most
    `chunk_tokens` positions at a time (None: a batch's at once)."""
    if combine == "logits":
        return _evaluate_logits(member_ids, results, sequences, batch_size)
    if combine != "probs":
        raise ValueError(f"combine must be probs or logits, not {combine!r}")
    own, seconds = [], []

    def passes():
        for tid in member_ids:
            start = time.perf_counter()
            logprobs = token_logprobs(load_model(results, tid, sequences.device), sequences, batch_size, chunk_tokens)
            own.append(-logprobs.double().mean().item())
            seconds.append(time.perf_counter() - start)
            yield logprobs

    return cumulative_losses(passes()), own, seconds


def logit_chunk(sequences: torch.Tensor, vocab_size: int, budget_bytes: int = LOGIT_SUM_BYTES) -> int:
    """Sequences per chunk so that one chunk's [tokens, vocab] float32 logit sum fits the budget (at least 1)."""
    per_sequence = (sequences.shape[1] - 1) * vocab_size * 4
    return max(1, budget_bytes // per_sequence)


def _evaluate_logits(
    member_ids: list[str], results: ResultsLayout, sequences: torch.Tensor, batch_size: int,
    budget_bytes: int = LOGIT_SUM_BYTES,
) -> tuple[list[float], list[float], list[float]]:
    """`logits`: per chunk of validation sequences, one pass per member and a running sum of logits."""
    ensemble_nll, own_nll, seconds = ([0.0] * len(member_ids) for _ in range(3))
    chunk = logit_chunk(sequences, model_vocab_size(results, member_ids[0]), budget_bytes)
    for first in range(0, len(sequences), chunk):
        part = sequences[first : first + chunk]
        targets = part[:, 1:].flatten()

        def passes():
            for m, tid in enumerate(member_ids):
                start = time.perf_counter()
                logits = token_logits(load_model(results, tid, sequences.device), part, batch_size)
                own_nll[m] += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").double().item()
                seconds[m] += time.perf_counter() - start
                yield logits

        for k, nll in enumerate(cumulative_logit_nll(passes(), targets)):
            ensemble_nll[k] += nll
    tokens = sequences.shape[0] * (sequences.shape[1] - 1)
    return [n / tokens for n in ensemble_nll], [n / tokens for n in own_nll], seconds


def evaluate_first_k(members: Sequence[Trial], combine: str) -> tuple[list[float], list[float], str]:
    """(the validation loss of the ensemble of the first k members for k = 1..K, seconds per member,
    the device it ran on): one pass per member, on the GPU Ray gave this task (bf16) or the CPU."""
    first = members[0]
    on = trial_device()
    _, val_seqs, vocab_size = load_sequences(first, on)
    chunk = loss_chunk_tokens(first.config.train, vocab_size, on.type)
    with autocast(on):  # bf16 on a GPU; the log-probabilities are fp32 either way
        losses, _, per_member = evaluate_members(
            [m.trial_id for m in members], first.results, val_seqs, first.config.train.batch_size, combine, chunk
        )
    return losses, per_member, on.type

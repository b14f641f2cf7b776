"""Ensemble evaluation: the validation loss of the average of K members' next-token distributions.

The ensemble of members 1..k predicts p_k(y | x) = (1/k) sum_m p_m(y | x), so its loss on a
validation token is -log p_k(y) = -(logsumexp_m log p_m(y) - log k): only each member's
log-probability of the *observed* next token is needed, never the whole vocabulary at once. One
pass per member over the validation tokens gives a vector of T log-probabilities; a running
logsumexp over members then yields the loss of every k = 1..K, so evaluating all K ensemble
sizes costs about K single evaluations (not K^2), and holds O(T) numbers, not O(K T).

    losses, own, seconds = evaluate_members(member_ids, results, val_seqs, batch_size=16)
    losses[0] == the first member's own val_loss; losses[k - 1] <= mean(member losses[:k])  (Jensen)

The members are loaded from RESULTS/models/<trial_id>/ (`weights.py`).
"""

from __future__ import annotations

import math
import time
from typing import Iterable

import torch

from scalegrid.storage import ResultsLayout
from scalegrid.trainers.loss import next_token_logprobs
from scalegrid.trainers.weights import load_model


@torch.no_grad()
def token_logprobs(model: torch.nn.Module, sequences: torch.Tensor, batch_size: int, chunk_tokens: int | None = None) -> torch.Tensor:
    """log p(x[t+1] | x[:t+1]) for every predicted validation token, float32, flattened [N * (L - 1)];
    the logits of at most `chunk_tokens` positions at a time (None: a batch's at once)."""
    chunk = chunk_tokens or sequences.numel()
    return torch.cat([next_token_logprobs(model, x, chunk) for x in sequences.split(batch_size)])


def cumulative_losses(member_logprobs: Iterable[torch.Tensor]) -> list[float]:
    """The loss of the ensemble of the first k members, for k = 1, 2, ...: one running logsumexp."""
    total, losses = None, []
    for k, logprobs in enumerate(member_logprobs, start=1):
        total = logprobs.double() if total is None else torch.logaddexp(total, logprobs.double())
        losses.append(-(total - math.log(k)).mean().item())
    return losses


def evaluate_members(
    member_ids: list[str], results: ResultsLayout, sequences: torch.Tensor, batch_size: int, chunk_tokens: int | None = None
) -> tuple[list[float], list[float], list[float]]:
    """(ensemble loss of the first k members for k = 1..K, each member's own loss, seconds per member).

    Members are loaded and evaluated one at a time: one model in memory, one pass each."""
    own, seconds = [], []

    def passes():
        for tid in member_ids:
            start = time.perf_counter()
            logprobs = token_logprobs(load_model(results, tid, sequences.device), sequences, batch_size, chunk_tokens)
            own.append(-logprobs.double().mean().item())
            seconds.append(time.perf_counter() - start)
            yield logprobs

    return cumulative_losses(passes()), own, seconds

"""A trial's training and validation sequences, and the order each epoch visits them in."""

from __future__ import annotations

import numpy as np
import torch

from scalegrid.data.corpus.cache import DamagedCache, TokenCache
from scalegrid.data.identity import prepare
from scalegrid.trial import Trial


def load_sequences(trial: Trial, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(train sequences [U / seq_len, seq_len], validation sequences, vocab_size), int64 on `device`."""
    cfg, seq_len = trial.config, trial.config.train.seq_len
    if trial.data_key is None:
        raise ValueError("the lm trainer needs Trial.data_key (the token cache of its corpus)")
    try:
        train, val, meta = TokenCache(trial.results).open(trial.data_key, min_train_tokens=cfg.unique_tokens)
    except (FileNotFoundError, DamagedCache):
        if trial.data_spec is None:
            raise
        prepare(trial.data_spec, trial.results)  # deleted or damaged since it was built: built again (set aside first)
        train, val, meta = TokenCache(trial.results).open(trial.data_key, min_train_tokens=cfg.unique_tokens)
    if cfg.unique_tokens % seq_len:
        raise ValueError(f"unique_tokens {cfg.unique_tokens} is not a multiple of train.seq_len {seq_len}")
    if cfg.unique_tokens > len(train):
        raise ValueError(f"unique_tokens {cfg.unique_tokens} exceeds the corpus's {len(train)} training tokens")
    val_tokens = min(len(val), cfg.data.validation.max_tokens) // seq_len * seq_len
    if val_tokens == 0:
        raise ValueError(f"the validation split has fewer than train.seq_len = {seq_len} tokens")

    def sequences(tokens: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(tokens.astype(np.int64)).view(-1, seq_len).to(device)

    return sequences(train[: cfg.unique_tokens]), sequences(val[:val_tokens]), int(meta["vocab_size"])


def epoch_orders(num_sequences: int, epochs: int, seed: int, device: torch.device, *, shuffled: bool = True) -> torch.Tensor:
    """[epochs, num_sequences]: each epoch's visiting order, from a generator seeded by (seed, epoch);
    not `shuffled` (`data_order: sequential`): the corpus' own order every epoch."""
    if not shuffled:
        return torch.arange(num_sequences, device=device).expand(epochs, num_sequences)
    orders = []
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
        orders.append(torch.randperm(num_sequences, generator=generator))
    return torch.stack(orders).to(device)  # one host->device copy for the whole run


def next_batch(sequences: torch.Tensor, order: torch.Tensor, step: int, steps_per_epoch: int, batch_size: int):
    epoch, i = divmod(step, steps_per_epoch)
    return sequences[order[epoch, i * batch_size : (i + 1) * batch_size]]

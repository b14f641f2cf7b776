"""Per-epoch gradient diagnostics (`train.diagnostics: true`), from a fixed probe set: pure numpy.

seeds/000 proposes to watch, epoch by epoch, what repetition does to the gradients. A trainer
computes the gradient g_i of the training loss on each of P probe batches (the same batches every
epoch, drawn from a generator of their own: no draw from training's), at the weights of the
epoch's end, and hands their Gram matrix G_ij = g_i . g_j to `epoch_diagnostics`, which derives
every statistic from it (so a trainer never holds more than the P gradients):

    grad_norm       v_e = ||g_bar||, g_bar = mean_i g_i: the epoch-wise gradient norm
    grad_cosine     c_e = cos(g_bar_e, g_bar_{e-1}): the inter-epoch gradient correlation (NaN at
                    the first measured epoch)
    grad_snr        ||grad L||^2 / E||g_i - grad L||^2, with the unbiased estimates
                    noise = P/(P-1) (tr G / P - ||g_bar||^2) and signal = ||g_bar||^2 - noise / P
                    (0 when the signal is below the noise's resolution): the SNR of one probe batch
    grad_gram_top   the top `GRAM_TOP` eigenvalues of G / P: the spectrum of the probe gradients'
                    second moment, a cheap proxy of the (empirical) Fisher's
    val_curvature   L_e - 2 L_{e-1} + L_{e-2} of the epoch-end validation losses (`curvature`):
                    positive while the curve flattens, negative where it turns up

The cost is P forward-backward passes of a batch per epoch, P / steps_per_epoch of training's
(`benchmarks/bench_epochs.py --diagnostics` measures it).
"""

from __future__ import annotations

import math

import numpy as np

GRAM_TOP = 3  # eigenvalues of the probe gradients' Gram matrix kept per epoch
DIAGNOSTIC_COLUMNS = ("grad_norm", "grad_cosine", "grad_snr", "grad_gram_top", "val_curvature")


def epoch_diagnostics(gram: np.ndarray, mean_dot_previous: float | None, previous_norm: float | None) -> dict:
    """The statistics of P probe gradients from their Gram matrix [P, P]; `mean_dot_previous` is
    g_bar . g_bar of the previous measured epoch and `previous_norm` its norm (None at the first)."""
    gram = np.asarray(gram, dtype=np.float64)
    p = len(gram)
    if p < 2:
        raise ValueError("gradient statistics need at least 2 probe batches")
    mean_norm2 = float(gram.sum()) / p**2
    noise = p / (p - 1) * (float(np.trace(gram)) / p - mean_norm2)
    signal = mean_norm2 - noise / p
    norm = math.sqrt(max(mean_norm2, 0.0))
    cosine = math.nan
    if mean_dot_previous is not None and previous_norm and norm:
        cosine = mean_dot_previous / (norm * previous_norm)
    eigenvalues = np.linalg.eigvalsh(gram / p)[::-1][:GRAM_TOP]
    return {
        "grad_norm": norm,
        "grad_cosine": cosine,
        "grad_snr": max(signal, 0.0) / noise if noise > 0 else math.inf,
        "grad_gram_top": [float(v) for v in eigenvalues],
    }


def curvature(epoch_val_losses: list[float]) -> float:
    """The discrete second difference of the last three epoch-end validation losses (NaN before)."""
    if len(epoch_val_losses) < 3:
        return math.nan
    a, b, c = epoch_val_losses[-3:]
    return c - 2.0 * b + a


def probe_rows(num_rows: int, probe_batches: int, batch_size: int, seed: int) -> np.ndarray:
    """[probe_batches, batch] indices of the training rows (sequences, samples) of the probe set,
    from a generator of their own: disjoint batches when the set holds them all, else each batch
    drawn without replacement on its own."""
    rng = np.random.default_rng([seed, 0x9B0BE])
    batch = min(batch_size, num_rows)
    if probe_batches * batch <= num_rows:
        return rng.permutation(num_rows)[: probe_batches * batch].reshape(probe_batches, batch)
    return np.stack([rng.permutation(num_rows)[:batch] for _ in range(probe_batches)])

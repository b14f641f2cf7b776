"""Generated linear-regression data (`data.source: gaussian`): the problem, its samples, and what
the exact one-pass reference needs of it (the `linreg` trainer's module docstring says how).

x ~ N(0, H), H = diag((i + offset)^-spectrum_decay) scaled to a unit top eigenvalue (or trace);
y = <w*, x> + noise * N(0, 1), w*_i ~ (i + offset)^-target_decay scaled so w*^T H w* = 1. Sample j
comes from block j // 1024 of a generator seeded by (data seed, [trial seed,] d, block), so a larger
N holds a smaller one's samples as its prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scalegrid.grid import content_hash
from scalegrid.spec import GaussianDataSpec
from scalegrid.trial import TrialConfig

GENERATOR_VERSION = "gaussian-v1"  # bump when the data a spec generates changes
_BLOCK = 1024  # samples per generator block


def problem(dims: int, data: GaussianDataSpec) -> tuple[np.ndarray, np.ndarray]:
    """(the diagonal of H, w*) with w*^T H w* = 1 (see the module docstring)."""
    i = np.arange(1, dims + 1, dtype=np.float64) + data.spectrum_offset
    h = i**-data.spectrum_decay
    h = h / (h[0] if data.spectrum_scale == "top" else h.sum())
    w_star = i**-data.target_decay
    return h, w_star / math.sqrt(h @ w_star**2)


def samples(n: int, dims: int, data: GaussianDataSpec, trial_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first n samples (x [n, dims], y [n]) of the data seed's stream (with `data_per_seed`,
    of the data seed's and the trial seed's)."""
    if data.data_per_seed and trial_seed is None:
        raise ValueError("data_per_seed: the samples depend on the trial seed; pass trial_seed")
    h, w_star = problem(dims, data)
    stream = [data.seed, trial_seed] if data.data_per_seed else [data.seed]
    x, y = np.empty((n, dims)), np.empty(n)
    for block in range(math.ceil(n / _BLOCK)):
        rng = np.random.default_rng([*stream, dims, block])
        xb = rng.standard_normal((_BLOCK, dims)) * np.sqrt(h)
        yb = xb @ w_star + data.noise * rng.standard_normal(_BLOCK)
        part = slice(block * _BLOCK, min(n, (block + 1) * _BLOCK))
        x[part], y[part] = xb[: part.stop - part.start], yb[: part.stop - part.start]
    return x, y


@dataclass(frozen=True)
class OnePassProblem:
    """What the exact one-pass reference (`analysis.one_pass`) needs of the runs' problem."""

    h: np.ndarray  # the diagonal of H
    signal: np.ndarray  # the diagonal of (w_0 - w*)^2: w*^2, since w starts at 0
    noise: float
    batch_size: int


def one_pass_problem(config_jsons) -> OnePassProblem | None:
    """The problem linreg runs (their `config_json`) were trained on, if they share one: the same
    d, spectrum, target and noise, and one batch size (their data seeds may differ: the reference
    is an expectation over the data). None for anything else."""
    problems = {}
    for text in set(config_jsons):
        try:
            config = TrialConfig.model_validate_json(text)
        except ValueError:
            return None
        if config.trainer != "linreg":
            return None
        data = config.data.model_dump(exclude={"seed", "data_per_seed", "generator"})
        problems[(config.model.dims, config.train.batch_size, content_hash(data))] = config
    if len(problems) != 1:
        return None
    config = next(iter(problems.values()))
    h, w_star = problem(config.model.dims, config.data)
    return OnePassProblem(h=h, signal=w_star**2, noise=config.data.noise, batch_size=config.train.batch_size)

"""The exact one-pass risk: the recursion against simulated SGD, the contour integral against the
recursion, and the tuned curve against a brute-force search."""

from __future__ import annotations

import numpy as np
import pytest

from scalegrid.analysis import one_pass
from scalegrid.analysis.one_pass import DIRECT_STEPS, one_pass_risk, sample_grid, stable, tuned_one_pass
from scalegrid.spec import GaussianDataSpec
from scalegrid.data.gaussian import problem

TESTBED = GaussianDataSpec(spectrum_decay=2.0, spectrum_offset=8, spectrum_scale="trace", target_decay=0.5,
                           noise=0.1, data_per_seed=True)


def simulate(h, w_star, noise, lr, batch, steps, runs, seed=0):
    """Mean and standard error of the excess risk of `runs` independent one-pass SGD runs."""
    rng = np.random.default_rng(seed)
    w = np.zeros((runs, h.size))
    out = []
    for t in range(max(steps) + 1):
        if t in steps:
            risk = ((w - w_star) ** 2) @ h
            out.append((risk.mean(), risk.std() / np.sqrt(runs)))
        x = rng.standard_normal((runs, batch, h.size)) * np.sqrt(h)
        y = x @ w_star + noise * rng.standard_normal((runs, batch))
        residual = (x @ w[:, :, None])[..., 0] - y
        w -= lr / batch * (residual[:, None, :] @ x)[:, 0]
    return np.array(out)


@pytest.mark.parametrize(("batch", "lr"), [(1, 0.5), (1, 1.2), (4, 1.5)])
def test_recursion_is_the_mean_of_simulated_sgd(batch, lr):
    """The Gaussian fourth moment makes the diagonal recursion exact: simulated means agree
    within sampling error (4 standard errors), at a step size near the edge of stability too."""
    h, w_star = problem(12, TESTBED)
    steps = [0, 5, 20, 60, 150]
    sim = simulate(h, w_star, 0.1, lr, batch, steps, runs=10_000)
    exact = one_pass_risk(h, w_star**2, 0.1, [lr], np.array(steps) * batch, batch_size=batch)[:, 0]
    assert exact[0] == pytest.approx(1.0)  # w = 0: the whole unit signal
    assert np.all(np.abs(sim[:, 0] - exact) <= 4 * sim[:, 1] + 1e-12), (sim, exact)


@pytest.mark.parametrize("batch", [1, 3])
def test_contour_integral_is_the_recursion(batch):
    h, w_star = problem(2048, TESTBED)
    lrs = 2.0 ** -np.arange(0, 14, 1.5)
    steps = np.array([DIRECT_STEPS + 1, 700, 3000, 12_000])
    direct = np.empty((steps.size, lrs.size))
    a, rho = one_pass._coefficients(h, lrs[:, None], batch)
    c = np.tile(w_star**2, (lrs.size, 1))
    for t in range(steps.max() + 1):
        risk = c @ h
        direct[steps == t] = risk
        c = a * c + rho * h * (risk + 0.01)[:, None]
    fast = one_pass_risk(h, w_star**2, 0.1, lrs, steps * batch, batch_size=batch)
    np.testing.assert_allclose(fast, direct, rtol=1e-8)


def test_an_unstable_step_size_is_left_out_beyond_the_direct_steps():
    h, w_star = problem(64, TESTBED)
    assert stable(h, 1.0) and not stable(h, 2.5)
    risk = one_pass_risk(h, w_star**2, 0.1, [1.0, 2.5], [DIRECT_STEPS, 4 * DIRECT_STEPS])
    assert np.isfinite(risk[:, 0]).all() and risk[0, 1] > 1e3 and np.isnan(risk[1, 1])


def test_tuned_curve_is_the_best_of_the_whole_ladder_and_inverts():
    h, w_star = problem(2048, TESTBED)
    ladder = 2.0 ** (-np.arange(1, 4) / 2)  # extended by the walk as far as needed
    samples = sample_grid(2**17, per_octave=2)
    tuned = tuned_one_pass(h, w_star**2, 0.1, ladder, samples)
    wide = 2.0 ** (-np.arange(-2, 26) / 2)
    brute = one_pass_risk(h, w_star**2, 0.1, wide, samples)
    np.testing.assert_allclose(tuned.risk, np.minimum.accumulate(np.nanmin(brute, axis=1)), rtol=1e-9)
    assert np.all(np.diff(tuned.risk) <= 0) and np.all(np.diff(tuned.lr) <= 1e-12)  # more data: smaller steps
    np.testing.assert_allclose(tuned.fresh_samples(tuned.risk[4:]), samples[4:], rtol=1e-9)
    between = np.sqrt(tuned.risk[10] * tuned.risk[11])
    assert samples[10] < tuned.fresh_samples(between) < samples[11]
    assert np.isnan(tuned.fresh_samples(tuned.risk[-1] / 2))  # beyond the curve: unknown, not extrapolated
    assert tuned.fresh_samples(2.0) == samples[0]

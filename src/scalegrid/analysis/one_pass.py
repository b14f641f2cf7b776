"""The expected excess risk of one-pass SGD on Gaussian linear regression, exactly, at any sample count.

The fresh-data reference of the reuse rate (seeds/003): E(K, N) asks how many fresh samples N'
one pass needs to match K epochs over N, so it needs the one-pass risk R(1, n) with the step size
tuned at every n, far beyond the largest N trained. For x ~ N(0, H), H = diag(h), y = x.w* + noise,
minibatch SGD w <- w - lr/b sum_j x_j (x_j.w - y_j) on fresh samples, the error e = w - w* has
a covariance C whose diagonal c evolves in closed form: with the Gaussian fourth moment
E[x x^T C x x^T] = 2 H C H + tr(HC) H,

    c' = a * c + (lr^2 / b) h (h.c + noise^2),       a = 1 - 2 lr h + lr^2 h^2 (1 + 1/b),

and the excess risk is h.c (c starts at (w_0 - w*)^2). That is c' = A c + beta with the symmetric
A = diag(a) + rho h h^T (rho = lr^2 / b), so after t steps

    risk(t) = h^T A^t c_0 + h^T (I - A)^-1 (I - A^t) beta.

Up to `DIRECT_STEPS` steps the recursion is iterated. Beyond, h^T A^t x is a contour integral,
(1 / 2 pi i) \\oint z^t h^T (z - A)^-1 x dz, where h^T (z - A)^-1 x costs O(d) by Sherman-Morrison
(h^T E x / (1 - rho h^T E h), E = (z - diag(a))^-1); with z = e^s the contour is Talbot's
(Abate & Valko 2004, "fixed Talbot", `TALBOT_NODES` nodes), which wraps the spectrum of A (in
[0, 1) for a stable step size) and, for t > nodes / 5, none of the images ln(mu) + 2 pi k i. The
two agree to about 1e-9 (tests), and both with simulated SGD to its sampling error.

A step size whose expected risk grows without bound (A has an eigenvalue >= 1: some a_i >= 1, or
rho sum_i h_i^2 / (1 - a_i) >= 1) is left out (NaN) beyond `DIRECT_STEPS` steps: its risk grows
geometrically, so it is not the tuned choice there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIRECT_STEPS = 256  # iterate the recursion this far; the contour integral beyond
TALBOT_NODES = 20  # relative error ~1e-9 (12 nodes: ~3e-7)


def one_pass_risk(h: np.ndarray, signal: np.ndarray, noise: float, lrs: np.ndarray, samples: np.ndarray,
                  *, batch_size: int = 1) -> np.ndarray:
    """Expected excess risk [len(samples), len(lrs)] of one-pass SGD after `samples` fresh samples.

    h: the diagonal of H; signal: the diagonal of E[(w_0 - w*)(w_0 - w*)^T] (w*^2 from w_0 = 0);
    samples: multiples of batch_size (steps = samples / batch_size).
    """
    h, signal = np.asarray(h, float), np.asarray(signal, float)
    lrs, samples = np.atleast_1d(np.asarray(lrs, float)), np.atleast_1d(np.asarray(samples))
    steps = samples // batch_size
    if np.any(steps * batch_size != samples) or np.any(steps < 0):
        raise ValueError(f"sample counts must be non-negative multiples of the batch size {batch_size}")
    out = np.empty((steps.size, lrs.size))
    near = steps <= DIRECT_STEPS
    out[near] = _iterate(h, signal, noise, lrs, batch_size, steps[near])
    for i in np.flatnonzero(~near):
        out[i] = _contour(h, signal, noise, lrs, batch_size, int(steps[i]))
    return out


def _coefficients(h: np.ndarray, lr: float, batch_size: int) -> tuple[np.ndarray, float]:
    """(a, rho) of one step size (or a column of them): c' = a * c + rho h (h.c + noise^2)."""
    return 1 - 2 * lr * h + lr**2 * h**2 * (1 + 1 / batch_size), lr**2 / batch_size


def _iterate(h, signal, noise, lrs, batch_size, steps) -> np.ndarray:
    """The recursion, every lr at once, read at `steps` (each <= DIRECT_STEPS)."""
    a, rho = _coefficients(h, lrs[:, None], batch_size)
    c = np.tile(signal, (lrs.size, 1))
    out = np.empty((len(steps), lrs.size))
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(int(max(steps, default=0)) + 1):
            risk = c @ h
            out[steps == t] = risk
            c = a * c + rho * h * (risk + noise**2)[:, None]
    return out


def stable(h: np.ndarray, lr: float, batch_size: int = 1) -> bool:
    """Whether one-pass SGD's expected risk stays bounded: the spectrum of A inside [0, 1)."""
    a, rho = _coefficients(h, lr, batch_size)
    gap = 1 - a  # the eigenvalues of 1 - diag(a); the rank-one term lowers them, to 0 at this bound:
    return bool(np.all(gap > 0) and rho * np.sum(h**2 / gap) < 1)


def _contour(h, signal, noise, lrs, batch_size, steps: int) -> np.ndarray:
    """h^T A^t c_0 + h^T (I - A)^-1 (I - A^t) beta after t = `steps` steps, for each step size
    (NaN where unstable), by the fixed Talbot rule."""
    nodes = TALBOT_NODES
    theta = np.arange(1, nodes) * np.pi / nodes
    cot = 1 / np.tan(theta)
    r = 2 * nodes / (5 * steps)
    s = np.concatenate([[r], r * theta * (cot + 1j)])  # the contour's nodes; s = r counts half
    weights = np.concatenate([[0.5], 1 + 1j * (theta + (theta * cot - 1) * cot)]) * np.exp(steps * s) * (r / nodes)
    z = np.exp(s)[:, None]
    out = np.full(lrs.size, np.nan)
    for i, lr in enumerate(lrs):
        if not stable(h, lr, batch_size):
            continue
        a, rho = _coefficients(h, lr, batch_size)
        beta = rho * noise**2 * h
        gap = 1 - a
        y = beta / gap + rho * (h / gap) * (h @ (beta / gap)) / (1 - rho * h @ (h / gap))  # (I - A)^-1 beta
        # 1 / (z - a) in real arithmetic: numpy's complex division guards overflow, at 5x the cost
        shifted = z.real - a  # [nodes, d]
        norm = shifted**2 + z.imag**2
        e_re, e_im = shifted / norm, -z.imag / norm
        apply = lambda v: e_re @ v + 1j * (e_im @ v)  # noqa: E731 - (z - A)^-1 restricted to diag(a), times v
        scale = weights * z[:, 0] / (1 - rho * apply(h**2))
        out[i] = (scale * (apply(h * signal) - apply(h * y))).real.sum() + h @ y
    return out


@dataclass(frozen=True)
class TunedOnePass:
    """The one-pass risk tuned over a step-size ladder at each sample count: R(1, n) = min over lr."""

    samples: np.ndarray  # increasing sample counts
    risk: np.ndarray  # the tuned risk at each (running minimum: more data never hurts the tuned run)
    lr: np.ndarray  # the ladder value that attains it
    ladder: np.ndarray  # the step sizes that are the best at some n (decreasing)

    def fresh_samples(self, risk: np.ndarray) -> np.ndarray:
        """N'(risk) = min{n : R(1, n) <= risk}, interpolated linearly in log n against log risk;
        NaN for a risk below the curve's last value (more than its largest n)."""
        risk = np.asarray(risk, float)
        curve = -np.log(self.risk)  # non-decreasing
        target = -np.log(np.where(risk > 0, risk, np.nan))
        j = np.searchsorted(curve, target, side="left")
        j_hi = np.clip(j, 1, curve.size - 1)
        lo, hi = curve[j_hi - 1], curve[j_hi]
        frac = np.where(hi > lo, (target - lo) / np.where(hi > lo, hi - lo, 1.0), 1.0)
        log_n = np.log(self.samples)
        fresh = np.exp(log_n[j_hi - 1] + np.clip(frac, 0.0, 1.0) * (log_n[j_hi] - log_n[j_hi - 1]))
        fresh = np.where(j == 0, self.samples[0], fresh)
        return np.where((j >= curve.size) | np.isnan(target), np.nan, fresh)


def sample_grid(largest: float, *, batch_size: int = 1, per_octave: int = 8) -> np.ndarray:
    """Sample counts from one batch to `largest` (inclusive), `per_octave` per doubling, in batches."""
    octaves = np.log2(max(largest / batch_size, 1.0))
    steps = np.unique(np.round(2.0 ** np.arange(0.0, octaves + 1.0 / per_octave, 1.0 / per_octave)))
    return (steps * batch_size).astype(np.int64)


def tuned_one_pass(h: np.ndarray, signal: np.ndarray, noise: float, ladder: np.ndarray, samples: np.ndarray,
                   *, batch_size: int = 1, window: int = 2) -> TunedOnePass:
    """The tuned one-pass curve on the geometric step-size ladder through `ladder`'s values.

    The ladder's ratio is the smallest ratio between `ladder`'s sorted values (2^-1/2 for a single
    value) and it goes on past both ends. At each sample count (increasing) the step sizes within
    `window` rungs of the previous count's best are evaluated, and the window widens while the best
    sits at its edge: the risk at fixed n is unimodal in the step size (bias falls, noise rises),
    so that finds the ladder's best at a few evaluations per n instead of all of them.
    """
    values = np.unique(np.asarray(ladder, float))[::-1]
    ratio = float(np.min(values[1:] / values[:-1])) if values.size > 1 else 2**-0.5
    top = float(values[0])
    samples = np.asarray(samples)
    near = samples // batch_size <= DIRECT_STEPS
    rungs = np.arange(-window, values.size + window)  # everything near the table's own ladder
    small = one_pass_risk(h, signal, noise, top * ratio**rungs, samples[near], batch_size=batch_size)
    small = np.where(np.isnan(small), np.inf, small)
    best_rung = [int(rungs[j]) for j in np.argmin(small, axis=1)]
    risk = list(small[np.arange(len(small)), np.argmin(small, axis=1)])
    k = best_rung[-1] if best_rung else 0
    for n in samples[~near]:
        k, value = _walk(lambda ks: _contour(h, signal, noise, top * ratio ** np.asarray(ks, float), batch_size,
                                             int(n // batch_size)), k, window)
        best_rung.append(k)
        risk.append(value)
    lrs = _snap(top * ratio ** np.asarray(best_rung, float), values)
    return TunedOnePass(samples=samples, risk=np.minimum.accumulate(np.asarray(risk)), lr=lrs,
                        ladder=np.unique(lrs)[::-1])


def _snap(lrs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rung values equal to one of the table's lrs up to rounding are that lr, exactly."""
    nearest = values[np.abs(np.log(lrs[:, None] / values[None, :])).argmin(axis=1)]
    return np.where(np.isclose(lrs, nearest, rtol=1e-9, atol=0), nearest, lrs)


def _walk(risk_of, k: int, window: int, max_rungs: int = 64) -> tuple[int, float]:
    """The rung with the least risk, searching outward from rung k until the best is inside."""
    ks = list(range(k - window, k + window + 1))
    risks = dict(zip(ks, np.where(np.isnan(values := risk_of(ks)), np.inf, values)))
    while len(risks) < max_rungs:
        best = min(risks, key=risks.get)
        if best == min(risks):
            more = [best - i for i in range(1, window + 1)]
        elif best == max(risks):
            more = [best + i for i in range(1, window + 1)]
        else:
            return best, float(risks[best])
        risks.update(zip(more, np.where(np.isnan(values := risk_of(more)), np.inf, values)))
    best = min(risks, key=risks.get)
    return best, float(risks[best])

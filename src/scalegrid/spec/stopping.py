"""The adaptive stop of a `wsd` run: its spec section and its rules, pure (no torch, no numpy).

    epochs: {max: 64, stop: {rule: val_curve, gamma: 0.02}}     # in the spec: one point, 64 epochs at most

becomes `epochs: [64]` and `train.stop` (in the trial id: the rule and gamma change the result).
At the end of every epoch of the stable phase the trainer hands the rule the epoch-end history
(validation losses, and the diagnostics' gradient statistics) and enters the decay when the
predicted gain of one more epoch no longer pays for it:

    predicted relative gain  <  gamma x cost,    cost = 1 / e   (one more epoch's tokens over the e epochs' spent)

so gamma is an elasticity: with gamma 0.02 an epoch that adds 1/e of the compute spent so far must
lower the loss by at least 2%/e. The epoch it decayed at is the row's `stopped_epoch`; the decay
then lasts `decay_fraction` of the whole run (`schedule.decay_steps_after`), so a stop after k
epochs trains exactly the fixed `wsd` run of k / (1 - decay_fraction) epochs when that is whole.

Rules (each predicts the next epoch's validation gain from the last observed one, L_{e-1} - L_e):

    val_curve    x (L_{e-1} - L_e) / (L_{e-2} - L_{e-1}): the validation curve's own decline,
                 extrapolated geometrically (a gain that shrinks by a ratio keeps shrinking by it)
    grad_stats   x rho_e / rho_{e-1}, rho = SNR / (1 + SNR): the share of the probe gradients that
                 is signal, as seeds/000 proposes (repetition turns gradient into noise as it
                 memorises); needs `train.diagnostics: true`

A gain <= 0 (the validation loss rose) stops at once; a rule without enough history (val_curve:
3 epochs, grad_stats: 2) never stops.

`patience: p` (default 0) tolerates noise: an epoch that is no new best does not stop the run
while it is one of at most p such epochs in a row; the next new best is judged on the curve of
bests, each gain taken per epoch between successive bests (so an uptick that the next epoch
recovers costs nothing but that epoch). With p = 0 this is the rule above, decision for decision.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from scalegrid.spec.strict import Strict, hashed_unless_default

STOP_RULES = ("val_curve", "grad_stats")
MAX_PATIENCE = 16  # epochs; a rule that tolerates more is no longer a stop


class StopSpec(Strict):
    """`epochs.stop`: which rule, and the gain per unit of relative cost that an epoch must buy."""

    rule: Literal["val_curve", "grad_stats"]
    gamma: float = Field(gt=0, le=1000)
    # Epochs without a new best tolerated in a row before the rise stops the run; added after
    # trial ids existed, so 0 (the rule as it was) keeps them.
    patience: int = hashed_unless_default(0, ge=0, le=MAX_PATIENCE)


def epochs_section(value: Any) -> tuple[Any, dict | None]:
    """`epochs:` as written -> (the epochs axis, the stop section or None): `{max: N, stop: {...}}`
    is the axis [N] with a stop; anything else is the axis as it was."""
    if not isinstance(value, dict):
        return value, None
    unknown = set(value) - {"max", "stop"}
    if unknown or "max" not in value or "stop" not in value:
        raise ValueError("epochs: an adaptive epochs section is {max: N, stop: {rule: val_curve | grad_stats, gamma: g}}"
                         + (f"; unknown key {sorted(unknown)[0]!r}" if unknown else ""))
    if isinstance(value["max"], list):
        raise ValueError("epochs.max: one integer (the most epochs an adaptive run may take), not a list")
    return [value["max"]], value["stop"]


def predicted_gain(rule: str, history: list[dict], patience: int = 0) -> float | None:
    """The next epoch's predicted validation gain (nats) from the epoch-end `history` (dicts with
    `val_loss`, and `grad_snr` for grad_stats), or None while the rule does not judge: it lacks
    history, or the last epochs are no new best but within `patience`."""
    losses = [h["val_loss"] for h in history]
    if len(losses) < 2:
        return None
    if not all(math.isfinite(v) for v in losses[-2:]):
        return -math.inf
    best = _bests(losses)
    since_best = len(losses) - 1 - best[-1]
    if since_best:  # no new best this epoch: a rise (or a tie) stops unless patience waits
        return None if since_best <= patience else losses[best[-1]] - losses[-1]
    gain = _gain_per_epoch(losses, best[-2], best[-1])
    if rule == "val_curve":
        if len(best) < 3:
            return None
        previous = _gain_per_epoch(losses, best[-3], best[-2])
        return gain * min(1.0, gain / previous)
    rho = [h["grad_snr"] / (1.0 + h["grad_snr"]) for h in history[-2:]]
    if not all(math.isfinite(r) for r in rho) or rho[0] <= 0:
        return gain
    return gain * min(1.0, rho[1] / rho[0])


def _bests(losses: list[float]) -> list[int]:
    """The epochs (indices) at which the curve reached a new best, the first one included."""
    bests = [0]
    for i, loss in enumerate(losses[1:], start=1):
        if loss < losses[bests[-1]]:
            bests.append(i)
    return bests


def _gain_per_epoch(losses: list[float], before: int, after: int) -> float:
    return (losses[before] - losses[after]) / (after - before)


def should_stop(stop: StopSpec, history: list[dict]) -> bool:
    """Enter the decay after this epoch? (`history`: one dict per epoch-end so far, the last one now.)"""
    gain = predicted_gain(stop.rule, history, stop.patience)
    if gain is None:
        return False
    epochs_done = len(history)
    return gain / history[-1]["val_loss"] < stop.gamma / epochs_done

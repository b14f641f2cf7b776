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
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from scalegrid.spec.strict import Strict

STOP_RULES = ("val_curve", "grad_stats")


class StopSpec(Strict):
    """`epochs.stop`: which rule, and the gain per unit of relative cost that an epoch must buy."""

    rule: Literal["val_curve", "grad_stats"]
    gamma: float = Field(gt=0, le=1000)


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


def predicted_gain(rule: str, history: list[dict]) -> float | None:
    """The next epoch's predicted validation gain (nats) from the epoch-end `history` (dicts with
    `val_loss`, and `grad_snr` for grad_stats), or None while the rule lacks history."""
    losses = [h["val_loss"] for h in history]
    if len(losses) < 2:
        return None
    gain = losses[-2] - losses[-1]
    if gain <= 0 or not math.isfinite(gain):
        return gain if math.isfinite(gain) else -math.inf
    if rule == "val_curve":
        if len(losses) < 3:
            return None
        previous = losses[-3] - losses[-2]
        return gain * min(1.0, gain / previous) if previous > 0 else gain
    rho = [h["grad_snr"] / (1.0 + h["grad_snr"]) for h in history[-2:]]
    if not all(math.isfinite(r) for r in rho) or rho[0] <= 0:
        return gain
    return gain * min(1.0, rho[1] / rho[0])


def should_stop(stop: StopSpec, history: list[dict]) -> bool:
    """Enter the decay after this epoch? (`history`: one dict per epoch-end so far, the last one now.)"""
    gain = predicted_gain(stop.rule, history)
    if gain is None:
        return False
    epochs_done = len(history)
    return gain / history[-1]["val_loss"] < stop.gamma / epochs_done

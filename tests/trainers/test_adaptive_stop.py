"""The adaptive stop: its rules on known curves, and on real lm runs it stops a corpus that
saturates early, lets one that keeps improving run, and a stop trains exactly a fixed wsd run."""

from __future__ import annotations

import re

import numpy as np
import pytest

from scalegrid.errors import UserError
from scalegrid.grid import identity
from scalegrid.spec import TrainSpec, parse_spec
from scalegrid.spec.stopping import StopSpec, predicted_gain, should_stop
from scalegrid.trainers import get_trainer


def history(losses, snrs=None):
    return [{"val_loss": v, "grad_snr": s} for v, s in zip(losses, snrs or [1.0] * len(losses))]


def test_rules_on_known_curves():
    improving = [3.0 / (e + 1) ** 0.5 + 1.0 for e in range(1, 9)]  # a power law far from its floor
    saturated = [3.0, 2.0, 1.9, 1.89, 1.888]
    val = StopSpec(rule="val_curve", gamma=0.05)
    assert not any(should_stop(val, history(improving[:e])) for e in range(1, 9))
    assert not should_stop(val, history(saturated[:2])) and should_stop(val, history(saturated[:4]))
    assert should_stop(val, history([3.0, 2.0, 2.1]))  # the loss turned up: stop at once
    assert predicted_gain("val_curve", history([3.0, 2.0, 1.5])) == pytest.approx(0.5 * 0.5)
    grads = StopSpec(rule="grad_stats", gamma=0.05)
    # the same observed gain, but the probe gradients turned to noise: the predicted gain shrinks with rho
    assert should_stop(grads, history([3.0, 2.9], [1.0, 0.02])) and not should_stop(grads, history([3.0, 2.9], [1.0, 1.0]))
    assert predicted_gain("grad_stats", history([3.0, 2.9], [1.0, 1 / 3])) == pytest.approx(0.1 * 0.5)


def old_rule_stops(stop: StopSpec, losses: list[float]) -> bool:
    """The rule as it was before `patience` (a rise stops at once), written out for comparison."""
    if len(losses) < 2:
        return False
    gain = losses[-2] - losses[-1]
    if gain <= 0:
        predicted = gain
    elif len(losses) < 3:
        return False
    else:
        previous = losses[-3] - losses[-2]
        predicted = gain * min(1.0, gain / previous) if previous > 0 else gain
    return predicted / losses[-1] < stop.gamma / len(losses)


def first_stop(stop: StopSpec, losses: list[float]) -> int | None:
    """The epoch (1-based) after which the rule enters the decay, judged at every epoch's end."""
    return next((e for e in range(1, len(losses) + 1) if should_stop(stop, history(losses[:e]))), None)


def test_patience_zero_is_the_rule_as_it_was():
    rng = np.random.default_rng(0)
    for _ in range(300):
        losses = list(3.0 / np.arange(1, 13) ** rng.uniform(0.1, 1.0) + 1.0 + rng.normal(0, 0.02, 12))
        stop = StopSpec(rule="val_curve", gamma=float(rng.choice([0.01, 0.05, 0.3])))
        expected = next((e for e in range(1, 13) if old_rule_stops(stop, losses[:e])), None)
        assert first_stop(stop, losses) == expected


def test_patience_tolerates_a_noisy_uptick_on_known_curves():
    # a falling curve with one noisy uptick at epoch 4 that epoch 5 recovers, saturating after epoch 7
    noisy = [3.0, 2.4, 2.1, 2.15, 1.85, 1.75, 1.70, 1.68, 1.67, 1.668, 1.667, 1.6665]
    strict, patient = StopSpec(rule="val_curve", gamma=0.05), StopSpec(rule="val_curve", gamma=0.05, patience=1)
    assert first_stop(strict, noisy) == 4  # patience 0: the uptick stops it
    without_uptick = noisy[:3] + noisy[4:]  # the same curve had epoch 4 not happened
    assert first_stop(patient, noisy) == first_stop(strict, without_uptick) + 1 == 8  # the uptick costs one epoch
    # the gain after a recovered uptick is per epoch between the bests: (2.1 - 1.85) / 2, against 2.4 - 2.1
    assert predicted_gain("val_curve", history(noisy[:5]), patience=1) == pytest.approx(0.125 * 0.125 / 0.3)
    assert predicted_gain("val_curve", history(noisy[:4]), patience=1) is None  # waiting, not judging
    # two upticks in a row exhaust patience 1 (the second one stops), not patience 2
    twice = [3.0, 2.4, 2.1, 2.15, 2.2, 1.8, 1.7]
    assert first_stop(patient, twice) == 5
    assert first_stop(StopSpec(rule="val_curve", gamma=0.05, patience=2), twice) is None
    # a real U: patience waits `patience` epochs past the minimum, never more
    u_shape = [3.0, 2.2, 1.9, 1.85, 1.9, 2.0, 2.2, 2.5]
    assert [first_stop(StopSpec(rule="val_curve", gamma=1e-3, patience=p), u_shape) for p in (0, 1, 2)] == [5, 6, 7]
    # grad_stats reads the same curve of bests
    assert first_stop(StopSpec(rule="grad_stats", gamma=0.05, patience=1), noisy) > 4


def test_the_spec_section_and_its_bad_input():
    base = {"name": "s", "trainer": "lm", "model": "llama-50k", "data": {"unique_tokens": 4096}, "lr": 1e-3,
            "train": {"schedule": "wsd"}}
    spec = parse_spec({**base, "epochs": {"max": 64, "stop": {"rule": "val_curve", "gamma": "2e-2"}}})
    assert spec.epochs == [64] and spec.train.stop == StopSpec(rule="val_curve", gamma=0.02)
    assert identity(spec.train)["stop"] == {"rule": "val_curve", "gamma": 0.02}  # in the trial id
    assert "stop" not in identity(TrainSpec(schedule="wsd"))
    patient = parse_spec({**base, "epochs": {"max": 64, "stop": {"rule": "val_curve", "gamma": 0.02, "patience": 1}}})
    assert identity(patient.train)["stop"] == {"rule": "val_curve", "gamma": 0.02, "patience": 1}  # in the id only when set
    for epochs, train, message in [
        ({"max": 64}, {}, "epochs: an adaptive epochs section is"),
        ({"max": [8, 64], "stop": {"rule": "val_curve", "gamma": 1}}, {}, "epochs.max: one integer"),
        ({"max": 64, "stop": {"rule": "val_curve", "gamma": 0}}, {}, "epochs.stop.gamma: must be > 0"),
        ({"max": 64, "stop": {"rule": "loss", "gamma": 1}}, {}, "epochs.stop.rule"),
        ({"max": 0, "stop": {"rule": "val_curve", "gamma": 1}}, {}, "epochs"),
        ({"max": 64, "stop": {"rule": "val_curve", "gamma": 1}}, {"schedule": "cosine"}, "needs train.schedule: wsd"),
        ({"max": 64, "stop": {"rule": "grad_stats", "gamma": 1}}, {}, "set train.diagnostics: true"),
        ({"max": 64, "stop": {"rule": "val_curve", "gamma": 1, "patience": -1}}, {}, "epochs.stop.patience: must be between 0 and 16"),
        ({"max": 64, "stop": {"rule": "val_curve", "gamma": 1, "patience": 17}}, {}, "epochs.stop.patience: must be between 0 and 16"),
        ({"max": 64, "stop": {"rule": "val_curve", "gamma": 1, "patience": 1.5}}, {}, "epochs.stop.patience"),
        ({"max": 64, "stop": {"rule": "val_curve", "gamma": 1, "patient": 1}}, {}, "did you mean 'patience'"),
    ]:
        with pytest.raises(UserError, match=message) as err:
            parse_spec({**base, "epochs": epochs, "train": {"schedule": "wsd", **train}})
        assert "\n" not in str(err.value)


def test_the_adaptive_section_adds_each_rule_and_the_fixed_epochs_at_the_points_it_picks():
    """`adaptive:` at one grid point: the fixed epoch counts and one run per rule, with the ids the
    same trials have when written as grids of their own (`epochs: [...]`, `epochs: {max, stop}`)."""
    from scalegrid.data.identity import describe
    from scalegrid.grid import expand
    from scalegrid.orchestrator.planning.stage_graph import build
    from scalegrid.spec import load_sweep

    base = {"name": "s", "trainer": "lm", "model": ["llama-50k", "llama-200k"], "lr": 1e-3, "epochs": 4,
            "data": {"source": "synthetic", "unique_tokens": 4096}, "train": {"schedule": "wsd", "diagnostics": True}}
    rules = [{"rule": "val_curve", "gamma": 0.02, "patience": 1}, {"rule": "grad_stats", "gamma": 0.02}]
    sweep = load_sweep({**base, "adaptive": {"where": [{"model": "llama-50k"}], "max": 32, "stop": rules, "epochs": [4, 8, 32]}})
    graph = build(sweep, describe(sweep.data))
    ids = {t.trial_id for t in graph.trials}
    one = {**base, "model": "llama-50k"}
    fixed = expand(load_sweep({**one, "epochs": [4, 8, 32]}), describe(sweep.data))
    adaptive = [expand(load_sweep({**one, "epochs": {"max": 32, "stop": r}}), describe(sweep.data))[0] for r in rules]
    grid = expand(load_sweep(base), describe(sweep.data))  # the two sizes at 4 epochs
    assert ids == {t.trial_id for t in [*grid, *fixed, *adaptive]} and len(graph.trials) == 2 + 2 + 2
    bad = [
        ({"stop": []}, "adaptive.stop: empty axis"),
        ({"stop": [{"rule": "val_curve"}]}, "adaptive.stop[0].gamma"),
        ({"max": 0}, "adaptive.max: must be between 1 and 100000"),
        ({"where": [{"model": "llama-1m"}]}, "adaptive.where[0]: {'model': 'llama-1m'} matches no grid point"),
        ({"where": [{"lr": 0}]}, "adaptive.where[0].lr"),
        ({"where": [{"epochs": 8}]}, "adaptive.where[0]: {'epochs': 8} matches no grid point"),
    ]
    for change, message in bad:
        with pytest.raises(UserError, match=re.escape(message)) as err:
            build(*(lambda sw: (sw, describe(sw.data)))(load_sweep({**base, "adaptive": {"max": 32, "stop": rules, **change}})))
        assert "\n" not in str(err.value)
    for spec, message in [
        ({**base, "train": {"schedule": "cosine"}}, "adaptive: needs train.schedule: wsd"),
        ({**base, "train": {"schedule": "wsd"}}, "adaptive.stop[1]: the stop rule grad_stats reads the gradient statistics"),
        ({**base, "epochs": {"max": 8, "stop": rules[0]}}, "adaptive: the whole spec is adaptive already"),
    ]:
        with pytest.raises(UserError, match=re.escape(message)):
            load_sweep({**spec, "adaptive": {"max": 32, "stop": rules}})


def run(trial):
    return get_trainer("lm")(trial, lambda row: None)


ADAPTIVE = {"schedule": "wsd", "warmup_fraction": 0.0, "eval_every": 1000, "diagnostics": True, "probe_batches": 2}


@pytest.mark.parametrize("rule", ["val_curve", "grad_stats"])
def test_stops_a_saturating_corpus_early_and_lets_an_improving_one_run(lm_trial, rule):
    stop = {"rule": rule, "gamma": 0.05}
    tiny = run(lm_trial(unique_tokens=512, epochs=24, lr=1e-2, train={**ADAPTIVE, "batch_size": 8, "stop": stop}))
    assert tiny.status == "COMPLETED" and tiny.stopped_epoch is not None
    assert tiny.tokens_seen < 0.7 * 24 * 512  # stopped well before the 24-epoch run's decay start (19.2)
    k = tiny.stopped_epoch
    assert tiny.steps == 2 * k + round(0.25 * 2 * k)  # 2 steps per epoch; the decay: a fifth of the run
    improving = run(lm_trial(unique_tokens=2048, epochs=4, lr=3e-3, train={**ADAPTIVE, "stop": stop}))
    assert improving.stopped_epoch is None and improving.tokens_seen == 4 * 2048


def test_a_stop_trains_exactly_the_fixed_wsd_run_it_becomes(lm_trial):
    """Stopped after k = 4 epochs, the decay is 1 epoch: the fixed 5-epoch wsd run, to the bit on a CPU."""
    train = {**ADAPTIVE, "batch_size": 8, "diagnostics": False}
    adaptive = run(lm_trial(unique_tokens=512, epochs=40, train={**train, "stop": {"rule": "val_curve", "gamma": 1000}}))
    assert adaptive.stopped_epoch == 3  # the first epoch val_curve can judge; gamma 1000 stops it there
    fixed = run(lm_trial(unique_tokens=512, epochs=4, train={**train, "decay_fraction": 0.25}))
    assert adaptive.steps == fixed.steps == 8  # 2 steps per epoch: 6 stable, 2 decaying
    assert adaptive.val_loss == fixed.val_loss and adaptive.tokens_seen == fixed.tokens_seen

"""Gradient accumulation: micro-batches of an optimizer batch give the batch's own update."""

from __future__ import annotations

import dataclasses
import math

import torch

from scalegrid.trainers import lm, lm_run
from scalegrid.trainers.losswindow import LossWindow
from scalegrid.trainers.schedule import lr_at


def parameters_after_steps(trial, steps: int, loss=None) -> list[torch.Tensor]:
    """The model's parameters after `steps` optimizer steps of the real trainer's step, in float64."""
    run = lm_run.Run.build(trial, None, None)
    run.model.double()  # in place: the optimizer keeps the same parameters
    if loss is not None:
        run = dataclasses.replace(run, loss=loss)
    state = lm_run.TrainState(run.model, run.optimizer, LossWindow(run.t.log_every, run.device, run.vocab_size))
    for step in range(steps):
        state.set_lr(lr_at(step, run.total_steps, trial.config.lr, run.t))
        assert lm.train_step(run, state, step) is None
    return [p.detach().clone() for p in run.model.parameters()]


def relative_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(((x - y).abs().max() / y.abs().max()).item() for x, y in zip(a, b))


def test_accumulated_micro_batches_equal_one_batch(lm_trial):
    """30 sequences in batches of 16: steps of 16 and 14 sequences, 10 steps over 5 epochs. In
    micro-batches of 4 the 14 are 4 + 4 + 4 + 2 (uneven); in micro-batches of 3 a 16 ends with 1."""
    def trial(micro):
        return lm_trial(unique_tokens=30 * 32, epochs=5, train={"batch_size": 16, "micro_batch_size": micro, "log_every": 2})

    whole = parameters_after_steps(trial("auto"), 10)  # auto on a CPU: the whole batch at once
    assert lm_run.Run.build(trial("auto"), None, None).micro_batch == 16
    for micro in (4, 3):
        assert relative_difference(parameters_after_steps(trial(micro), 10), whole) <= 1e-5


def test_a_plain_mean_of_micro_batch_means_is_not_the_batch_mean(lm_trial):
    """What the test above would catch: weighting every micro-batch alike is wrong for 4 + 4 + 4 + 2."""
    def trial(micro):
        return lm_trial(unique_tokens=30 * 32, epochs=5, train={"batch_size": 16, "micro_batch_size": micro, "log_every": 2})

    whole = parameters_after_steps(trial(16), 10)

    def mean_of_means(model, x, num_tokens):
        micro_batches = math.ceil(num_tokens / (x.shape[1] - 1) / 4)
        return model(input_ids=x, labels=x).loss / micro_batches

    assert relative_difference(parameters_after_steps(trial(4), 10, loss=mean_of_means), whole) > 1e-3


def test_each_process_takes_its_share_in_as_many_micro_batches():
    """W processes split a batch; every one runs the same number of micro-batches (DDP's and
    FSDP2's collectives pair up by count), a short share padded with a weight-0 micro-batch."""
    from scalegrid.trainers.parallelize import Ranks

    batch = torch.arange(5)[:, None].repeat(1, 3)  # 5 sequences: shares of 3 and 2
    first, second = Ranks(0, 2).micro_batches(batch, 2), Ranks(1, 2).micro_batches(batch, 2)
    assert [m[:, 0].tolist() for m, _ in first] == [[0, 1], [2]] and [w for _, w in first] == [2.0, 2.0]
    assert [m[:, 0].tolist() for m, _ in second] == [[3, 4], [0]] and [w for _, w in second] == [2.0, 0.0]
    last = Ranks(1, 2).micro_batches(batch[:1], 2)  # one sequence: the second share is empty
    assert [w for _, w in last] == [0.0]
    assert [(m[:, 0].tolist(), w) for m, w in Ranks().micro_batches(batch, 2)] == [([0, 1], 1.0), ([2, 3], 1.0), ([4], 1.0)]

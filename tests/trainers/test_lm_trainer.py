"""The lm trainer on a real 50k-parameter transformers Llama and a real token cache."""

from __future__ import annotations

import math

import pytest
import torch

from scalegrid.data import sequences
from scalegrid.trainers import lm
from scalegrid.trainers import get_trainer
from scalegrid.trial import CURVE_COLUMNS
from scalegrid.shapes import PRESETS


def run(trial):
    rows = []
    result = get_trainer("lm")(trial, rows.append)
    return result, rows


def test_trains_reports_and_counts(lm_trial):
    trial = lm_trial(epochs=2, unique_tokens=2048, train={"eval_every": 4})
    result, rows = run(trial)
    assert result.status == "COMPLETED" and result.error is None
    steps = 2 * 2048 // 32 // 8  # epochs * sequences / batch
    assert [r["step"] for r in rows] == [4, 8, 12, 16] and steps == 16
    assert result.curves == rows and result.steps == steps
    assert all(set(CURVE_COLUMNS) <= set(r) for r in rows)
    assert rows[-1]["epoch"] == 2.0 and rows[-1]["tokens_seen"] == result.tokens_seen == 2 * 2048
    val = [r["val_loss"] for r in rows]
    assert val[-1] < val[0] < math.log(257)  # learning, from below uniform guessing
    assert result.val_loss == val[-1] and result.best_val_loss == min(val)
    assert math.isfinite(result.train_loss) and result.train_loss < math.log(257)
    shape = PRESETS["llama-50k"]()
    assert result.params == shape.num_params(257)
    assert result.params_nonembed == shape.num_params(257, non_embedding=True)
    assert result.flops == shape.flops_per_token(257, 32) * result.tokens_seen
    assert all(b["wall_s"] >= a["wall_s"] for a, b in zip(rows, rows[1:]))


def test_same_seed_same_result_other_seed_not(lm_trial):
    a, _ = run(lm_trial(seed=3))
    b, _ = run(lm_trial(seed=3))
    c, _ = run(lm_trial(seed=4))
    assert (a.val_loss, a.train_loss) == (b.val_loss, b.train_loss)
    assert a.val_loss != c.val_loss


def test_every_epoch_reshuffles_all_sequences():
    orders = sequences.epoch_orders(64, 3, seed=0, device=torch.device("cpu"))
    assert all(sorted(o.tolist()) == list(range(64)) for o in orders)
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    assert torch.equal(orders, sequences.epoch_orders(64, 3, seed=0, device=torch.device("cpu")))
    assert not torch.equal(orders[0], sequences.epoch_orders(64, 1, seed=1, device=torch.device("cpu"))[0])


def test_sequential_order_visits_the_corpus_in_order_every_epoch_and_changes_the_result(lm_trial):
    orders = sequences.epoch_orders(64, 3, seed=0, device=torch.device("cpu"), shuffled=False)
    assert all(o.tolist() == list(range(64)) for o in orders)
    shuffled, _ = run(lm_trial(epochs=2))
    sequential, _ = run(lm_trial(epochs=2, data_order="sequential"))
    assert shuffled.status == sequential.status == "COMPLETED" and shuffled.val_loss != sequential.val_loss


def test_partial_last_batch_still_sees_exactly_the_budget(lm_trial):
    trial = lm_trial(unique_tokens=32 * 20, epochs=2, train={"batch_size": 8, "eval_every": 100})  # 20 = 8 + 8 + 4
    result, rows = run(trial)
    assert result.status == "COMPLETED" and result.steps == 6
    assert result.tokens_seen == 2 * 32 * 20 and [r["step"] for r in rows] == [6]


@pytest.mark.parametrize("lr, weight_decay", [(1e4, 0.0), (1e2, 0.1)])
def test_huge_lr_is_diverged_not_an_exception(lm_trial, lr, weight_decay):
    result, _ = run(lm_trial(lr=lr, weight_decay=weight_decay, epochs=2))
    assert result.status == "DIVERGED"
    assert "at step" in result.error and math.isnan(result.val_loss) and math.isnan(result.train_loss)
    assert result.tokens_seen < 2 * 2048 and result.params > 0


def test_loss_window_names_the_first_bad_step():
    window = lm.LossWindow(4, torch.device("cpu"), vocab_size=257)
    for step, loss in [(5, 2.0), (6, float("nan")), (7, float("inf"))]:
        window.add(step, torch.tensor(loss), torch.tensor(1.0))
    loss, error = window.read()
    assert math.isnan(loss) and error == "non-finite loss at step 6"
    window.add(9, torch.tensor(3.0), torch.tensor(0.0))  # activations overflowed: the model went silent
    assert "non-finite activations or gradient at step 9" in window.read()[1]
    window.add(10, torch.tensor(1e3), torch.tensor(1.0))
    assert "loss exploded" in window.read()[1]
    window.add(11, torch.tensor(2.0), torch.tensor(1.0))
    window.add(12, torch.tensor(4.0), torch.tensor(1.0))
    assert window.read() == (3.0, None)


def test_budget_must_be_whole_sequences_within_the_corpus(lm_trial):
    with pytest.raises(ValueError, match="not a multiple of train.seq_len"):
        run(lm_trial(unique_tokens=2050))
    with pytest.raises(ValueError, match="exceeds the corpus"):
        run(lm_trial(unique_tokens=32 * 10**6))


def test_schedule_warms_up_and_decays(lm_trial):
    _, rows = run(lm_trial(epochs=2, train={"eval_every": 1, "warmup_fraction": 0.25, "min_lr_ratio": 0.1}))
    lrs = [r["lr"] for r in rows]  # rows at steps 1..16: the lr of the step about to run, then the last
    assert lrs[:3] == pytest.approx([3e-3 * k / 4 for k in (2, 3, 4)])
    assert max(lrs) == pytest.approx(3e-3) and lrs[-1] == pytest.approx(3e-4)
    assert all(b <= a + 1e-15 for a, b in zip(lrs[3:], lrs[4:]))

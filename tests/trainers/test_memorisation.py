"""Memorisation: exact n-gram matching, its bad input, and its measurement at a trial's end
(which changes no loss)."""

from __future__ import annotations

import numpy as np
import pytest

from scalegrid.errors import UserError
from scalegrid.spec import parse_spec
from scalegrid.trainers import get_trainer
from scalegrid.trainers.memorisation import memorised_fraction, ngram_keys


def test_ngram_matching_is_exact():
    train = np.array([5, 6, 7, 8, 9, 5, 6])
    keys = np.unique(ngram_keys(train, 3))
    assert len(keys) == 5 and ngram_keys(np.array([[1, 2]]), 3).shape == (1, 0)
    generated = np.array([[5, 6, 7, 1], [9, 5, 6, 7]])  # 3-grams: 567 yes, 671 no; 956 yes, 567 yes
    assert memorised_fraction(generated, keys, 3) == pytest.approx(3 / 4)
    assert (ngram_keys(np.array([[1, 2, 3]]), 3) != ngram_keys(np.array([[3, 2, 1]]), 3)).all()


def test_memorisation_is_measured_at_the_end_without_changing_a_loss(lm_trial):
    train = {"batch_size": 8, "eval_every": 1000, "memorisation_samples": 8, "memorisation_ngram": 1}
    result = get_trainer("lm")(lm_trial(unique_tokens=512, epochs=2, train=train), lambda row: None)
    plain = get_trainer("lm")(lm_trial(unique_tokens=512, epochs=2, train={**train, "memorisation_samples": 0}),
                              lambda row: None)
    assert result.val_loss == plain.val_loss and plain.memorised_train is None
    # unigrams: the bytes of the training text, which any trained model generates often
    assert 0 < result.memorised_val <= 1 and 0 < result.memorised_train <= 1


def test_an_ngram_longer_than_the_generated_half_is_refused():
    spec = {"name": "s", "trainer": "lm", "model": "llama-50k", "data": {"unique_tokens": 4096}, "epochs": 1, "lr": 1e-3,
            "train": {"seq_len": 16, "memorisation_samples": 4, "memorisation_ngram": 9}}
    with pytest.raises(UserError, match="memorisation_ngram 9 is longer than the generated half"):
        parse_spec(spec)
    with pytest.raises(UserError, match="memorisation_samples needs trainer lm"):
        parse_spec({"name": "s", "trainer": "linreg", "model": {"dims": 8}, "epochs": 1, "lr": 0.1,
                    "data": {"source": "gaussian", "unique_tokens": 64}, "train": {"memorisation_samples": 4}})

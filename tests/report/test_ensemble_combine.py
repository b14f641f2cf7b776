"""The report says how the ensembles' members were combined (`ensemble.combine`)."""

from __future__ import annotations

import pandas as pd

from scalegrid.report.sections.ensembles import combine_sentence


def test_combine_sentence_names_the_way_members_were_averaged():
    logits = pd.DataFrame({"members": [1, 2, 3], "combine": [None, "logits", "logits"]})
    assert "averaging their logits" in combine_sentence(logits) and "ensemble.combine: logits" in combine_sentence(logits)
    before_the_column = pd.DataFrame({"members": [1, 2]})  # rows written before `combine` existed: probabilities
    assert "averaging their next-token probabilities" in combine_sentence(before_the_column)
    both = pd.DataFrame({"members": [2, 2, 3], "combine": ["probs", "logits", "logits"]})
    sentence = combine_sentence(both)
    assert "both ways" in sentence and "logits (softmax of the mean logits) (2 rows)" in sentence and "(1 row)" in sentence

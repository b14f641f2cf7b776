"""Downstream evaluation through the real lm-evaluation-harness, offline: a local task (tests/data),
tiny trained Llamas, single models through the harness's HFLM and ensembles through `EnsembleLM`."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from scalegrid import grid
from scalegrid.data.eval_tasks import TaskRef
from scalegrid.shapes import PRESETS
from scalegrid.spec import TrainSpec
from scalegrid.storage import layout
from scalegrid.trainers import get_trainer, harness
from scalegrid.trainers.weights import load_model, local_model_dir
from scalegrid.trial import Trial, TrialConfig

TASKS = Path(__file__).parents[1] / "data" / "eval_tasks"
TINY_FACTS = TaskRef("tiny_facts", "1.0", "multiple_choice", str(TASKS / "tiny_facts.yaml"))


@pytest.fixture(scope="module")
def members(tiny_tokens, tmp_path_factory):
    """Three members of one grid point, trained on the tests' synthetic corpus, weights saved."""
    identity, path = tiny_tokens
    results = tmp_path_factory.mktemp("harness")
    shutil.copytree(path, results / "cache" / "tokens" / identity.key)
    trials = []
    for m in range(3):
        config = TrialConfig(
            trainer="lm", model=PRESETS["llama-50k"](), data=identity.config, unique_tokens=2048, epochs=2, lr=1e-2,
            weight_decay=0.1, seed=0, member=m, train=TrainSpec(batch_size=8, seq_len=64, eval_every=16),
        )
        trial = Trial(trial_id=grid.trial_id(config), sweep="t", model_label="llama-50k", config=config,
                      results=layout(results), data_key=identity.key, save_model=True)
        get_trainer("lm")(trial, lambda row: None)
        trials.append(trial)
    return trials


def questions() -> list[dict]:
    return [json.loads(line) for line in (TASKS / "tiny_facts.jsonl").read_text().splitlines()]


def hand_loglikelihoods(trials: list[Trial], combine: str) -> list[list[float]]:
    """log p(" " + choice | query) of every question's choices under the members' averaged
    distribution, computed here from each member's log-probabilities (no harness)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(local_model_dir(trials[0].results, trials[0].trial_id)))
    models = [load_model(t.results, t.trial_id) for t in trials]
    out = []
    for q in questions():
        context = tokenizer.encode(q["query"], add_special_tokens=False)
        row = []
        for choice in q["choices"]:
            answer = tokenizer.encode(" " + choice, add_special_tokens=False)
            ids = torch.tensor([context + answer])
            with torch.no_grad():
                logits = torch.stack([m(ids[:, :-1]).logits[0].double() for m in models])  # [k, T, V]
            if combine == "probs":
                logprobs = torch.logsumexp(torch.log_softmax(logits, -1), 0) - math.log(len(models))
            else:
                logprobs = torch.log_softmax(logits.mean(0), -1)
            positions = torch.arange(len(context) - 1, len(context) + len(answer) - 1)
            row.append(float(logprobs[positions, torch.tensor(answer)].sum()))
        out.append(row)
    return out


@pytest.mark.parametrize("combine", ["probs", "logits"])
def test_ensemble_accuracy_equals_a_hand_computation_from_the_members(members, combine, monkeypatch, tmp_path):
    """The harness scores the ensemble through `EnsembleLM`: every choice's log-likelihood is the
    hand-computed log of the members' averaged distribution, and so its accuracy is the hand's."""
    monkeypatch.chdir(tmp_path)  # the task's data file is found relative to its YAML, not here
    hand = hand_loglikelihoods(members, combine)
    gold = [q["gold"] for q in questions()]
    hand_acc = sum(max(range(len(row)), key=row.__getitem__) == g for row, g in zip(hand, gold)) / len(gold)

    lm = harness.language_model(members, combine, batch_size=7, device=torch.device("cpu"))
    assert isinstance(lm, harness.EnsembleLM)
    from lm_eval.api.instance import Instance

    requests = [Instance("loglikelihood", {}, (q["query"], " " + c), i) for i, q in enumerate(questions()) for c in q["choices"]]
    scored = [ll for ll, _ in lm.loglikelihood(requests, disable_tqdm=True)]
    assert scored == pytest.approx([ll for row in hand for ll in row], rel=1e-5, abs=1e-5)

    (scores,) = harness.evaluate_models(members, combine=combine, tasks=[TINY_FACTS], num_fewshot=0, limit=None, batch_size=5)
    assert scores.error is None and scores.samples == len(gold) and scores.truncated == 0
    assert scores.metrics["acc"][0] == hand_acc
    assert scores.metrics["acc"][1] == pytest.approx(math.sqrt(hand_acc * (1 - hand_acc) / (len(gold) - 1)))


def test_single_models_score_as_the_harness_own_hflm_does(members, monkeypatch, tmp_path):
    """A single model goes through the harness's HFLM: the same scores as HFLM on its directory."""
    from lm_eval.models.huggingface import HFLM

    monkeypatch.chdir(tmp_path)
    first = members[0]
    (ours,) = harness.evaluate_models([first], combine="probs", tasks=[TINY_FACTS], num_fewshot=0, limit=12, batch_size=8)
    directory = str(local_model_dir(first.results, first.trial_id))
    theirs = HFLM(pretrained=directory, tokenizer=directory, device="cpu", batch_size=8, dtype="float32")
    spec = harness.task_spec(TINY_FACTS, first, tmp_path)
    reference = harness._scores(theirs, TINY_FACTS, spec, num_fewshot=0, limit=12)
    assert ours.metrics == reference.metrics and ours.samples == reference.samples == 12
    assert ours.max_length == 64  # the context it was trained on (train.seq_len)


def test_long_prompts_are_cut_from_the_left_and_counted_and_too_long_answers_refused(members, tmp_path):
    """Three shots make prompts longer than the 64-token context: scored with left truncation,
    counted; a task whose answers alone exceed the context fails alone, in one line."""
    (shots,) = harness.evaluate_models(members[:1], combine="probs", tasks=[TINY_FACTS], num_fewshot=3, limit=6, batch_size=8)
    assert shots.error is None and shots.truncated == 6 * 4  # every request of every question

    task_dir = tmp_path / "long"
    task_dir.mkdir()
    (task_dir / "long.jsonl").write_text(json.dumps({"query": "q", "choices": ["x" * 80, "y"], "gold": 0}) + "\n")
    (task_dir / "long.yaml").write_text((TASKS / "tiny_facts.yaml").read_text()
                                        .replace("task: tiny_facts", "task: long").replace("tiny_facts.jsonl", "long.jsonl"))
    long = TaskRef("long", "1.0", "multiple_choice", str(task_dir / "long.yaml"))
    failed, fine = harness.evaluate_models(members[:1], combine="probs", tasks=[long, TINY_FACTS], num_fewshot=0, limit=4, batch_size=8)
    assert failed.metrics == {} and "does not fit the model's context of 64 tokens" in failed.error
    assert "\n" not in failed.error and fine.error is None and fine.samples == 4

"""Ensemble evaluation, teacher sampling and distillation on real tiny transformers Llamas."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from scalegrid import grid
from scalegrid.data import sequences
from scalegrid.trainers import distill, ensemble
from scalegrid.storage import layout
from scalegrid.trainers import get_trainer
from scalegrid.trainers.weights import load_model
from scalegrid.trial import TokenDistill


@pytest.fixture(scope="module")
def members(tiny_tokens, tmp_path_factory):
    """Three members (member 0..2) of one grid point, trained with their final weights saved."""
    from scalegrid.spec import TrainSpec
    from scalegrid.trial import Trial, TrialConfig
    from scalegrid.shapes import PRESETS

    identity, path = tiny_tokens
    results = tmp_path_factory.mktemp("ensemble")
    shutil.copytree(path, results / "cache" / "tokens" / identity.key)  # the members' results hold their corpus
    trials, results_of = [], []
    for m in range(3):
        config = TrialConfig(
            trainer="lm", model=PRESETS["llama-50k"](), data=identity.config,
            unique_tokens=2048, epochs=1, lr=3e-3, weight_decay=0.1, seed=0, member=m,
            train=TrainSpec(batch_size=8, seq_len=32, eval_every=8),
        )
        trial = Trial(trial_id=grid.trial_id(config), sweep="t", model_label="llama-50k", config=config,
                      results=layout(results), data_key=identity.key, save_model=True)
        trials.append(trial)
        results_of.append(get_trainer("lm")(trial, lambda row: None))
    return trials, results_of


def test_member_zero_is_the_plain_trial_and_members_differ(members):
    trials, results = members
    plain = trials[0].config.model_copy(update={"member": 0})
    assert "member" not in grid.identity(plain) and grid.trial_id(plain) == trials[0].trial_id
    assert len({t.trial_id for t in trials}) == 3 and len({t.config.member_seed for t in trials}) == 3
    assert len({r.val_loss for r in results}) == 3  # other initialisation and data order


def test_ensemble_invariants(members, monkeypatch):
    trials, results = members
    ids, root = [t.trial_id for t in trials], trials[0].results
    _, val, _ = sequences.load_sequences(trials[0], torch.device("cpu"))
    forwards = []
    real_load = ensemble.load_model

    def counting_load(*args, **kwargs):  # the real model, with a hook that counts forward passes
        model = real_load(*args, **kwargs)
        model.register_forward_hook(lambda *_: forwards.append(args[1]))
        return model

    monkeypatch.setattr(ensemble, "load_model", counting_load)
    losses, own, _ = ensemble.evaluate_members(ids, root, val, batch_size=8)
    batches = math.ceil(len(val) / 8)
    assert [forwards.count(tid) for tid in ids] == [batches] * 3  # one pass per member for every k

    # k = 1 is the member's own validation loss, as its trial reported it
    assert abs(losses[0] - results[0].val_loss) < 1e-5
    assert all(abs(o - r.val_loss) < 1e-5 for o, r in zip(own, results))
    # Jensen: the ensemble of k members is never worse than their mean loss
    for k in range(1, 4):
        assert losses[k - 1] <= np.mean(own[:k]) + 1e-9
    # the order of members does not change an ensemble's loss
    reordered, _, _ = ensemble.evaluate_members(ids[::-1], root, val, batch_size=8)
    assert abs(reordered[-1] - losses[-1]) < 1e-9
    swapped, _, _ = ensemble.evaluate_members([ids[1], ids[0]], root, val, batch_size=8)
    assert abs(swapped[-1] - losses[1]) < 1e-9


def test_teacher_sampling_is_seeded_and_matches_full_forward(members):
    trials, _ = members
    teachers = [load_model(trials[0].results, t.trial_id) for t in trials[:2]]
    kwargs = dict(sequences=5, seq_len=16, start_token=256, seed=3, batch_size=4)
    first = distill.generate(teachers, **kwargs)
    assert first.shape == (5, 16) and (first[:, 0] == 256).all() and first.max() < 257
    assert (distill.generate(teachers, **kwargs) == first).all()
    assert not (distill.generate(teachers, **{**kwargs, "seed": 4}) == first).all()

    # the KV-cache loop samples from the same averaged distribution as full forward passes
    generator = torch.Generator().manual_seed(3)
    for start in (0, 4):
        ids = torch.full((min(4, 5 - start), 1), 256)
        for _ in range(15):
            logprobs = distill.teacher_logprobs(teachers, ids)[:, -1]
            ids = torch.cat([ids, torch.multinomial(logprobs.exp(), 1, generator=generator)], dim=1)
        assert (ids.numpy() == first[start : start + len(ids)]).all()


def test_token_distillation_is_cross_entropy_at_zero_kl_weight(members, tiny_tokens):
    trials, results = members
    teacher = [t.trial_id for t in trials]

    def student(kl_weight: float):
        config = trials[0].config.model_copy(
            update={"distill": TokenDistill(teacher=tuple(teacher), temperature=2.0, kl_weight=kl_weight)}
        )
        trial = trials[0].model_copy(update={"trial_id": grid.trial_id(config), "config": config, "stage": "distill", "save_model": False})
        return get_trainer("distill")(trial, lambda row: None)

    plain = student(0.0)
    assert plain.status == "COMPLETED" and abs(plain.val_loss - results[0].val_loss) < 1e-5  # CE only: member 0's run
    mixed = student(0.9)
    assert mixed.status == "COMPLETED" and abs(mixed.val_loss - results[0].val_loss) > 1e-4


def test_logit_averaging_is_the_softmax_of_the_mean_logits(members):
    """combine: logits against its definition, computed here in one batch: -log softmax(mean_m z_m)[y]."""
    trials, results = members
    ids, root = [t.trial_id for t in trials], trials[0].results
    _, val, _ = sequences.load_sequences(trials[0], torch.device("cpu"))
    with torch.no_grad():
        logits = [load_model(root, tid)(input_ids=val).logits[:, :-1].double() for tid in ids]
    targets = val[:, 1:].flatten()
    expected = [
        torch.nn.functional.cross_entropy((sum(logits[:k]) / k).flatten(0, 1), targets).item() for k in range(1, 4)
    ]
    losses, own, _ = ensemble.evaluate_members(ids, root, val, batch_size=8, combine="logits")
    assert np.allclose(losses, expected, atol=1e-5)
    assert abs(losses[0] - results[0].val_loss) < 1e-5 and np.allclose(own, [r.val_loss for r in results], atol=1e-5)
    probs, _, _ = ensemble.evaluate_members(ids, root, val, batch_size=8, combine="probs")
    assert abs(probs[0] - losses[0]) < 1e-6 and abs(probs[2] - losses[2]) > 1e-6  # one model: the same; three: not

    # chunks of the validation set that keep the logit sum small give the same losses
    chunked = ensemble._evaluate_logits(ids, root, val, batch_size=8, budget_bytes=3 * 31 * 257 * 4)
    assert ensemble.logit_chunk(val, 257, 3 * 31 * 257 * 4) == 3 < len(val)
    assert np.allclose(chunked[0], losses, atol=1e-6) and np.allclose(chunked[1], own, atol=1e-6)


def test_teacher_distributions_average_probabilities_or_logits(members):
    trials, _ = members
    teachers = [load_model(trials[0].results, t.trial_id) for t in trials]
    x = torch.randint(0, 257, (2, 9))
    with torch.no_grad():
        z = [m(input_ids=x).logits.double() / 2.0 for m in teachers]
    by_probs = torch.log(sum(torch.softmax(zm, -1) for zm in z) / 3)
    by_logits = torch.log_softmax(sum(z) / 3, -1)
    assert torch.allclose(distill.teacher_logprobs(teachers, x, 2.0, "probs").double(), by_probs, atol=1e-5)
    assert torch.allclose(distill.teacher_logprobs(teachers, x, 2.0, "logits").double(), by_logits, atol=1e-5)

    # the KV-cache sampler draws from the logit-averaged distribution too
    sampled = distill.generate(teachers, sequences=3, seq_len=12, start_token=256, seed=3, batch_size=4, combine="logits")
    generator, ids = torch.Generator().manual_seed(3), torch.full((3, 1), 256)
    for _ in range(11):
        logprobs = distill.teacher_logprobs(teachers, ids, combine="logits")[:, -1]
        ids = torch.cat([ids, torch.multinomial(logprobs.exp(), 1, generator=generator)], dim=1)
    assert (ids.numpy() == sampled).all()

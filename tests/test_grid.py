"""Grid expansion and trial identity: normalisation, include/exclude, what the hash covers."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest

from sweep_fixtures import LINREG, TINY_LM
from scalegrid import grid
from scalegrid.spec import load_sweep
from scalegrid.data.identity import describe


def trials_of(raw: dict):
    spec = load_sweep(raw)
    return grid.expand(spec, describe(spec.data))


def test_grid_is_the_product_of_the_axes():
    trials = trials_of({**LINREG, "lr": [0.01, 0.1], "seed": [0, 1, 2]})
    assert len(trials) == 2 * 2 * 2 * 3
    assert len({t.trial_id for t in trials}) == len(trials)


def test_trial_id_normalises_numbers_order_and_defaults():
    a = trials_of({**LINREG, "lr": 0.1, "weight_decay": 0})
    b = trials_of({**LINREG, "lr": "1e-1", "weight_decay": 0.0, "seed": [0], "train": {"batch_size": 8, "schedule": "cosine"}})
    reordered = dict(reversed(list({**LINREG, "lr": 0.1}.items())))
    c = trials_of(reordered)
    assert [t.trial_id for t in a] == [t.trial_id for t in b] == [t.trial_id for t in c]


def test_trial_id_ignores_resources_paths_and_sweep_name():
    base = trials_of(LINREG)
    other = trials_of({**LINREG, "name": "renamed", "resources": {"cpus": 2, "gpus": 0.5}, "results": "elsewhere"})
    assert [t.trial_id for t in base] == [t.trial_id for t in other]


@pytest.mark.parametrize(
    "change",
    [{"lr": 0.051}, {"weight_decay": 0.1}, {"seed": 1}, {"train": {"batch_size": 16}}, {"model": {"dims": 65}},
     {"data": {**LINREG["data"], "gaussian": {"noise": 0.2}}}],
)
def test_trial_id_changes_with_what_changes_the_result(change):
    assert not {t.trial_id for t in trials_of(LINREG)} & {t.trial_id for t in trials_of({**LINREG, **change})}


def test_preset_name_and_its_sizes_are_one_trial():
    by_name = trials_of(TINY_LM)
    by_sizes = trials_of({**TINY_LM, "model": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 96}})
    assert by_name[0].trial_id == by_sizes[0].trial_id
    assert by_name[0].model_label == "llama-50k"


def test_include_adds_subgrids_and_exclude_removes_matches():
    raw = {
        **LINREG,
        "epochs": [1, 2],
        "include": [{"epochs": 8, "unique_tokens": 128}, {"epochs": 1}],  # the second adds nothing new
        "exclude": [{"epochs": 2, "unique_tokens": 256}],
    }
    points = {(t.config.unique_tokens, t.config.epochs) for t in trials_of(raw)}
    assert points == {(128, 1), (128, 2), (256, 1), (128, 8)}


def test_include_can_extend_beyond_the_axes_with_typed_values():
    trials = trials_of({**LINREG, "include": [{"lr": "2e-1", "epochs": 3, "unique_tokens": 128}]})
    extra = [t for t in trials if t.config.epochs == 3]
    assert len(extra) == 1 and extra[0].config.lr == 0.2


def test_tokens_and_flops_estimates():
    trial = trials_of(TINY_LM)[0]
    assert trial.config.tokens_seen == 4096
    shape = trial.config.model
    assert trial.config.estimated_flops == shape.flops_per_token(trial.config.vocab_size, 32) * 4096


def test_plan_counts_a_trunk_groups_stable_phase_once(tmp_path):
    """A grid's wsd epochs axis trains as one trunk: the plan charges the longest epoch count its
    run and each shorter one its decay only; a search or a tracked grid trains each trial alone."""
    from scalegrid.orchestrator.planning.sweep_plan import make_plan
    from scalegrid.trainers.trunk_groups import steps_per_epoch, tokens_in_steps

    # 4096 tokens / 32 = 128 sequences, batch 24: 6 steps of which the last holds 8 sequences
    wsd = {**TINY_LM, "epochs": [1, 2, 5], "weight_decay": [0.1, 0.2],
           "train": {**TINY_LM["train"], "batch_size": 24, "schedule": "wsd"}}
    table = make_plan(wsd, results=str(tmp_path / "a")).table()
    per_token = trials_of(wsd)[0].config.model.flops_per_token(257, 32)
    for _, rows in table.groupby("weight_decay"):
        flops = dict(zip(rows["epochs"], rows["flops"]))
        assert flops[5] == per_token * 5 * 4096  # the trunk: its whole run
        # each branch trains its decay, steps [6E - round(0.2 * 6E), 6E): step 5 (8 sequences); steps 10 and 11
        assert flops[1] == per_token * 8 * 32 and flops[2] == per_token * (24 + 8) * 32
    config = trials_of(wsd)[0].config
    assert steps_per_epoch(config) == 6
    for first, end in [(0, 6), (5, 6), (4, 6), (10, 12), (3, 17), (0, 30)]:
        brute = sum(32 * (8 if s % 6 == 5 else 24) for s in range(first, end))
        assert tokens_in_steps(config, first, end) == brute
    assert table["flops"].sum() == pytest.approx(2 * per_token * 32 * (5 * 128 + 8 + 32))
    for alone in ({**wsd, "tracking": {"tensorboard": True}}, {**wsd, "train": {**wsd["train"], "schedule": "cosine"}}):
        plain = make_plan(alone, results=str(tmp_path / "b")).table()
        assert (plain["flops"] == plain["epochs"] * 4096 * per_token).all()


@pytest.mark.parametrize("path", sorted(glob.glob(str(Path(__file__).parents[1] / "sweeps" / "*.yaml"))))
def test_every_shipped_sweep_parses_and_expands(path):
    spec = load_sweep(path)
    points = grid.grid_points(spec)
    assert points, path
    if spec.data.source in ("synthetic", "gaussian"):  # the others need their corpus or a hub
        trials = grid.expand(spec, describe(spec.data))
        assert len({t.trial_id for t in trials}) == len(trials) == len(points)


def test_identity_leaves_out_run_only_fields_and_new_fields_at_their_default():
    from pydantic import BaseModel

    from scalegrid.spec import hashed_unless_default, not_hashed

    class Inner(BaseModel):
        size: int = 1
        threads: int = not_hashed(4)

    class Config(BaseModel):
        lr: float = 0.1
        inner: Inner = Inner()
        added_later: str = hashed_unless_default("old")

    assert grid.identity(Config()) == {"lr": 0.1, "inner": {"size": 1}}
    assert grid.identity(Config(inner=Inner(threads=64))) == grid.identity(Config())
    assert grid.identity(Config(added_later="new")) == {"lr": 0.1, "inner": {"size": 1}, "added_later": "new"}


def test_how_a_trial_runs_is_not_in_its_id_but_the_papers_decay_mask_is():
    """Micro-batches, checkpointing, compilation and loss chunks change how a trial runs, never
    its result; the embedding's weight decay changes the result (and is hashed only when set)."""
    base = trials_of(TINY_LM)
    how = {"micro_batch_size": 2, "activation_checkpointing": True, "compile": True, "loss_chunk_tokens": 64}
    assert [t.trial_id for t in trials_of({**TINY_LM, "train": {**TINY_LM["train"], **how}})] == [t.trial_id for t in base]
    recipe = trials_of({**TINY_LM, "train": {**TINY_LM["train"], "decay_embeddings": False}})
    assert recipe[0].trial_id != base[0].trial_id
    assert trials_of({**TINY_LM, "train": {**TINY_LM["train"], "decay_embeddings": True}})[0].trial_id == base[0].trial_id


@pytest.mark.parametrize("raw", [
    {**LINREG, "lr": [0.01, 0.1, 1], "seed": [0, 1, 2], "weight_decay": [0, 0.5], "train": {"batch_size": [4, 8]},
     "include": [{"epochs": 3, "seed": 7}], "exclude": [{"lr": 0.1, "seed": 1}]},
    {**TINY_LM, "epochs": [1, 2], "seed": [0, 1], "data": {**TINY_LM["data"], "order": ["shuffled", "sequential"]}, "train": {**TINY_LM.get("train", {}), "clip": [0.5, 1.0]}},
    *[str(Path(__file__).parents[1] / "sweeps" / name) for name in ("quickstart.yaml", "linreg-reuse.yaml")],  # the others need a hub
])
def test_template_ids_and_configs_equal_the_slow_path(raw):
    """`point_trials` hashes a template's JSON with each point's numbers put in; every id and config
    equals the one built and hashed point by point (`trial_config`, `trial_id`)."""
    sweep = load_sweep(raw)
    data = describe(sweep.data)
    pairs = grid.point_trials(sweep, data)
    assert len(pairs) == len(grid.grid_points(sweep))
    for point, trial in pairs:
        config = grid.trial_config(sweep, point, data)
        assert trial.config == config
        assert trial.trial_id == grid.trial_id(config) == grid.trial_id(trial.config)

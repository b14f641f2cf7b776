"""What trials reserve and how many run at once (`orchestrator/planning/capacity.py`): pure, no Ray."""

from __future__ import annotations

import pytest

from scalegrid.orchestrator.planning import capacity as resources
from scalegrid.spec import ResourcesSpec, load_sweep, parse_spec
from sweep_fixtures import TINY_LM


def test_one_process_and_multi_worker_bundles():
    assert resources.bundles(ResourcesSpec(cpus=2, gpus=1)) == [{"CPU": 2, "GPU": 1}]
    eight = ResourcesSpec(workers=8, gpus_per_worker=1, cpus_per_worker=4)
    assert resources.bundles(eight) == [{"CPU": 0.01, "GPU": 0}] + [{"CPU": 4, "GPU": 1}] * 8
    assert resources.tune_resources(eight) == {"cpu": 0.01, "gpu": 0}  # the workers hold the rest
    assert resources.total(eight) == {"CPU": pytest.approx(32.01), "GPU": 8}
    assert resources.shown(eight) == "8 workers x (4 CPU, 1 GPU)"
    # gpus/cpus are the one-worker form: per-worker values default to them
    assert ResourcesSpec(workers=2, gpus=1).worker == {"CPU": 1.0, "GPU": 1.0}


@pytest.mark.parametrize(
    "available, r, expected",
    [
        ({"CPU": 64, "GPU": 8}, ResourcesSpec(cpus=1, gpus=1), 8),  # GPUs bound it, not the 64 CPUs
        ({"CPU": 64, "GPU": 8}, ResourcesSpec(cpus=1, gpus=0.5), 16),
        ({"CPU": 80, "GPU": 16}, ResourcesSpec(workers=8, gpus_per_worker=1, cpus_per_worker=4), 2),
        ({"CPU": 64, "GPU": 8}, ResourcesSpec(workers=8, gpus_per_worker=1, cpus_per_worker=16), 1),  # CPUs bound it
        ({"CPU": 2}, ResourcesSpec(cpus=1), 2),
        ({"CPU": 2}, ResourcesSpec(cpus=4), 1),  # at least one (feasibility is checked elsewhere)
    ],
)
def test_slots_count_what_trials_ask_for(available, r, expected):
    assert resources.slots(available, r) == expected


def test_workers_are_placed_over_nodes():
    eight = ResourcesSpec(workers=8, gpus_per_worker=1, cpus_per_worker=4)
    assert resources.placeable([{"CPU": 48, "GPU": 8}], eight)
    assert resources.placeable([{"CPU": 24, "GPU": 4}, {"CPU": 24, "GPU": 4}], eight)  # 4 + 4 on two nodes
    assert not resources.placeable([{"CPU": 32, "GPU": 8}], eight)  # no room left for the driver's 0.01 CPU
    assert not resources.placeable([{"CPU": 96, "GPU": 4}, {"CPU": 96, "GPU": 3}], eight)
    assert not resources.placeable([{"CPU": 4, "GPU": 1}], ResourcesSpec(gpus=2))


def test_stages_reserve_ensemble_resources_or_one_worker():
    base = {**TINY_LM, "ensemble": {"members": 2}}
    assert resources.stage_task(load_sweep({**base, "resources": {"workers": 4, "gpus_per_worker": 1, "cpus_per_worker": 2}})) == {
        "num_cpus": 2, "num_gpus": 1,
    }
    spec = load_sweep({**base, "resources": {"gpus": 1}, "ensemble": {"members": 2, "resources": {"cpus": 3, "gpus": 0.5}}})
    assert resources.stage_task(spec) == {"num_cpus": 3, "num_gpus": 0.5}


def test_longest_first_counts_devices():
    one_gpu, eight = ResourcesSpec(gpus=1), ResourcesSpec(workers=8, gpus_per_worker=1)
    assert resources.longest_first_key(8e18, eight) == resources.longest_first_key(1e18, one_gpu)


def test_ensemble_resources_are_one_process():
    from scalegrid.errors import UserError

    with pytest.raises(UserError, match=r"ensemble.resources: .*an ensemble evaluation is one process \(got 2\)"):
        parse_spec({**TINY_LM, "ensemble": {"members": 2, "resources": {"workers": 2}}}, source="s.yaml")

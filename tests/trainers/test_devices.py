"""A trial computes on exactly the GPUs Ray gave it, and on the CPU when it was given none,
whatever CUDA_VISIBLE_DEVICES the node shows (here: a real Ray with two declared GPUs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from scalegrid.trainers.devices import choose_device

RAY_WITH_TWO_GPUS = textwrap.dedent("""
    import json, os
    import ray
    from scalegrid.trainers import devices

    def seen():
        try:
            device = str(devices.trial_device())
        except RuntimeError as err:
            device = f"error: {err}"
        return {
            "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "chosen": devices.choose_device(devices.ray_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"), cuda_available=True),
            "device": device,
            "share": devices.gpu_share(),
        }

    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False)
    out = {gpus: ray.get(ray.remote(num_cpus=0.1, num_gpus=gpus)(seen).remote()) for gpus in (0, 1, 0.5)}
    print(json.dumps(out))
""")


def test_trial_device_follows_rays_assignment_not_the_visible_gpus():
    """The node shows GPUs 0 and 1 (a faked CUDA_VISIBLE_DEVICES: this machine has none)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    done = subprocess.run([sys.executable, "-c", RAY_WITH_TWO_GPUS], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    none, one, half = seen["0"], seen["1"], seen["0.5"]
    assert none["visible"] == "0,1" and none["chosen"] == "cpu" and none["device"] == "cpu"  # sees both, uses neither
    assert one["visible"] in ("0", "1") and one["chosen"] == "cuda:0" and one["share"] == 1.0
    assert one["device"].startswith("error: Ray gave this trial GPU") and "no CUDA device" in one["device"]
    assert half["chosen"] == "cuda:0" and half["share"] == 0.5


@pytest.mark.parametrize("gpu_ids, visible, cuda, expected", [
    (None, None, False, "cpu"),          # not a Ray worker: a visible GPU is used
    (None, "0", True, "cuda:0"),
    ([], "0,1,2,3", True, "cpu"),         # a zero-GPU trial on a GPU node
    (["2"], "2", True, "cuda:0"),         # Ray set CUDA_VISIBLE_DEVICES to the trial's GPU
    ([3], "1,3", True, "cuda:1"),
    ([1], None, True, "cuda:1"),          # RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES: ids are torch's
])
def test_choose_device(gpu_ids, visible, cuda, expected):
    assert choose_device(gpu_ids, visible, cuda_available=cuda) == expected

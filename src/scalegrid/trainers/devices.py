"""The device a trial computes on: exactly the GPUs Ray gave it, the CPU when it was given none.

`torch.cuda.is_available()` is the wrong question inside a Ray worker: a task or trial that asks
for 0 GPUs is left with every GPU of its node visible (Ray 2.60 does not set
CUDA_VISIBLE_DEVICES for zero-GPU requests), so it would take `cuda:0` from a trial that paid for
it. Ray's answer is `ray.get_gpu_ids()`; for a request of 1 (or 0.5) GPU Ray also sets
CUDA_VISIBLE_DEVICES to that GPU, so torch numbers it 0. Outside Ray (a benchmark, a notebook)
there is no assignment to honour and a visible GPU is used.
"""

from __future__ import annotations

import contextlib
import os
import sys

import torch


def choose_device(gpu_ids: list | None, cuda_visible_devices: str | None, *, cuda_available: bool) -> str:
    """"cpu" or "cuda:N" for a process Ray assigned `gpu_ids` (None: not in a Ray worker), given
    CUDA_VISIBLE_DEVICES. Pure: the tests drive it from real Ray workers with declared GPUs."""
    if gpu_ids is None:
        return "cuda:0" if cuda_available else "cpu"
    if not gpu_ids:
        return "cpu"
    first = str(gpu_ids[0])
    visible = [d.strip() for d in (cuda_visible_devices or "").split(",") if d.strip()]
    if not visible:  # Ray left CUDA_VISIBLE_DEVICES alone (RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES): ids are torch's
        return f"cuda:{first}"
    if first not in visible:
        raise RuntimeError(f"Ray assigned GPU {first} but CUDA_VISIBLE_DEVICES is {cuda_visible_devices!r}")
    return f"cuda:{visible.index(first)}"


def ray_gpu_ids() -> list | None:
    """The GPU ids Ray assigned to this worker; None outside a Ray worker."""
    ray = sys.modules.get("ray")  # a trial runs in a Ray worker, which has imported ray already
    if ray is None or not ray.is_initialized():
        return None
    if ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
        return None  # the driver: nothing was assigned to it
    return ray.get_gpu_ids()


def gpu_share() -> float:
    """The fraction of its GPU this worker was given (0.5 when two trials share one); 1 outside Ray."""
    ray = sys.modules.get("ray")
    if ray_gpu_ids() is None:
        return 1.0
    return min(1.0, float(ray.get_runtime_context().get_assigned_resources().get("GPU", 1.0)))


def trial_device() -> torch.device:
    """The device this trial (or ensemble task) computes on; raises when Ray gave a GPU torch cannot see."""
    gpu_ids = ray_gpu_ids()
    device = torch.device(choose_device(gpu_ids, os.environ.get("CUDA_VISIBLE_DEVICES"), cuda_available=torch.cuda.is_available()))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"Ray gave this trial GPU {gpu_ids} but torch sees no CUDA device: install a CUDA build of torch"
            )
        torch.cuda.set_device(device)
    return device


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def autocast(device: torch.device):
    """The compute precision on `device`: bf16 autocast on a GPU (fp32 weights), fp32 on a CPU. Training,
    ensemble evaluation and a teacher's sampling all compute under it."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

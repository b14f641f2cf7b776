"""Measure a CPU training step's peak memory in a fresh process: `python peak_memory.py '<json>'`.

Prints the growth of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs)
over its resident set before the measured work, in bytes. Kinds of work:

- "loss": one forward and backward of `lm_loss` on a built model (the weights are not counted);
- "step": build the model and AdamW, then two optimizer steps in micro-batches (everything counted).

Run in its own process because a process's peak can only be reset, not rewound, and freed memory
may stay resident in the allocator.
"""

from __future__ import annotations

import json
import sys


def resident(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) * 1024


def main(job: dict) -> int:
    import torch

    from scalegrid.shapes import LlamaShape
    from scalegrid.trainers.loss import lm_loss, predicted_tokens
    from scalegrid.trainers.model import build_model, param_groups
    from scalegrid.trainers.parallelize import apply_activation_checkpointing

    torch.manual_seed(0)
    shape = LlamaShape(**job["shape"])
    x = torch.randint(job["vocab"], (job["batch"], job["seq"]))
    if job["kind"] == "loss":
        model = build_model(shape, job["vocab"], job["seq"])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (Linux >= 4.0)
    before = resident("VmRSS:")
    if job["kind"] == "loss":
        lm_loss(model, x, predicted_tokens(x), chunk_tokens=job["chunk"]).backward()
    else:
        model = build_model(shape, job["vocab"], job["seq"])
        if job["checkpointing"]:
            apply_activation_checkpointing(model)
        model.train()
        optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
        for _ in range(2):
            for micro in x.split(job["micro"]):
                lm_loss(model, micro, predicted_tokens(x), chunk_tokens=job["chunk"]).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    print(resident("VmHWM:") - before)
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))

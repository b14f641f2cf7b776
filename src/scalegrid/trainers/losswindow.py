"""Train losses and gradient norms kept on the device between reads, and the divergence checks on them."""

from __future__ import annotations

import itertools
import math

import torch


class LossWindow:
    """Train losses and gradient norms since the last read, kept on the device: a step never syncs.

    `read` names the first step that diverged: a non-finite loss or gradient, a gradient norm of
    exactly 0 (activations overflowed: an RMSNorm of inf outputs 0 and the model goes silent,
    which a healthy model never does), or a loss over 10x that of uniform guessing.
    """

    def __init__(self, size: int, device: torch.device, vocab_size: int):
        self.losses = torch.zeros(size, device=device)
        self.grad_norms = torch.zeros(size, device=device)
        self.loss_limit = 10 * math.log(vocab_size)
        self.count = 0
        self.first_step = 1

    def add(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        if self.count == 0:
            self.first_step = step
        self.losses[self.count] = loss.detach()
        self.grad_norms[self.count] = grad_norm
        self.count += 1

    def state_dict(self) -> dict:
        return {"losses": self.losses.cpu(), "grad_norms": self.grad_norms.cpu(), "count": self.count, "first_step": self.first_step}

    def load_state_dict(self, state: dict) -> None:
        self.losses.copy_(state["losses"])
        self.grad_norms.copy_(state["grad_norms"])
        self.count, self.first_step = state["count"], state["first_step"]

    def read(self) -> tuple[float, str | None]:
        """(mean loss of the window, why the first diverged step diverged, or None); empties it."""
        losses = self.losses[: self.count].tolist()  # note: a device sync
        grad_norms = self.grad_norms[: self.count].tolist()
        self.count = 0
        for step, loss, grad_norm in zip(itertools.count(self.first_step), losses, grad_norms):
            if not math.isfinite(loss):
                return math.nan, f"non-finite loss at step {step}"
            if not math.isfinite(grad_norm) or grad_norm == 0.0:
                return math.nan, f"non-finite activations or gradient at step {step} (gradient norm {grad_norm})"
            if loss > self.loss_limit:
                uniform = self.loss_limit / 10
                return math.nan, f"loss exploded to {loss:.4g} at step {step} (uniform guessing: {uniform:.4g})"
        return sum(losses) / len(losses), None

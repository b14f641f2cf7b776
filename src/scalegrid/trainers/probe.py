"""The lm trainer's diagnostics probe: P fixed training batches whose gradients are measured at
every epoch's end (`train.diagnostics: true`; the statistics are `diagnostics.py`'s).

The probe measures, never trains: gradients come from `torch.autograd.grad` (the parameters'
`.grad` and the optimizer are untouched), the batches are drawn once from a generator of their
own (no draw from training's), and the model holds no dropout, so a run with diagnostics computes
exactly the losses of one without. It holds the P flattened gradients of one epoch at a time
(P x parameters floats on the device) and the previous epoch's mean (one more).
"""

from __future__ import annotations


import torch

from scalegrid.payloads import StateDict
from scalegrid.trainers.diagnostics import curvature, epoch_diagnostics, probe_rows
from scalegrid.trainers.loss import predicted_tokens


class GradientProbe:
    def __init__(self, batches: torch.Tensor):
        self.batches = batches  # [P, batch, seq_len]
        self.previous: torch.Tensor | None = None  # the previous measured epoch's mean probe gradient
        self.epoch_val_losses: list[float] = []

    @classmethod
    def build(cls, run) -> GradientProbe:
        rows = probe_rows(len(run.train_seqs), run.t.probe_batches, run.t.batch_size, run.trial.config.member_seed)
        return cls(run.train_seqs[torch.from_numpy(rows).to(run.device)])

    def gradient(self, run, batch: torch.Tensor) -> torch.Tensor:
        """The flattened gradient of the batch's mean token loss, a micro-batch at a time."""
        params = [p for p in run.model.parameters() if p.requires_grad]
        total = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        num_tokens = predicted_tokens(batch)
        for micro in batch.split(run.micro_batch):
            with run.autocast():
                loss = run.loss(run.model, micro, num_tokens)
            for acc, grad in zip(total, torch.autograd.grad(loss, params)):
                acc += grad.float()
        return torch.cat([g.flatten() for g in total])

    def measure(self, run, val_loss: float) -> dict:
        """The epoch's statistics (curve columns) at the model's current weights."""
        grads = torch.stack([self.gradient(run, batch) for batch in self.batches])
        mean = grads.mean(dim=0)
        first = self.previous is None
        stats = epoch_diagnostics(
            (grads @ grads.T).double().cpu().numpy(),
            None if first else float(mean @ self.previous),
            None if first else float(self.previous.norm()),
        )
        self.previous = mean
        self.epoch_val_losses.append(val_loss)
        return {**stats, "val_curvature": curvature(self.epoch_val_losses)}

    def state_dict(self) -> StateDict:
        return {"previous": None if self.previous is None else self.previous.cpu(), "epoch_val_losses": self.epoch_val_losses}

    def load_state_dict(self, state: StateDict) -> None:
        previous = state["previous"]
        self.previous = None if previous is None else previous.to(self.batches.device)
        self.epoch_val_losses = list(state["epoch_val_losses"])

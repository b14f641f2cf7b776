"""A trial's final weights in Hugging Face format: `RESULTS/models/<trial_id>/` (save_pretrained, safetensors).

Kept apart from training checkpoints: this is what ensemble evaluation and distillation load,
and what a researcher opens with `from_pretrained`. The directory is published whole (written
under a temporary name and renamed; on an object store uploaded with `config.json` last), so a
directory that exists is complete.
"""

from __future__ import annotations

from pathlib import Path

import torch

from scalegrid.storage import MODEL_MARKER, ResultsLayout, node_cache_dir
from scalegrid.trial import Trial


def save_model(model: torch.nn.Module, trial: Trial) -> str:
    """Publish the final weights; a re-trained member's old directory is replaced."""
    from transformers.utils import logging

    logging.disable_progress_bar()  # its bar reaches the driver's stderr through Ray's log forwarding
    results = trial.results
    return results.publish_dir(results.model_dir(trial.trial_id), model.save_pretrained, marker=MODEL_MARKER, replace=True)


def local_model_dir(results: ResultsLayout, trial_id: str) -> Path:
    """The saved model as a local directory (copied once into this node's cache from an object store)."""
    parts = results.model_dir(trial_id)
    path = results.materialise_dir(parts, node_cache_dir() / "models" / trial_id, marker=MODEL_MARKER)
    if path is None:
        raise FileNotFoundError(f"{results.shown(*parts)}: no saved model for trial {trial_id} (was it trained by this version?)")
    return path


def load_model(results: ResultsLayout, trial_id: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A trial's final weights, in eval mode, without gradients."""
    from transformers import LlamaForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    # safetensors only: a pickled `pytorch_model.bin` planted in the store is never loaded
    model = LlamaForCausalLM.from_pretrained(local_model_dir(results, trial_id), use_safetensors=True).to(device)
    model.eval().requires_grad_(False)
    return model


def model_vocab_size(results: ResultsLayout, trial_id: str) -> int:
    """The vocabulary of a saved model, from its config alone (no weights loaded)."""
    from transformers import LlamaConfig

    return LlamaConfig.from_pretrained(local_model_dir(results, trial_id)).vocab_size

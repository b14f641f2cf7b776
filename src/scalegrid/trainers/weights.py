"""A trial's final model in Hugging Face format: `RESULTS/models/<trial_id>/` (save_pretrained,
safetensors), with the tokenizer of its corpus beside it and a model card (README.md).

Kept for every lm trial unless the spec says `keep_weights: false` (ensemble members and teachers
always), apart from training checkpoints: this is what ensemble evaluation and distillation load,
and what a researcher opens with `AutoModelForCausalLM.from_pretrained` and
`AutoTokenizer.from_pretrained` (`tokenizers.hf_files`: the byte and bpe tokenizers as Hugging
Face fast tokenizers; a corpus of pre-tokenized arrays has no tokenizer to save). The directory is
published whole (written under a temporary name and renamed; on an object store uploaded with
`config.json` last), so a directory that exists is complete. Its `config.json` says which trial it
is (`scalegrid: {trial_id, sweep, ...}`) and carries the tokenizer's `eos_token_id` and
`bos_token_id`, so `generate` stops where the tokenizer ends a document. The card (`model_card`:
`model_card.py`: the trial's hyperparameters, its data's identity, its losses and the command that
trains it again) is written by the worker once the trial's result is known, before its run row.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from scalegrid.storage import MODEL_MARKER, ResultsLayout, node_cache_dir
from scalegrid.data.corpus.cache import TokenCache
from scalegrid.data.tokenizers import TOKENIZERS, hf_files, load_saved
from scalegrid.trial import Stage, Trial


def save_model(model: torch.nn.Module, trial: Trial, state_dict: dict[str, torch.Tensor] | None = None) -> str:
    """Publish the final weights (`state_dict`: the full one of a sharded model) and the tokenizer;
    a re-trained member's old directory is replaced."""
    from transformers.utils import logging

    logging.disable_progress_bar()  # its bar reaches the driver's stderr through Ray's log forwarding
    results, tokenizer = trial.results, tokenizer_files(trial)

    def fill(directory: Path) -> None:
        for name, content in tokenizer.items():
            (directory / name).write_bytes(content)
        model.save_pretrained(directory, state_dict=state_dict)
        describe_in_config(directory, trial, with_tokenizer=bool(tokenizer))

    return results.publish_dir(results.model_dir(trial.trial_id), fill, marker=MODEL_MARKER, replace=True)


def describe_in_config(directory: Path, trial: Trial, *, with_tokenizer: bool) -> None:
    """config.json (and generation_config.json) of a saved model: the trial it is, and the special
    tokens of the tokenizer saved beside it (the model trains with none set)."""
    special: dict[str, int | None] = {"eos_token_id": None, "bos_token_id": None}
    if with_tokenizer:
        from transformers import AutoTokenizer

        saved = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
        special = {"eos_token_id": saved.eos_token_id, "bos_token_id": saved.bos_token_id}
    who = {"trial_id": trial.trial_id, "sweep": trial.sweep, "model": trial.model_label, "stage": Stage(trial.stage).value,
           "data_key": trial.data_key}
    for name, extra in (("config.json", {**special, "scalegrid": who}), ("generation_config.json", special)):
        path = directory / name
        if path.is_file():
            path.write_text(json.dumps(json.loads(path.read_text()) | extra, indent=2, sort_keys=True) + "\n")


def tokenizer_files(trial: Trial) -> dict[str, bytes]:
    """The Hugging Face tokenizer files of the trial's corpus (none for pre-tokenized arrays)."""
    if trial.data_key is None:
        return {}
    cache = TokenCache(trial.results)
    kind = (cache.meta(trial.data_key) or {}).get("tokenizer")
    if kind not in TOKENIZERS:
        return {}
    return hf_files(load_saved(kind, cache.load(trial.data_key) / "tokenizer"))  # the copy the trainer read


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

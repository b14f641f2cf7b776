"""The model card (README.md) beside a saved model: what it is, how it was trained, on what, how
well, and the command that trains it again.

The worker writes it once the trial's result is known (`orchestrator/execution/trial_worker.py`),
after `weights.save_model` published the directory and before the trial's run row, so a trial that
is done has its card. Plain text: no torch here.
"""

from __future__ import annotations

from scalegrid.payloads import JsonObject
from scalegrid.trial import DataIdentity, Trial, TrialResult

RESULTS_SHOWN = "RESULTS"  # the card names paths under the results directory, wherever it was copied to


def model_card(trial: Trial, result: TrialResult, provenance: dict[str, str]) -> str:
    """README.md of a saved model: what it is, how it was trained, on what, how well, how to get it again."""
    c, shown = trial.config, RESULTS_SHOWN
    rows = "\n".join(f"| {name} | {_cell(value)} |" for name, value in trial.hyperparameters().items())
    data = "\n".join(f"| {name} | {_cell(value)} |" for name, value in _flat(DataIdentity.fields_of(c.data)).items())
    return f"""---
library_name: transformers
tags: [scalegrid, {trial.model_label}]
---
# {trial.model_label}: trial {trial.trial_id} of sweep `{trial.sweep}`

A Llama of {result.params:,} parameters ({result.params_nonembed:,} without embeddings) trained by scalegrid
on {result.tokens_seen:,} tokens: {c.epochs} epochs of {c.unique_tokens:,} unique tokens. Final validation
loss **{result.val_loss:.4f}** (best {result.best_val_loss:.4f}; nats per token on the held-out documents of
its corpus).

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("{shown}/models/{trial.trial_id}")
tokenizer = AutoTokenizer.from_pretrained("{shown}/models/{trial.trial_id}")
```

## Hyperparameters

| name | value |
|---|---|
{rows}

## Data

Its identity: what the trial id hashes (token cache `{trial.data_key}`).

| field | value |
|---|---|
{data}

## Reproduce

```bash
{provenance.get("command", "scalegrid run SPEC")}
```

trains every trial of the sweep that its results directory lacks; this one is trial `{trial.trial_id}`
(the same spec and data give the same id, so a trained trial is never trained twice). The resolved
spec: `{provenance.get("sweep_record", "RESULTS/sweeps/")}`. Trained with scalegrid
{provenance.get("scalegrid_version", "?")} at git commit {provenance.get("git_commit", "unknown")}.
"""


def write_model_card(trial: Trial, result: TrialResult, provenance: dict[str, str]) -> None:
    """The card beside a saved model (one atomic write; the model directory is published already)."""
    results = trial.results
    results.write_bytes((*results.model_dir(trial.trial_id), "README.md"), model_card(trial, result, provenance).encode())


def _flat(fields: JsonObject, prefix: str = "") -> dict[str, object]:
    """Nested fields as dotted names (synthetic.documents, tokenizer.vocab_size)."""
    out: dict[str, object] = {}
    for name, value in fields.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{name}.")
        else:
            out[f"{prefix}{name}"] = value
    return out


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")

"""A saved model is a Hugging Face directory a researcher can use without scalegrid: its card
(README.md) says what it is, how it was trained, on what, how well and how to train it again; its
config.json names the trial and carries the tokenizer's special tokens."""

from __future__ import annotations

import json
import shlex

from sweep_fixtures import TINY_LM
from scalegrid import load_runs
from scalegrid.cli import main


def test_a_saved_model_has_a_card_and_says_which_trial_it_is(ray_local, write_spec, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    spec, results = write_spec(TINY_LM), tmp_path / "results"
    assert main(["run", str(spec), "--set", "lr=0.004", "--no-report", "-q"]) == 0
    row = load_runs(results).iloc[0]
    saved = results / "models" / row["trial_id"]

    tokenizer, config = AutoTokenizer.from_pretrained(saved), AutoConfig.from_pretrained(saved)
    assert config.eos_token_id == tokenizer.eos_token_id == 256 and config.bos_token_id == tokenizer.bos_token_id
    written = json.loads((saved / "config.json").read_text())
    assert written["scalegrid"] | {"data_key": None} == {
        "trial_id": row["trial_id"], "sweep": "tiny", "model": "llama-50k", "stage": "train", "data_key": None}
    assert AutoModelForCausalLM.from_pretrained(saved).config.eos_token_id == 256

    card = (saved / "README.md").read_text()
    assert f"# llama-50k: trial {row['trial_id']} of sweep `tiny`" in card
    assert f"Final validation\nloss **{row['val_loss']:.4f}**" in card
    assert "| lr | 0.004 |" in card and "| epochs | 1 |" in card and "| train.batch_size | 8 |" in card  # hyperparameters
    assert "| synthetic.documents | 300 |" in card and "| tokenizer.kind | byte |" in card  # the data's identity
    command = shlex.join(["scalegrid", "run", str(spec), "--set", "lr=0.004", "--results", str(results)])
    assert f"```bash\n{command}\n```" in card  # the command that trains it again
    (record,) = (results / "sweeps").glob("tiny-*.json")
    assert record.name in card

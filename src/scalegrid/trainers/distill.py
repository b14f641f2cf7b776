"""Distilled students: a `lm` trial trained against a teacher, an ensemble of k members or one model.

A student's `TrialConfig.distill` names its teacher by the members' trial ids and says how:

- `token`: every batch's loss is (1 - kl_weight) CE(data) + kl_weight T^2 KL(q_T || p_T), where
  p_T is the student's next-token distribution at temperature T and q_T the teacher's: the
  average of the members' softmax(logits / T) (Hinton et al.; T^2 keeps the gradient scale).
- `sequence`: the teacher generates a corpus (`generate`: sampling with a KV cache per member
  from the members' averaged distribution, seeded), cached under RESULTS/cache/teacher/<id>/ and
  made once by the orchestrator; the student trains on its real sequences plus
  w / (1 - w) times as many generated ones, so a fraction w of what it sees is synthetic.

Everything else (model, optimiser, schedule, evaluation on the real validation tokens,
divergence checks) is the `lm` trainer's loop.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from scalegrid.trainers import lm
from scalegrid.trainers.base import Report, Trial, TrialResult
from scalegrid.trainers.ensemble import load_model

CORPUS_VERSION = "teacher-corpus-v1"  # bump when `generate` changes what a seed produces


def train(trial: Trial, report: Report) -> TrialResult:
    spec = trial.config.distill
    if not spec:
        raise ValueError("a distilled student needs TrialConfig.distill (its teacher and method)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teachers = [load_model(trial.results_dir, tid, device) for tid in spec["teacher"]]
    if spec["method"] == "token":
        temperature, weight = float(spec["temperature"]), float(spec["kl_weight"])

        def batch_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
            out = model(input_ids=x, labels=x)
            student = torch.log_softmax(out.logits[:, :-1].float() / temperature, dim=-1)
            teacher = teacher_logprobs(teachers, x[:, :-1], temperature)
            kl = (teacher.exp() * (teacher - student)).sum(-1).mean()
            return (1 - weight) * out.loss + weight * temperature**2 * kl

        return lm.train(trial, report, batch_loss=batch_loss)
    if spec["method"] == "sequence":
        generated = load_corpus(trial.results_dir, spec["corpus"])
        real = trial.config.unique_tokens // trial.config.train.seq_len
        wanted = round(spec["synthetic_weight"] / (1 - spec["synthetic_weight"]) * real)
        if wanted > len(generated):
            raise ValueError(f"the teacher corpus {spec['corpus']} has {len(generated)} sequences; the student needs {wanted}")
        del teachers  # the corpus is the teacher here
        return lm.train(trial, report, extra_sequences=torch.from_numpy(generated[:wanted].astype(np.int64)))
    raise ValueError(f"unknown distillation method {spec['method']!r}")


@torch.no_grad()
def teacher_logprobs(teachers: list[torch.nn.Module], x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log of the members' averaged next-token distribution at `temperature`: [batch, len, vocab]."""
    total = None
    for model in teachers:
        logprobs = torch.log_softmax(model(input_ids=x).logits.float() / temperature, dim=-1)
        total = logprobs if total is None else torch.logaddexp(total, logprobs)
    return total - math.log(len(teachers))


@torch.no_grad()
def generate(
    teachers: list[torch.nn.Module],
    *,
    sequences: int,
    seq_len: int,
    start_token: int,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """[sequences, seq_len] token ids: `start_token` then seq_len - 1 tokens sampled one at a time
    from the members' averaged next-token distribution, each member with its own KV cache (one
    new token per forward pass, not the whole prefix). Seeded: the same seed gives the same corpus."""
    from transformers import DynamicCache

    device = next(teachers[0].parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    out = np.empty((sequences, seq_len), dtype=np.int64)
    for first in range(0, sequences, batch_size):
        n = min(batch_size, sequences - first)
        ids = torch.full((n, 1), start_token, dtype=torch.long, device=device)
        caches = [DynamicCache(config=model.config) for model in teachers]
        tokens = [ids]
        for _ in range(seq_len - 1):
            total = None
            for model, cache in zip(teachers, caches):
                logits = model(input_ids=ids, cache=cache, use_cache=True).logits[:, -1].float()
                logprobs = torch.log_softmax(logits / temperature, dim=-1)
                total = logprobs if total is None else torch.logaddexp(total, logprobs)
            ids = torch.multinomial(torch.softmax(total, dim=-1), 1, generator=generator)
            tokens.append(ids)
        out[first : first + n] = torch.cat(tokens, dim=1).cpu().numpy()
    return out


def corpus_dir(results_dir: str | Path, corpus_id: str) -> Path:
    return Path(results_dir) / "cache" / "teacher" / corpus_id


def load_corpus(results_dir: str | Path, corpus_id: str) -> np.ndarray:
    path = corpus_dir(results_dir, corpus_id)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: the teacher corpus was not generated (no meta.json)")
    meta = json.loads(meta_path.read_text())
    return np.load(path / "tokens.npy", mmap_mode="r").reshape(meta["sequences"], meta["seq_len"])


def make_corpus(results_dir: str | Path, corpus_id: str, request: dict, data_dir: str) -> dict:
    """Generate and save the corpus `request` describes (teacher ids, sequences, seq_len, temperature,
    seed) unless it is already there; returns its meta (with `generated`: whether this call made it)."""
    final = corpus_dir(results_dir, corpus_id)
    if (final / "meta.json").is_file():
        return {**json.loads((final / "meta.json").read_text()), "generated": False}
    from scalegrid.trainers.data import open_tokens

    eos_id = int(open_tokens(data_dir)[2]["eos_id"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teachers = [load_model(results_dir, tid, device) for tid in request["teacher"]]
    start = time.perf_counter()
    tokens = generate(
        teachers, sequences=request["sequences"], seq_len=request["seq_len"], start_token=eos_id,
        temperature=request["temperature"], seed=request["seed"],
    )
    seconds = time.perf_counter() - start
    meta = {
        **request, "id": corpus_id, "version": CORPUS_VERSION, "tokens": int(tokens.size),
        "seconds": seconds, "tokens_per_s": tokens.size / seconds, "device": device.type,
    }
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{corpus_id}.", dir=final.parent))
    try:
        np.save(tmp / "tokens.npy", tokens.astype(np.int32 if int(tokens.max()) < 2**31 else np.int64))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**meta, "generated": True}

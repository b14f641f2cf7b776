"""Checks of the directories a sweep publishes and reads back — saved models, token caches,
teacher corpora — from their files alone: no torch, no tokenizer, nothing loaded or executed.

Each returns None for a directory fit to read, or why it is not. A directory that fails is set
aside by `run` (`ResultsLayout.set_aside`: renamed `<name>.corrupt-<time>`, kept for a look) and
what it stood for is made again: a member retrained, a cache rebuilt, a corpus sampled again.

    model_problem(directory)          models/<trial_id>/: safetensors weights with a sane header, no pickles, no code
    token_cache_problem(directory)    cache/tokens/<key>/: meta.json against the token files' sizes; its tokenizer
    teacher_corpus_problem(directory) cache/teacher/<id>/: meta.json against an integer tokens.npy
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from scalegrid.storage.uri import first_line

MAX_HEADER_BYTES = 100 << 20  # a safetensors header is JSON describing the tensors: megabytes at most
PICKLED = ("pytorch_model.bin", "training_args.bin", "optimizer.pt")  # weights as pickles: refused, never loaded
CODE_KEYS = ("auto_map",)  # a config naming code to import (`trust_remote_code`)
TOKEN_DTYPES = ("uint16", "uint32")


def model_problem(directory: Path) -> str | None:
    if not directory.is_dir():
        return "not a directory"
    pickled = [name for name in PICKLED if (directory / name).exists()]
    if pickled:
        return f"it holds pickled weights ({', '.join(pickled)}); scalegrid saves safetensors only"
    weights = sorted(directory.glob("*.safetensors"))
    if not weights:
        return "no .safetensors weights"
    for path in weights:
        why = safetensors_problem(path)
        if why:
            return f"{path.name}: {why}"
    return _code_named(directory, ("config.json", "tokenizer_config.json"))


def safetensors_problem(path: Path) -> str | None:
    """A safetensors file: an 8-byte header length, then that much JSON, within the file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > min(MAX_HEADER_BYTES, size - 8):
                return f"a header of {length:,} bytes in a file of {size:,}"
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError) as err:
        return f"not a safetensors file ({err.__class__.__name__})"
    if not isinstance(header, dict):
        return "a header that is not a JSON object"
    return None


def token_cache_problem(directory: Path, meta_name: str) -> str | None:
    """A token cache: its meta.json names a token dtype and token counts its files hold exactly."""
    try:
        meta = json.loads((directory / meta_name).read_text())
        dtype = meta["dtype"]
        counts = {"train.bin": int(meta["train_tokens"]), "val.bin": int(meta["val_tokens"])}
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"{meta_name} does not read ({err.__class__.__name__})"
    if dtype not in TOKEN_DTYPES:
        return f"{meta_name} names dtype {dtype!r}, not a token dtype"
    itemsize = np.dtype(dtype).itemsize
    for name, tokens in counts.items():
        path = directory / name
        found = path.stat().st_size if path.is_file() else None
        if found != tokens * itemsize:
            return f"{name} holds {found if found is not None else 'no'} bytes, where {meta_name} says {tokens:,} {dtype} tokens"
    tokenizer = directory / "tokenizer"
    return _code_named(tokenizer, ("tokenizer_config.json", "config.json")) if tokenizer.is_dir() else None


def teacher_corpus_problem(directory: Path, meta_name: str) -> str | None:
    """A teacher corpus: an integer tokens.npy of the shape its meta.json says (read with no pickles)."""
    try:
        meta = json.loads((directory / meta_name).read_text())
        sequences, seq_len = int(meta["sequences"]), int(meta["seq_len"])
        tokens = np.load(directory / "tokens.npy", mmap_mode="r", allow_pickle=False)  # the header only; an object array refuses
        shape, dtype = tokens.shape, tokens.dtype
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"tokens.npy or {meta_name} does not read ({first_line(err, 120)})"
    if dtype.kind not in "iu":
        return f"tokens.npy holds {dtype}, not token ids"
    if int(np.prod(shape)) != sequences * seq_len:
        return f"tokens.npy holds {int(np.prod(shape)):,} tokens, where {meta_name} says {sequences:,} x {seq_len}"
    return None


def _code_named(directory: Path, names: tuple[str, ...]) -> str | None:
    for name in names:
        path = directory / name
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError):
            return f"{name} does not read"
        if isinstance(config, dict) and any(key in config for key in CODE_KEYS):
            return f"{name} names code to import (auto_map); scalegrid never runs code from a results store"
    return None

"""The recipe: a corpus -> `train.bin` and `val.bin` in a directory, written as the stream comes.

**Split.** Each non-empty document, by its index in the stream, is held out for validation when a
seeded hash of the index is below `validation.fraction`, so its side never depends on how much
of the stream is read. Validation is the first `validation.max_tokens` tokens of the held-out
documents in stream order: the same for every budget, and never in any training prefix.

**Order** (`data.shuffle_seed`). With a seed, the whole corpus is read (streamed, tokenized into
a scratch file in stream order) and the training documents are then written in a permutation
drawn from the seed: the first U tokens are a random subset of documents, and a smaller budget
is a prefix of a larger one. With `null`, the training documents keep the stream's order and
reading stops once the largest budget and the validation tokens are covered (a hub corpus of
terabytes is read only as far as the sweep needs): again every budget is a prefix of the next.
A later sweep with a larger budget grows the cache by reading further (`complete` in meta.json
says whether the stream ended).

**Tokens** (`source: tokens`): the ids of the files in order; validation is their first
`validation.max_tokens` ids, training what follows (read only as far as needed).

Documents are tokenized in batches across `processes` (`encode.py`) and appended to the files as
they come, so memory stays flat whatever the corpus' size; a bar on stderr shows tokens/s (and
the time left, when the target is known). A corpus that is empty or shorter than the largest
budget is a one-line UserError; the caller builds in a scratch directory, so nothing is published.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import numpy as np

from scalegrid.errors import UserError
from scalegrid.spec import DataSpec
from scalegrid.data.corpus.encode import encoded_batches
from scalegrid.data.corpus.sources import document_batches, resolve_files, token_chunks, token_dtype
from scalegrid.data.tokenizers import Tokenizer, build_tokenizer
from scalegrid.trial import DataIdentity

DATA_VERSION = "tokens-v1"  # bump when the split / order / concatenation recipe changes what a spec yields
SPLIT_SEED = 0x5CA1E6  # the seeded hash that holds documents out
GATHER_TOKENS = 1 << 22  # tokens copied per step when the shuffled training documents are written


class TokenFile:
    """A raw token file appended to in order, optionally stopping at `limit` tokens."""

    def __init__(self, path: Path, dtype: type, limit: int | None = None):
        self.file, self.dtype, self.limit, self.tokens, self.documents = open(path, "wb"), dtype, limit, 0, 0

    @property
    def full(self) -> bool:
        return self.limit is not None and self.tokens >= self.limit

    def append(self, ids: np.ndarray, documents: int = 0) -> None:
        if self.limit is not None:
            ids = ids[: max(self.limit - self.tokens, 0)]
        # A file write, not ndarray.tofile: a full disk is then ENOSPC (tofile's OSError carries no errno)
        self.file.write(memoryview(np.ascontiguousarray(ids, dtype=self.dtype)).cast("B"))
        self.tokens += len(ids)
        self.documents += documents

    def close(self) -> None:
        self.file.close()



class BuildFacts(TypedDict):
    """What a build wrote: the tokens and documents of each split, and whether it read the whole
    corpus (False: as far as the largest budget needs)."""

    train_tokens: int
    val_tokens: int
    train_documents: int
    val_documents: int
    complete: bool


def build(spec: DataSpec, identity: DataIdentity, directory: Path, *, need_tokens: int, processes: int,
          revision: str | None = None) -> dict:
    """Write the token files of `spec` into `directory` (covering `need_tokens` training tokens);
    returns the facts for meta.json (counts, `complete`, the tokenizer's kind and EOS)."""
    dtype = token_dtype(identity.vocab_size)
    if spec.source == "tokens":
        facts = _tokens_prefix(spec, directory, dtype, need_tokens)
        facts.update(tokenizer=None, eos_id=spec.eos_id)
    else:
        batches = lambda: document_batches(spec, revision)  # noqa: E731 - each pass reads the stream anew
        tokenizer = _tokenizer(spec, batches)
        if tokenizer.vocab_size != identity.vocab_size:  # describe() promised the model this size
            raise RuntimeError(f"tokenizer vocab_size {tokenizer.vocab_size} != described {identity.vocab_size}")
        encoded = encoded_batches(tokenizer, batches(), processes=processes, dtype=dtype)
        with contextlib.closing(encoded), _bar(spec, need_tokens) as bar:
            counted = _advancing(encoded, bar)
            if spec.shuffle_seed is None:
                facts = _stream_prefix(spec, counted, directory, dtype, need_tokens)
            else:
                facts = _whole_corpus(spec, counted, directory, dtype)
        _save_tokenizer(tokenizer, directory)
        facts.update(tokenizer=tokenizer.kind, eos_id=tokenizer.eos_id)
    check_covers(spec, facts)
    return facts


def _tokenizer(spec: DataSpec, batches) -> Tokenizer:
    """The spec's tokenizer; a bpe is trained on a first pass over the training documents."""
    if spec.tokenizer.kind != "bpe":
        return build_tokenizer(spec.tokenizer)
    seen = {"documents": 0, "held_out": 0}
    tokenizer = build_tokenizer(spec.tokenizer, _training_documents(spec, batches(), seen))
    if seen["held_out"] == 0 and seen["documents"] > 1:  # a tiny corpus: split_documents holds one out anyway
        train, _ = split_documents(seen["documents"], spec.validation.fraction, spec.shuffle_seed)
        keep = set(train.tolist())
        everything = (d for batch in batches() for d in batch)
        tokenizer = build_tokenizer(spec.tokenizer, (d for i, d in enumerate(everything) if i in keep))
    return tokenizer


def _training_documents(spec: DataSpec, batches: Iterator[list[str]], seen: dict) -> Iterator[list[str]]:
    for batch in batches:
        held = held_out(seen["documents"], len(batch), spec.validation.fraction)
        seen["documents"] += len(batch)
        seen["held_out"] += int(held.sum())
        yield [d for d, h in zip(batch, held) if not h]


def _stream_prefix(spec: DataSpec, encoded, directory: Path, dtype: type, need_tokens: int) -> dict:
    """Training and validation documents in stream order, until both are covered."""
    train, val = TokenFile(directory / "train.bin", dtype), TokenFile(directory / "val.bin", dtype, spec.validation.max_tokens)
    documents, complete = 0, True
    try:
        for ids, lengths in encoded:
            held = held_out(documents, len(lengths), spec.validation.fraction)
            documents += len(lengths)
            in_val = np.repeat(held, lengths)
            train.append(ids[~in_val], int((~held).sum()))
            val.append(ids[in_val], int(held.sum()))
            if train.tokens >= need_tokens and val.full:
                complete = False
                break
    finally:
        train.close(), val.close()
    _check_documents(spec, documents, val.documents)
    return _facts(train, val, complete)


def _whole_corpus(spec: DataSpec, encoded, directory: Path, dtype: type) -> dict:
    """Every document into a scratch file, then the training documents in the seed's permutation."""
    scratch, lengths = TokenFile(directory / "all.tmp", dtype), []
    try:
        for ids, document_lengths in encoded:
            scratch.append(ids)
            lengths.append(document_lengths)
    finally:
        scratch.close()
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    train_idx, val_idx = split_documents(len(lengths), spec.validation.fraction, spec.shuffle_seed)
    _check_documents(spec, len(lengths), len(val_idx))
    scratch_path, starts = Path(scratch.file.name), np.concatenate([[0], np.cumsum(lengths)[:-1]])
    train, val = TokenFile(directory / "train.bin", dtype), TokenFile(directory / "val.bin", dtype, spec.validation.max_tokens)
    try:
        _gather(scratch_path, dtype, starts, lengths, train_idx, train)
        _gather(scratch_path, dtype, starts, lengths, val_idx, val)
    finally:
        train.close(), val.close()
    scratch_path.unlink()
    return _facts(train, val, complete=True)


def _gather(path: Path, dtype: type, starts: np.ndarray, lengths: np.ndarray, order: np.ndarray, out: TokenFile) -> None:
    """Append the documents `order` names, in that order, about GATHER_TOKENS at a time. Read with
    pread, not a memory map: a map's page faults would pull neighbouring pages of a GB scratch
    file into this process' resident memory."""
    itemsize = np.dtype(dtype).itemsize
    ends = np.cumsum(lengths[order])
    first = 0
    with open(path, "rb") as scratch:
        while first < len(order) and not out.full:
            last = max(int(np.searchsorted(ends, (ends[first - 1] if first else 0) + GATHER_TOKENS)), first + 1)
            docs = order[first:last]
            pieces = [os.pread(scratch.fileno(), int(n) * itemsize, int(s) * itemsize)
                      for s, n in zip(starts[docs], lengths[docs])]
            out.append(np.frombuffer(b"".join(pieces), dtype=dtype), len(docs))
            first = last


def _tokens_prefix(spec: DataSpec, directory: Path, dtype: type, need_tokens: int) -> dict:
    """Token files in order: the first validation.max_tokens ids are validation, the rest training."""
    val = TokenFile(directory / "val.bin", dtype, spec.validation.max_tokens)
    train, complete = TokenFile(directory / "train.bin", dtype), True
    chunks = ((file, ids) for file in resolve_files(spec) for ids in token_chunks(file, spec.vocab_size))
    try:
        for file, ids in chunks:
            _check_ids(ids, spec.vocab_size, f"{file.where}: {file.path}")
            taken = max(min(len(ids), spec.validation.max_tokens - val.tokens), 0)
            val.append(ids[:taken])
            train.append(ids[taken:])
            if train.tokens >= need_tokens and val.full:
                complete = False
                break
    finally:
        train.close(), val.close()
    if train.tokens + val.tokens == 0:
        raise UserError("data.files: the token files hold no ids; check data.files")
    return _facts(train, val, complete)


def _check_ids(ids: np.ndarray, vocab_size: int, where: str) -> None:
    if len(ids) and (int(ids.max()) >= vocab_size or int(ids.min()) < 0):
        bad = int(ids.max()) if int(ids.max()) >= vocab_size else int(ids.min())
        raise UserError(f"{where} holds id {bad:,}, outside data.vocab_size {vocab_size:,}; check data.vocab_size")


def _facts(train: TokenFile, val: TokenFile, complete: bool) -> dict:
    return BuildFacts(train_tokens=train.tokens, val_tokens=val.tokens, train_documents=train.documents,
                      val_documents=val.documents, complete=complete)


def _check_documents(spec: DataSpec, documents: int, held: int) -> None:
    if documents == 0:
        raise UserError(f"data: the {spec.source} corpus has no non-empty documents; check data.files / data.text_field")
    if held == 0 or held == documents:
        which = "validation" if held == 0 else "training"
        raise UserError(
            f"data.validation.fraction: no {which} documents out of {documents} read "
            f"with fraction {spec.validation.fraction}; use a larger corpus or another fraction"
        )


def check_covers(spec: DataSpec, facts: dict) -> None:
    """Every budget fits in what was read (a stream stops once the largest does)."""
    for i, budget in enumerate(spec.unique_tokens):
        if budget > facts["train_tokens"]:
            raise UserError(
                f"data.unique_tokens[{i}]: {budget:,} is larger than the corpus' {facts['train_tokens']:,} training "
                "tokens; lower it or give a larger corpus"
            )


def split_documents(num_documents: int, fraction: float, shuffle_seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(training indices in training order, validation indices in stream order) of a whole corpus.

    A corpus where no document's hash is below `fraction` holds out its lowest one, so a small
    corpus still has a validation set.
    """
    held = held_out(0, num_documents, fraction)
    if num_documents > 1 and not held.any():
        held[np.argmin(uniform_hash(0, num_documents, SPLIT_SEED))] = True
    train = np.flatnonzero(~held)
    order = train if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(train)
    return order, np.flatnonzero(held)


def held_out(first: int, count: int, fraction: float) -> np.ndarray:
    """Whether documents first .. first + count - 1 of the stream are validation documents."""
    return uniform_hash(first, count, SPLIT_SEED) < fraction


def uniform_hash(first: int, count: int, seed: int) -> np.ndarray:
    """splitmix64 of (index, seed) as floats in [0, 1): a fixed pseudo-random number per document."""
    z = np.arange(first, first + count, dtype=np.uint64) + np.uint64(seed * 0x9E3779B97F4A7C15 % (1 << 64))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _save_tokenizer(tokenizer: Tokenizer, directory: Path) -> None:
    files = tokenizer.files()
    if files:
        (directory / "tokenizer").mkdir()
        for name, content in files.items():
            (directory / "tokenizer" / name).write_bytes(content)


def _advancing(encoded, bar) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for ids, lengths in encoded:
        bar.update(len(ids))
        yield ids, lengths


@contextlib.contextmanager
def _bar(spec: DataSpec, need_tokens: int):
    """tokens/s on stderr when it is a terminal (a log or a pipe gets none: an error stays one line);
    the time left too when the stream stops at a known count."""
    from tqdm import tqdm

    total = need_tokens + spec.validation.max_tokens if spec.shuffle_seed is None else None
    with tqdm(total=total, unit="tok", unit_scale=True, desc=f"tokenizing ({spec.source})", file=sys.stderr,
              mininterval=2.0, dynamic_ncols=True, disable=None) as bar:
        yield bar

"""`RESULTS/cache/tokens/<key>/`: a tokenized corpus, built once per identity, read by every trial.

**Layout.** `train.bin` and `val.bin` (raw uint16 when the vocabulary fits, else uint32; read
with `np.memmap`), `tokenizer/` (the files that rebuild a bpe or hf tokenizer) and `meta.json`,
written last: dtype, vocab_size, eos_id, token and document counts, `complete` (the stream was
read to its end) and the identity's fields.

**Building.** A cache is built in a scratch directory of this node (`SCALEGRID_CACHE/building/`),
so a corpus that turns out empty or too short leaves nothing in the results store; then it is
published: renamed into place in a results directory on a filesystem, or, on an object store
(`s3://`, `gs://`), kept as this node's copy (`SCALEGRID_CACHE/tokens/<key>/`) and uploaded with
`meta.json` last. Another node copies it down the first time a trial there opens it
(`np.memmap` needs a local file). A cache read only as far as a budget needed (`complete:
false`) is rebuilt further for a larger budget; its tokens only grow at the end, so a reader of
the smaller copy sees the same prefix.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scalegrid.payloads import JsonObject
from scalegrid.spec import DataSpec
from scalegrid.storage import CACHE_MARKER, ResultsLayout, atomic_dir, node_cache_dir
from scalegrid.storage.artifacts import token_cache_problem
from scalegrid.storage.local import process_alive
from scalegrid.storage.space import check_space, storage_errors_are_one_line
from scalegrid.data.corpus.build import BuildFacts, build
from scalegrid.data.corpus.sources import token_dtype
from scalegrid.trial import DataIdentity


class CacheMeta(BuildFacts):
    """A token cache's meta.json: the builder's facts and whose identity the files are."""

    key: str
    dtype: str  # uint16 | uint32
    vocab_size: int
    fields: JsonObject  # the data identity's hashed fields


class TokenCache:
    """The token caches under one results root (on an object store, read through this node's copies)."""

    def __init__(self, results: ResultsLayout):
        self.results = results

    def local_dir(self, key: str) -> Path:
        """Where the cache of `key` is read on this machine: in the store, or this node's copy."""
        return self.results.local(*self.results.token_cache(key)) or node_cache_dir() / "tokens" / key

    def meta(self, key: str) -> CacheMeta | None:
        """The store's meta.json of `key` (None: not built), read alone: no tokens are mapped."""
        parts = (*self.results.token_cache(key), CACHE_MARKER)
        if not self.results.is_file(*parts):
            return None
        try:
            meta = json.loads(self.results.read_bytes(*parts))
        except ValueError:  # damaged: as if not built (`run` sets it aside: `problem`)
            return None
        return meta if isinstance(meta, dict) else None

    def train_tokens(self, key: str) -> int | None:
        meta = self.meta(key)
        return None if meta is None else meta["train_tokens"]

    def load(self, key: str, min_train_tokens: int = 0) -> Path | None:
        """The complete local directory of `key` holding at least `min_train_tokens` (copied from
        an object store once, and again after the store's copy grew), or None."""
        target = self.local_dir(key)
        stale = (target / CACHE_MARKER).is_file() and _meta_of(target)["train_tokens"] < min_train_tokens
        return self.results.materialise_dir(self.results.token_cache(key), target, marker=CACHE_MARKER, stale=stale)

    def problem(self, key: str) -> str | None:
        """Why the published cache of `key` cannot be read (None: it can, or there is none); on an
        object store, of this node's copy."""
        local = self.results.local(*self.results.token_cache(key)) or self.load(key)
        if local is None or not (local / CACHE_MARKER).is_file():
            return None
        return token_cache_problem(local, CACHE_MARKER)

    def set_aside(self, key: str, why: str) -> None:
        """A damaged cache out of the way (see `storage/artifacts.py`), with a warning: it is built again."""
        parts = self.results.token_cache(key)
        aside = self.results.set_aside_dir(parts, CACHE_MARKER)
        shutil.rmtree(node_cache_dir() / "tokens" / key, ignore_errors=True)  # this node's copy of it, if any
        print(f"scalegrid: warning: {self.results.shown(*parts)} is damaged ({why}); set aside as {aside}, it is built again",
              file=sys.stderr)

    def open(self, key: str, min_train_tokens: int = 0) -> tuple[np.memmap, np.memmap, CacheMeta]:
        path = self.load(key, min_train_tokens)
        if path is None:
            raise FileNotFoundError(f"{self.results.shown(*self.results.token_cache(key))}: no token cache (no {CACHE_MARKER})")
        return open_tokens(path)

    def build(self, spec: DataSpec, identity: DataIdentity, *, need_tokens: int, processes: int,
              revision: str | None = None, grow: bool = False) -> Path:
        """Tokenize `spec` in scratch space and publish it (replacing a smaller copy when `grow`)."""
        scratch_root = node_cache_dir() / "building"
        with storage_errors_are_one_line(scratch_root):  # a full disk is one line naming where, never a traceback
            scratch_root.mkdir(parents=True, exist_ok=True)
            remove_abandoned(scratch_root)
            itemsize = np.dtype(token_dtype(identity.vocab_size)).itemsize
            check_space(scratch_root, {"the token cache being built": (need_tokens + spec.validation.max_tokens) * itemsize},
                        where="SCALEGRID_CACHE")
            scratch = Path(tempfile.mkdtemp(prefix=f"{identity.key}.", dir=scratch_root))
            (scratch / OWNER).write_text(json.dumps({"host": platform.node(), "pid": os.getpid()}))
        try:
            with storage_errors_are_one_line(scratch_root):
                facts = build(spec, identity, scratch, need_tokens=need_tokens, processes=processes, revision=revision)
                write_meta(scratch, identity, facts)
            return self.publish(identity.key, scratch, replace=grow)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def publish(self, key: str, built: Path, *, replace: bool = False) -> Path:
        """Move a built cache directory into place (see the module docstring); a concurrent
        writer's complete copy wins unless `replace`."""

        def fill(tmp: Path) -> None:
            for entry in built.iterdir():
                if entry.name != OWNER:  # who built it stays in the scratch directory
                    shutil.move(str(entry), tmp / entry.name)  # a rename on one filesystem

        target = self.local_dir(key)
        with storage_errors_are_one_line(target.parent):
            local = atomic_dir(target, fill, marker=CACHE_MARKER, replace=replace)
        parts = self.results.token_cache(key)
        if self.results.object_store and (replace or not self.results.is_file(*parts, CACHE_MARKER)):
            self.results.upload_tree(local, parts, last=CACHE_MARKER)
        return local


OWNER = ".owner.json"  # who builds in a scratch directory: its host and pid
ABANDONED_S = 24 * 3600  # a scratch directory without an owner, untouched this long, is a dead build's


def remove_abandoned(scratch_root: Path) -> None:
    """Scratch directories of builds that died on this host (a killed `prepare`): removed, so a
    killed build leaves nothing behind for good. Another live build's directory is left alone."""
    for scratch in scratch_root.iterdir():
        try:
            owner = json.loads((scratch / OWNER).read_text())
            mine = owner.get("host") == platform.node()
            dead = mine and not process_alive(int(owner["pid"]))
        except (OSError, ValueError, KeyError, TypeError):  # no owner: a build from before owners, or torn
            dead = time.time() - scratch.stat().st_mtime > ABANDONED_S
        if dead:
            shutil.rmtree(scratch, ignore_errors=True)


def write_meta(directory: Path, identity: DataIdentity, facts: BuildFacts) -> None:
    """meta.json: what the files hold (`facts` from the builder) and whose identity they are."""
    meta = CacheMeta(
        key=identity.key, dtype=np.dtype(token_dtype(identity.vocab_size)).name, vocab_size=identity.vocab_size,
        fields=identity.fields, **facts,
    )
    (directory / CACHE_MARKER).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _meta_of(directory: Path) -> CacheMeta:
    return json.loads((directory / CACHE_MARKER).read_text())


class DamagedCache(ValueError):
    """A token cache whose files do not pass `storage/artifacts.token_cache_problem`."""


def open_tokens(data_dir: Path) -> tuple[np.memmap, np.memmap, CacheMeta]:
    """(train tokens, validation tokens, meta) of a local token-cache directory, as read-only maps;
    a directory whose meta.json and token files disagree (or name code) is a `DamagedCache`."""
    data_dir = Path(data_dir)
    if not (data_dir / CACHE_MARKER).is_file():
        raise FileNotFoundError(f"{data_dir} is not a token-cache directory (no {CACHE_MARKER})")
    why = token_cache_problem(data_dir, CACHE_MARKER)
    if why:
        raise DamagedCache(f"{data_dir}: {why}")
    meta = _meta_of(data_dir)
    dtype = np.dtype(meta["dtype"])
    train = np.memmap(data_dir / "train.bin", dtype=dtype, mode="r", shape=(meta["train_tokens"],))
    val = np.memmap(data_dir / "val.bin", dtype=dtype, mode="r", shape=(meta["val_tokens"],))
    return train, val, meta


def default_processes(spec: DataSpec) -> int:
    """Tokenizer processes: the spec's `tokenize_cpus` or every CPU this process may use, never more
    than those CPUs (each process holds a tokenizer and batches: more would only cost memory)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if spec.tokenize_cpus and spec.tokenize_cpus > cpus:
        print(f"data.tokenize_cpus: {spec.tokenize_cpus} asked, this machine gives {cpus} CPUs: {cpus} tokenizer processes",
              file=sys.stderr)
    return min(spec.tokenize_cpus or cpus, cpus)

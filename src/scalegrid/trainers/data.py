"""Corpora to token arrays: tokenized once per (corpus, tokenizer, split), cached, shared by every trial.

The orchestrator calls, in this order:

    identity = describe(spec.data)              # cheap: hashes files, tokenizes nothing
    path = cache.load(identity.key)             # cache = TokenCache(results), a ResultsLayout
    if path is None:
        path = cache.save(tokenize(spec.data))  # atomic; a concurrent writer's copy wins
    # ... Trial(config=TrialConfig(data=identity.config, ...), data_key=identity.key)

and the `lm` trainer reads `TokenCache(trial.results).open(trial.data_key)`. `prepare(spec,
results)` does the first four lines.

**Identity.** `describe` returns the typed identity (`trial.DataConfig`) of what determines the token arrays (a SHA-256 of each
file's bytes, not its path; the synthetic spec and generator version; the hub id, config, split
and revision; the tokenizer's kind, size and content hash; the validation settings; the version of
the recipe below) and `key`, a short hash of its canonical JSON. The identity is
`TrialConfig.data`, so it is part of every trial id.

**Recipe.** Documents (empty ones dropped) are split into train and validation by a seeded hash
of their index (`validation.fraction` of them held out, at least one). The training documents are shuffled with
a fixed seed and concatenated with EOS after each, so the first U tokens of `train.bin` are a
random subset of documents and a smaller token budget is a prefix of a larger one. Validation
documents keep their order; only the first `validation.max_tokens` tokens are kept.

**Cache layout.** `<results>/cache/tokens/<key>/`: `train.bin` and `val.bin` (raw uint16 when the
vocabulary fits, else uint32; read with `np.memmap`), `meta.json` (dtype, vocab_size, eos_id,
token and document counts, the identity fields), and `tokenizer/` (the files that rebuild a bpe
or hf tokenizer). A directory is written under a temporary name in the same parent and renamed.
When the results live on an object store (`s3://`, `gs://`), the directory is built in this node's
cache (`~/.cache/scalegrid/tokens/<key>/`, same key) and uploaded with `meta.json` last; another
node copies it down into its own cache the first time a trial there opens it (`np.memmap` needs a
local file).

**Files.** `.txt`/`.text`/`.md` are text (one document per line, through the `datasets` text
builder), `.json`/`.jsonl`/`.ndjson` JSON lines and `.parquet`/`.pq` Parquet, with the document
in `text_field`; a compression suffix (`.gz`, `.zst`, ...) is looked through; `data.format` overrides
the extension. Glob patterns in `data.files` are expanded, sorted.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scalegrid.errors import UserError
from scalegrid.grid import content_hash
from scalegrid.spec import DataSpec
from scalegrid.storage import CACHE_MARKER, ResultsLayout, atomic_dir, first_line, node_cache_dir
from scalegrid.storage.space import full_is_one_line
from scalegrid.trainers.tokenizers import build_tokenizer, file_sha256, tokenizer_identity
from scalegrid.trial import DataIdentity, FilesData, GaussianData, HubData, SyntheticData

DATA_VERSION = "tokens-v1"  # bump when the split / shuffle / concatenation recipe changes
SPLIT_SEED = 0x5CA1E6  # the seeded hash that holds documents out
SHUFFLE_SEED = 0x5CA1E7  # the document order of train.bin

_FORMATS = {
    ".txt": "text", ".text": "text", ".md": "text",
    ".json": "json", ".jsonl": "json", ".ndjson": "json",
    ".parquet": "parquet", ".pq": "parquet",
}  # fmt: skip
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip")


@dataclass
class TokenizedCorpus:
    identity: DataIdentity
    eos_id: int
    train: np.ndarray
    val: np.ndarray
    train_documents: int
    val_documents: int
    tokenizer_kind: str
    tokenizer_files: dict[str, bytes] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.identity.key

    @property
    def vocab_size(self) -> int:
        return self.identity.vocab_size

    @property
    def train_tokens(self) -> int:  # the orchestrator checks unique_tokens <= train_tokens
        return len(self.train)

    @property
    def val_tokens(self) -> int:
        return len(self.val)


def describe(spec: DataSpec) -> DataIdentity:
    """The data's identity (part of every trial id) and its token cache's key; tokenizes nothing."""
    if spec.source == "gaussian":
        from scalegrid.trainers.linreg import GENERATOR_VERSION

        return _identity(GaussianData(generator=GENERATOR_VERSION, **spec.gaussian.model_dump()))
    shared = {
        "tokenizer": tokenizer_identity(spec.tokenizer),
        "validation": spec.validation,
        "recipe": DATA_VERSION,
    }
    shared["vocab_size"] = shared["tokenizer"]["vocab_size"]
    if spec.source == "synthetic":
        from scalegrid.trainers.synthetic import GENERATOR_VERSION

        return _identity(SyntheticData(generator=GENERATOR_VERSION, synthetic=spec.synthetic, **shared))
    if spec.source == "files":
        files = [{"sha256": file_sha256(path), "format": fmt} for path, fmt in resolve_files(spec)]
        return _identity(FilesData(files=files, text_field=spec.text_field, **shared))
    return _identity(HubData(
        hub=spec.hub, hub_config=spec.hub_config, hub_split=spec.hub_split, revision=spec.revision,
        text_field=spec.text_field, **shared,
    ))


def _identity(config) -> DataIdentity:
    """The cache key hashes the identity without `vocab_size` (it follows from the tokenizer)."""
    return DataIdentity(key=content_hash(DataIdentity.fields_of(config)), config=config)


def load_documents(spec: DataSpec) -> list[str]:
    """The corpus's documents in their original order, empty ones dropped."""
    if spec.source == "synthetic":
        from scalegrid.trainers.synthetic import generate_documents

        documents = generate_documents(spec.synthetic)
    elif spec.source == "files":
        documents = [doc for path, fmt in resolve_files(spec) for doc in _load_file(path, fmt, spec.text_field)]
    elif spec.source == "hub":
        documents = _load_hub(spec)
    else:
        raise ValueError("source gaussian has no documents: the linreg trainer generates its data")
    return [doc for doc in documents if isinstance(doc, str) and doc.strip()]


def split_documents(num_documents: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train indices in training order, validation indices in document order).

    A document is held out when its hash is below `fraction`, so its side does not depend on the
    corpus size; a small corpus where no hash is that low holds out its lowest one.
    """
    hashes = _uniform_hash(num_documents, SPLIT_SEED)
    held_out = hashes < fraction
    if num_documents > 1 and not held_out.any():
        held_out[np.argmin(hashes)] = True
    train = np.flatnonzero(~held_out)
    return np.random.default_rng(SHUFFLE_SEED).permutation(train), np.flatnonzero(held_out)


def tokenize(spec: DataSpec) -> TokenizedCorpus:
    """Load, split and tokenize in memory (nothing under the results directory is touched)."""
    identity = describe(spec)
    documents = load_documents(spec)
    if not documents:
        raise UserError(
            f"data: the {spec.source} corpus has no non-empty documents; check data.files / data.text_field"
        )
    train_idx, val_idx = split_documents(len(documents), spec.validation.fraction)
    if len(train_idx) == 0 or len(val_idx) == 0:
        which = "validation" if len(val_idx) == 0 else "training"
        raise UserError(
            f"data.validation.fraction: no {which} documents out of {len(documents)} "
            f"with fraction {spec.validation.fraction}; use a larger corpus or another fraction"
        )
    train_docs = [documents[i] for i in train_idx]
    tokenizer = build_tokenizer(spec.tokenizer, train_docs)
    if tokenizer.vocab_size != identity.vocab_size:  # describe() promised the model this size
        raise RuntimeError(f"tokenizer vocab_size {tokenizer.vocab_size} != described {identity.vocab_size}")
    train = tokenizer.encode_documents(train_docs)
    val = tokenizer.encode_documents([documents[i] for i in val_idx])[: spec.validation.max_tokens]
    return TokenizedCorpus(
        identity=identity,
        eos_id=tokenizer.eos_id,
        train=train,
        val=val,
        train_documents=len(train_idx),
        val_documents=len(val_idx),
        tokenizer_kind=tokenizer.kind,
        tokenizer_files=tokenizer.files(),
    )


class TokenCache:
    """`RESULTS/cache/tokens/<key>/`, one directory per corpus identity, written atomically.

    On an object store the trainers read this node's copy (see the module docstring)."""

    def __init__(self, results: ResultsLayout):
        self.results = results

    def local_dir(self, key: str) -> Path:
        """Where the cache of `key` is read on this machine: in the store, or this node's copy."""
        return self.results.local(*self.results.token_cache(key)) or node_cache_dir() / "tokens" / key

    def load(self, key: str) -> Path | None:
        """The complete local directory of `key` (copied from an object store once), or None."""
        return self.results.materialise_dir(self.results.token_cache(key), self.local_dir(key), marker=CACHE_MARKER)

    def train_tokens(self, key: str) -> int | None:
        """The cached corpus' training tokens, read from its meta.json alone (None: not cached)."""
        parts = (*self.results.token_cache(key), CACHE_MARKER)
        return json.loads(self.results.read_bytes(*parts))["train_tokens"] if self.results.is_file(*parts) else None

    def save(self, corpus: TokenizedCorpus) -> Path:
        """Write the corpus here (on an object store: into this node's cache, then uploaded with
        meta.json last, which marks the copy complete)."""
        target = self.local_dir(corpus.key)
        with full_is_one_line(target.parent):
            local = atomic_dir(target, lambda tmp: _write_cache(tmp, corpus), marker=CACHE_MARKER)
        parts = self.results.token_cache(corpus.key)
        if self.results.object_store and not self.results.is_file(*parts, CACHE_MARKER):
            self.results.upload_tree(local, parts, last=CACHE_MARKER)
        return local

    def open(self, key: str) -> tuple[np.memmap, np.memmap, dict[str, Any]]:
        path = self.load(key)
        if path is None:
            raise FileNotFoundError(f"{self.results.shown(*self.results.token_cache(key))}: no token cache (no {CACHE_MARKER})")
        return open_tokens(path)


def _write_cache(directory: Path, corpus: TokenizedCorpus) -> None:
    dtype = token_dtype(corpus.vocab_size)
    corpus.train.astype(dtype).tofile(directory / "train.bin")
    corpus.val.astype(dtype).tofile(directory / "val.bin")
    if corpus.tokenizer_files:
        (directory / "tokenizer").mkdir()
        for name, content in corpus.tokenizer_files.items():
            (directory / "tokenizer" / name).write_bytes(content)
    meta = {
        "key": corpus.key,
        "dtype": np.dtype(dtype).name,
        "vocab_size": corpus.vocab_size,
        "eos_id": corpus.eos_id,
        "tokenizer": corpus.tokenizer_kind,
        "train_tokens": corpus.train_tokens,
        "val_tokens": corpus.val_tokens,
        "train_documents": corpus.train_documents,
        "val_documents": corpus.val_documents,
        "fields": corpus.identity.fields,
    }
    (directory / CACHE_MARKER).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def prepare(spec: DataSpec, results: ResultsLayout) -> tuple[DataIdentity, Path]:
    """describe, then the cached tokens of that identity, tokenizing and saving them on a miss."""
    identity = describe(spec)
    cache = TokenCache(results)
    return identity, cache.load(identity.key) or cache.save(tokenize(spec))


def open_tokens(data_dir: Path) -> tuple[np.memmap, np.memmap, dict[str, Any]]:
    """(train tokens, validation tokens, meta) of a local token-cache directory, as read-only maps."""
    data_dir = Path(data_dir)
    meta_path = data_dir / CACHE_MARKER
    if not meta_path.is_file():
        raise FileNotFoundError(f"{data_dir} is not a token-cache directory (no {CACHE_MARKER})")
    meta = json.loads(meta_path.read_text())
    if meta.get("dtype") not in ("uint16", "uint32"):  # read from the store: never an object dtype
        raise ValueError(f"{meta_path}: dtype {meta.get('dtype')!r} is not a token dtype")
    dtype = np.dtype(meta["dtype"])
    train = np.memmap(data_dir / "train.bin", dtype=dtype, mode="r", shape=(meta["train_tokens"],))
    val = np.memmap(data_dir / "val.bin", dtype=dtype, mode="r", shape=(meta["val_tokens"],))
    return train, val, meta


def token_dtype(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


# --- loading ----------------------------------------------------------------------------------------


def resolve_files(spec: DataSpec) -> list[tuple[str, str]]:
    """(path, format) per file, globs expanded; a missing file is a UserError naming its entry."""
    resolved = []
    for i, entry in enumerate(spec.files):
        if glob.has_magic(entry):
            paths = sorted(glob.glob(os.path.expanduser(entry), recursive=True))
            if not paths:
                raise UserError(f"data.files[{i}]: {entry} matches no file; check the pattern")
        else:
            paths = [os.path.expanduser(entry)]
        for path in paths:
            if not os.path.isfile(path):
                raise UserError(f"data.files[{i}]: {path} not found; give the path of a .txt, .jsonl or .parquet file")
            resolved.append((path, _format(path, spec.format, f"data.files[{i}]")))
    return resolved


def _format(path: str, declared: str, where: str) -> str:
    if declared != "auto":
        return declared
    name = path.lower()
    for suffix in _COMPRESSION:
        name = name.removesuffix(suffix)
    fmt = _FORMATS.get(os.path.splitext(name)[1])
    if fmt is None:
        raise UserError(
            f"{where}: cannot tell the format of {path} from its extension; set data.format (text, json or parquet)"
        )
    return fmt


def _load_file(path: str, fmt: str, text_field: str) -> list[str]:
    import datasets

    try:
        dataset = datasets.load_dataset(fmt, data_files=[path], split="train")
    except Exception as err:  # a parse error past the documents data_checks read: the file's, in one line
        raise UserError(f"data.files: {path} cannot be read as {fmt} ({type(err).__name__}: {first_line(err, 160)})") from None
    column = "text" if fmt == "text" else text_field
    if column not in dataset.column_names:
        raise UserError(
            f"data.text_field: {text_field!r} is not a column of {path} (columns: {', '.join(dataset.column_names)})"
        )
    return list(dataset[column])


def _load_hub(spec: DataSpec) -> list[str]:
    import datasets

    try:
        dataset = datasets.load_dataset(spec.hub, spec.hub_config, split=spec.hub_split, revision=spec.revision)
    except Exception as err:  # DatasetNotFoundError, ConnectionError, ValueError (bad split), ...
        detail = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(
            f"data.hub: cannot load {spec.hub!r} split {spec.hub_split!r} ({type(err).__name__}: {detail})"
        ) from None
    if spec.text_field not in dataset.column_names:
        raise UserError(
            f"data.text_field: {spec.text_field!r} is not a column of {spec.hub} "
            f"(columns: {', '.join(dataset.column_names)})"
        )
    return list(dataset[spec.text_field])


# --- hashing ----------------------------------------------------------------------------------------


def _uniform_hash(n: int, seed: int) -> np.ndarray:
    """splitmix64 of (index, seed) as floats in [0, 1): a fixed pseudo-random number per document."""
    z = np.arange(n, dtype=np.uint64) + np.uint64(seed * 0x9E3779B97F4A7C15 % (1 << 64))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)

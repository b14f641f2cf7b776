"""Tokenizers by kind: `byte` (no files), `bpe` (trained on the training documents), `hf` (a directory).

Each one turns a list of documents into one token stream with EOS after every document
(`encode_documents`, or `encode_with_lengths` with each document's length), knows its `vocab_size` and `eos_id` without tokenizing anything (that is
what `data.describe` hashes), and hands back the files that reproduce it (`files`), which
`data.TokenCache` stores beside the tokens.

- `byte`: UTF-8 bytes 0-255 and EOS = 256, vocabulary 257. Any text, no files, no training.
- `bpe`: a byte-level BPE of `vocab_size` entries (default 1024; EOS is id 0) trained with the
  `tokenizers` library on the corpus's training documents only (streamed: an iterable of
  documents or of batches of them), so validation text is never seen.
  The model's vocabulary is the requested size even if the corpus yields fewer merges, so
  `describe` knows it without training.
- `hf`: any Hugging Face tokenizer, `AutoTokenizer.from_pretrained(path)`; a local directory is
  identified by the SHA-256 of its files, so a moved copy is the same tokenizer. EOS is the
  tokenizer's `eos_token` (else its `sep_token`).
"""

from __future__ import annotations

import hashlib
import itertools
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from scalegrid.errors import UserError
from scalegrid.spec import TokenizerSpec
from scalegrid.data.corpus import hub
from scalegrid.data.fingerprint import file_sha256

EOS_TEXT = "<|endoftext|>"
DEFAULT_BPE_VOCAB = 1024
BPE_VERSION = "bytelevel-bpe-v1"  # bump when the BPE recipe below changes
_ENCODE_CHUNK = 4096  # documents per encode_batch call: bounds the Python lists alive at once


class Tokenizer(Protocol):
    kind: str
    vocab_size: int
    eos_id: int

    def encode_documents(self, documents: Sequence[str]) -> np.ndarray:
        """All documents' token ids, each document followed by `eos_id`, as one int64 array."""
        ...

    def encode_with_lengths(self, documents: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(`encode_documents`, each document's token count with its EOS)."""
        ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def files(self) -> dict[str, bytes]:
        """File name -> content that rebuild this tokenizer (`load_saved`); empty for `byte`."""
        ...


class ByteTokenizer:
    kind = "byte"
    vocab_size = 257
    eos_id = 256

    def encode_documents(self, documents: Sequence[str]) -> np.ndarray:
        return self.encode_with_lengths(documents)[0]

    def encode_with_lengths(self, documents: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = [doc.encode("utf-8") for doc in documents]
        flat = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.int64)
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        return np.insert(flat, np.cumsum(lengths), self.eos_id), lengths + 1

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if i < 256).decode("utf-8", errors="replace")

    def files(self) -> dict[str, bytes]:
        return {}


class FastTokenizer:
    """A `tokenizers.Tokenizer` (our BPE, or the backend of an HF fast tokenizer)."""

    def __init__(self, kind: str, backend, vocab_size: int, eos_id: int, files: dict[str, bytes]):
        self.kind, self.backend, self.vocab_size, self.eos_id = kind, backend, vocab_size, eos_id
        self._files = files

    def encode_documents(self, documents: Sequence[str]) -> np.ndarray:
        return self.encode_with_lengths(documents)[0]

    def encode_with_lengths(self, documents: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        pieces = []
        for start in range(0, len(documents), _ENCODE_CHUNK):
            chunk = self.backend.encode_batch(list(documents[start : start + _ENCODE_CHUNK]), add_special_tokens=False)
            pieces.append(_join_with_eos([enc.ids for enc in chunk], self.eos_id))
        if not pieces:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces])

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=True)

    def files(self) -> dict[str, bytes]:
        return dict(self._files)


class SlowHFTokenizer:
    """An HF tokenizer without a Rust backend (sentencepiece-only and the like)."""

    kind = "hf"

    def __init__(self, tokenizer, eos_id: int, files: dict[str, bytes]):
        self.tokenizer, self.vocab_size, self.eos_id, self._files = tokenizer, len(tokenizer), eos_id, files

    def encode_documents(self, documents: Sequence[str]) -> np.ndarray:
        return self.encode_with_lengths(documents)[0]

    def encode_with_lengths(self, documents: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = self.tokenizer(list(documents), add_special_tokens=False, verbose=False)["input_ids"]
        return _join_with_eos(ids, self.eos_id)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def files(self) -> dict[str, bytes]:
        return dict(self._files)


def _join_with_eos(id_lists: list[list[int]], eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(ids) for ids in id_lists), dtype=np.int64, count=len(id_lists))
    flat = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int64, count=int(lengths.sum()))
    return np.insert(flat, np.cumsum(lengths), eos_id), lengths + 1


# --- identity: what describe() hashes, without tokenizing ------------------------------------------


def tokenizer_identity(spec: TokenizerSpec) -> dict:
    """kind, vocab_size and a content identity; cheap (an hf tokenizer is loaded, nothing is encoded)."""
    if spec.kind == "byte":
        return {"kind": "byte", "vocab_size": ByteTokenizer.vocab_size}
    if spec.kind == "bpe":
        return {"kind": "bpe", "vocab_size": _bpe_vocab(spec), "recipe": BPE_VERSION}
    tokenizer, sha256 = _load_hf(spec.path)
    return {"kind": "hf", "vocab_size": len(tokenizer), "sha256": sha256}


def _bpe_vocab(spec: TokenizerSpec) -> int:
    vocab = spec.vocab_size or DEFAULT_BPE_VOCAB
    if vocab < 257:
        raise UserError(
            f"data.tokenizer.vocab_size: a byte-level BPE needs at least 257 entries (256 bytes + EOS), got {vocab}"
        )
    return vocab


# --- building ---------------------------------------------------------------------------------------


def build_tokenizer(spec: TokenizerSpec, train_documents: Iterable[str] | Iterable[list[str]] = ()) -> Tokenizer:
    """The tokenizer of `spec`; `train_documents` (documents, or batches of them, streamed) are
    read only to train a `bpe`."""
    return TOKENIZERS[spec.kind](spec, train_documents)


def _byte(spec: TokenizerSpec, train_documents: Iterable) -> Tokenizer:
    return ByteTokenizer()


def _bpe(spec: TokenizerSpec, train_documents: Iterable) -> Tokenizer:
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, pre_tokenizers, trainers

    vocab = _bpe_vocab(spec)
    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=[EOS_TEXT],  # id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes: no unknown tokens
        show_progress=False,
    )
    backend.train_from_iterator(train_documents, trainer=trainer)
    files = {"tokenizer.json": backend.to_str().encode("utf-8")}
    return FastTokenizer("bpe", backend, vocab, backend.token_to_id(EOS_TEXT), files)


def _hf(spec: TokenizerSpec, train_documents: Iterable) -> Tokenizer:
    tokenizer, _ = _load_hf(spec.path)
    return _wrap_hf(tokenizer, spec.path)


def _wrap_hf(tokenizer, path: str) -> Tokenizer:
    eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if eos_id is None:
        raise UserError(
            f"data.tokenizer.path: {path} has no eos_token (nor sep_token) to separate documents; "
            "set eos_token in its tokenizer_config.json"
        )
    with tempfile.TemporaryDirectory() as tmp:  # what save_pretrained writes is what reloads it
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
    if getattr(tokenizer, "is_fast", False):
        return FastTokenizer("hf", tokenizer.backend_tokenizer, len(tokenizer), eos_id, files)
    return SlowHFTokenizer(tokenizer, eos_id, files)


def _load_hf(path: str):
    """(tokenizer, content sha256). A local directory is hashed file by file; a hub id by its vocab."""
    from transformers import AutoTokenizer

    local = Path(path).expanduser()
    looks_like_path = path.startswith((".", "/", "~")) or path.count("/") > 1 or local.exists()
    fix = "give a directory written by save_pretrained() (tokenizer.json or vocab files) or a hub id"
    if looks_like_path and not local.is_dir():
        reason = "it is not a directory" if local.exists() else "it does not exist"
        raise UserError(f"data.tokenizer.path: {path} is not a loadable tokenizer directory; {reason}: {fix}")
    cached_only = False
    if not looks_like_path:  # a hub id: one brief question first, not the hub client's retries
        access = hub.hub_access(path)
        if access in (hub.GATED, hub.MISSING):
            what = "a gated repository you have no access to (accept its licence on the hub and `hf auth login`)" \
                if access == hub.GATED else "not a repository the hub serves to you (check the id; `hf auth login` for a private one)"
            raise UserError(f"data.tokenizer.path: {path} is {what}; {hub.OFFLINE_FIX}")
        cached_only = access != hub.READABLE
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local) if looks_like_path else path, local_files_only=cached_only)
    except Exception as err:  # transformers raises OSError, ValueError, KeyError, ... for a bad directory
        if cached_only:
            raise UserError(
                f"data.tokenizer.path: {path}: the hub cannot be asked ({access}) and the tokenizer is not in the Hugging "
                f"Face cache; {hub.OFFLINE_FIX}"
            ) from None
        detail = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(
            f"data.tokenizer.path: {path} is not a loadable tokenizer directory; {fix} ({type(err).__name__}: {detail})"
        ) from None
    if looks_like_path:
        digest = hashlib.sha256()
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            digest.update(file.relative_to(local).as_posix().encode() + b"\0" + file_sha256(file).encode())
        return tokenizer, digest.hexdigest()
    if getattr(tokenizer, "is_fast", False):  # a hub tokenizer: its full serialisation is its content
        return tokenizer, hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()
    vocab = sorted(tokenizer.get_vocab().items())
    return tokenizer, hashlib.sha256(repr(vocab).encode()).hexdigest()


def load_saved(kind: str, directory: str | Path) -> Tokenizer:
    """The tokenizer stored in a token-cache directory's `tokenizer/` folder (decoding, probes)."""
    directory = Path(directory)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        from tokenizers import Tokenizer as Backend

        backend = Backend.from_file(str(directory / "tokenizer.json"))
        files = {"tokenizer.json": (directory / "tokenizer.json").read_bytes()}
        return FastTokenizer("bpe", backend, backend.get_vocab_size(), backend.token_to_id(EOS_TEXT), files)
    from transformers import AutoTokenizer

    # read back from the results store: its files only, never code a config names (SECURITY.md)
    return _wrap_hf(AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False, local_files_only=True), str(directory))


# --- as a Hugging Face tokenizer beside a saved model ---------------------------------------------


def hf_files(tokenizer: Tokenizer) -> dict[str, bytes]:
    """The files of a Hugging Face tokenizer directory that encodes as `tokenizer` does (its EOS the
    `eos_token`): what `AutoTokenizer.from_pretrained` loads beside a saved model."""
    if tokenizer.kind == "hf":
        return tokenizer.files()
    from transformers import PreTrainedTokenizerFast

    backend = _byte_backend() if tokenizer.kind == "byte" else tokenizer.backend
    fast = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS_TEXT)
    with tempfile.TemporaryDirectory() as tmp:
        fast.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def _byte_backend():
    """`byte` as a `tokenizers.Tokenizer`: byte b is id b (GPT-2's printable stand-in for each byte,
    no merges), EOS_TEXT is 256."""
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, pre_tokenizers

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    stand_in = {b: chr(b) if b in printable else chr(next(extra)) for b in range(256)}  # GPT-2's bytes_to_unicode
    backend = Backend(models.BPE(vocab={stand_in[b]: b for b in range(256)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([EOS_TEXT])  # id 256: ByteTokenizer.eos_id
    return backend


TOKENIZERS: dict[str, Callable[[TokenizerSpec, Iterable], Tokenizer]] = {
    "byte": _byte,
    "bpe": _bpe,
    "hf": _hf,
}

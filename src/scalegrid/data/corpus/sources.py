"""Where a corpus comes from: its files, and its documents (or token ids) as a stream of batches.

Every text source is read through the `datasets` streaming API (`load_dataset(...,
streaming=True)`), local files and hub datasets alike, so no more than a batch of documents is in
memory whatever the corpus' size:

- `files`: `.txt`/`.text`/`.md` are text (one document per line), `.json`/`.jsonl`/`.ndjson` JSON
  lines and `.parquet`/`.pq` Parquet, with the document in `text_field`; a compression suffix
  (`.gz`, `.zst`, ...) is looked through; `data.format` overrides the extension; globs are
  expanded and sorted.
- `hub`: the dataset id at the commit `describe` resolved, its split, optionally only the data
  files matching `hub_files` (a subset of a huge corpus).
- `synthetic`: the generator's documents (small: generated in memory).
- `tokens`: token ids made elsewhere, in file order: `.npy` (any integer dtype), `.bin` (raw,
  nanoGPT's layout: uint16 when `vocab_size` fits in 16 bits, else uint32), and Parquet or Arrow
  (`.arrow`, IPC file or stream, as `datasets.save_to_disk` writes) with an `input_ids` column
  of integer lists, one row per document, taken as they are (nothing added).

Empty documents (blank after stripping) are dropped, so they take no index in the split.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from scalegrid.errors import UserError
from scalegrid.files import why_not_a_file
from scalegrid.spec import DataSpec
from scalegrid.data.synthetic import generate_documents
from scalegrid.storage import first_line

BATCH_DOCUMENTS = 1024  # documents per batch read from a stream (and handed to a tokenizer process)
CHUNK_TOKENS = 1 << 22  # token ids per chunk read from a token file
TOKEN_COLUMN = "input_ids"

_FORMATS = {
    ".txt": "text", ".text": "text", ".md": "text",
    ".json": "json", ".jsonl": "json", ".ndjson": "json",
    ".parquet": "parquet", ".pq": "parquet",
    ".npy": "npy", ".bin": "bin", ".arrow": "arrow",
}  # fmt: skip
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip")
TEXT_FORMATS = ("text", "json", "parquet")
TOKEN_FORMATS = ("npy", "bin", "parquet", "arrow")


@dataclass(frozen=True)
class SourceFile:
    path: str
    format: str
    where: str  # the spec entry it came from, for messages: data.files[2]


def resolve_files(spec: DataSpec) -> list[SourceFile]:
    """The files of a `files` or `tokens` source, globs expanded and sorted; a missing file, an
    unknown extension or a format of the wrong kind is a UserError naming its entry."""
    allowed = TOKEN_FORMATS if spec.source == "tokens" else TEXT_FORMATS
    resolved = []
    for i, entry in enumerate(spec.files):
        where = f"data.files[{i}]"
        if glob.has_magic(entry):
            paths = sorted(glob.glob(os.path.expanduser(entry), recursive=True))
            if not paths:
                raise UserError(f"{where}: {entry} matches no file; check the pattern")
        else:
            paths = [os.path.expanduser(entry)]
        for path in paths:
            problem = why_not_a_file(path)
            if problem:
                kinds = ".npy, .bin, .parquet or .arrow" if spec.source == "tokens" else ".txt, .jsonl or .parquet"
                what = "not found" if problem == "not found" else f"is {problem}"
                raise UserError(f"{where}: {path} {what}; give the path of a {kinds} file")
            resolved.append(SourceFile(path, _format(path, spec.format, where, allowed), where))
    return resolved


def _format(path: str, declared: str, where: str, allowed: tuple[str, ...]) -> str:
    fmt = declared
    if fmt == "auto":
        name = path.lower()
        for suffix in _COMPRESSION:
            name = name.removesuffix(suffix)
        fmt = _FORMATS.get(os.path.splitext(name)[1])
        if fmt is None:
            raise UserError(
                f"{where}: cannot tell the format of {path} from its extension; set data.format ({', '.join(allowed)})"
            )
    if fmt not in allowed:
        kind = "token ids" if allowed == TOKEN_FORMATS else "documents"
        raise UserError(f"{where}: {path} is {fmt}, which holds no {kind} for this source; give {', '.join(allowed)}")
    return fmt


# --- documents ----------------------------------------------------------------------------------


def document_batches(spec: DataSpec, revision: str | None = None) -> Iterator[list[str]]:
    """The corpus' non-empty documents in stream order, in batches of up to BATCH_DOCUMENTS."""
    if spec.source == "synthetic":
        documents = [d for d in generate_documents(spec.synthetic) if d.strip()]
        for start in range(0, len(documents), BATCH_DOCUMENTS):
            yield documents[start : start + BATCH_DOCUMENTS]
    elif spec.source == "files":
        for file in resolve_files(spec):
            column = "text" if file.format == "text" else spec.text_field
            yield from _stream(lambda f=file: _load(f.format, data_files=[f.path]), column, f"{file.where}: {file.path}", file.path)
    elif spec.source == "hub":
        open_hub = lambda: _load(  # noqa: E731
            spec.hub, name=spec.hub_config, split=spec.hub_split, revision=revision, data_files=spec.hub_files or None
        )
        yield from _stream(open_hub, spec.text_field, f"data.hub: {spec.hub} split {spec.hub_split!r}", spec.hub)
    else:
        raise ValueError(f"source {spec.source} has no documents")


def _load(path: str, **kwargs):
    import datasets

    kwargs.setdefault("split", "train")
    return datasets.load_dataset(path, streaming=True, **kwargs)


def _stream(open_dataset, column: str, where: str, name: str) -> Iterator[list[str]]:
    """Batches of one streamed dataset's non-empty `column`; a failure to open or read it (a
    missing split, a corrupt file, a column that is not there) is one line naming `where`."""
    try:
        for batch in open_dataset().iter(batch_size=BATCH_DOCUMENTS):
            if column not in batch:
                raise UserError(f"data.text_field: {column!r} is not a column of {name} (columns: {', '.join(batch)})")
            documents = [d for d in batch[column] if isinstance(d, str) and d.strip()]
            if documents:
                yield documents
    except UserError:
        raise
    except Exception as err:  # DatasetNotFoundError, ArrowInvalid, EOFError (truncated gzip), ValueError (split)...
        raise UserError(f"{where}: cannot be read ({type(err).__name__}: {first_line(err, 200)})") from None


# --- token ids ----------------------------------------------------------------------------------


def token_dtype(vocab_size: int) -> type:
    """The narrowest unsigned type that holds every id: the token cache's, and a `.bin`'s."""
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def check_token_file(file: SourceFile, vocab_size: int) -> None:
    """What can be told of a token file without reading its ids (a UserError naming it else)."""
    where = f"{file.where}: {file.path}"
    if file.format == "bin":
        itemsize = np.dtype(token_dtype(vocab_size)).itemsize
        size = os.path.getsize(file.path)
        if size % itemsize:
            raise UserError(
                f"{where} is {size:,} bytes, not a whole number of {np.dtype(token_dtype(vocab_size)).name} ids "
                f"({itemsize} bytes each, as vocab_size {vocab_size:,} implies); check the file and data.vocab_size"
            )
    elif file.format == "npy":
        array = _npy(file)
        if not np.issubdtype(array.dtype, np.integer) or array.ndim != 1:
            raise UserError(f"{where} holds a {array.ndim}-D {array.dtype} array; token ids are a 1-D integer array")
    else:
        _check_list_of_ints(_arrow_schema(file), where)


def token_chunks(file: SourceFile, vocab_size: int) -> Iterator[np.ndarray]:
    """The ids of one token file in order, in chunks (memory-mapped where the format allows)."""
    if file.format in ("npy", "bin"):
        ids = _npy(file) if file.format == "npy" else np.memmap(file.path, dtype=token_dtype(vocab_size), mode="r")
        for start in range(0, len(ids), CHUNK_TOKENS):
            yield np.asarray(ids[start : start + CHUNK_TOKENS])
        return
    for batch in _arrow_batches(file):
        yield batch.column(0).flatten().to_numpy()


def _npy(file: SourceFile) -> np.ndarray:
    try:
        return np.load(file.path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise UserError(f"{file.where}: {file.path} is not a .npy array ({first_line(err)})") from None


def _arrow_schema(file: SourceFile):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if file.format == "parquet":
            return pq.read_schema(file.path)
        with pa.memory_map(file.path) as source:
            return _ipc_reader(source).schema
    except pa.ArrowException as err:
        raise UserError(f"{file.where}: {file.path} is not a {file.format} file ({first_line(err)})") from None


def _ipc_reader(source):
    """An Arrow IPC file (random access) or stream (what `datasets.save_to_disk` writes)."""
    import pyarrow as pa

    try:
        return pa.ipc.open_file(source)
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_stream(source)


def _arrow_batches(file: SourceFile):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if file.format == "parquet":
        yield from pq.ParquetFile(file.path).iter_batches(batch_size=BATCH_DOCUMENTS, columns=[TOKEN_COLUMN])
        return
    with pa.memory_map(file.path) as source:
        reader = _ipc_reader(source)
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches)) if hasattr(reader, "get_batch") else reader
        for batch in batches:
            yield batch.select([TOKEN_COLUMN])


def _check_list_of_ints(schema, where: str) -> None:
    import pyarrow as pa

    if TOKEN_COLUMN not in schema.names:
        raise UserError(f"{where} has no {TOKEN_COLUMN!r} column (columns: {', '.join(schema.names)}); token files hold one")
    kind = schema.field(TOKEN_COLUMN).type
    is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    if not (is_list and pa.types.is_integer(kind.value_type)):
        raise UserError(f"{where}: column {TOKEN_COLUMN!r} is {kind}, not a list of integer ids per document")

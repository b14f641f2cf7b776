"""Up-front checks of a corpus' files, before anything is written or tokenized: each file, and
whether they can hold the largest budget at all.

Each file of `data.files` is opened through `datasets` in streaming mode, the way the corpus is
read later, and read only until its first document with text: it must parse in its format, have
the text field, and hold at least one document with a non-blank text (the tokenizers give every
such text at least one token; blank documents are dropped). A failure is one `UserError` line
naming the file and what is wrong, instead of a `datasets` traceback inside tokenization.

    >>> check_files(spec.data)      # plan and run call it through orchestrator/plan.make_plan

`check_corpus_size` refuses a corpus that cannot hold the largest budget, with both sizes, from the
files' sizes alone: an uncompressed text file makes at most one token per byte of its text (every
tokenizer here gives a token at least one byte; a document's end token and a SentencePiece
tokenizer's leading space are paid for by its line's end and its JSON quoting: at most 2 tokens
per line of a .txt), a token file exactly its ids. Compressed and Parquet text files bound nothing
without being read (a gzip file's recorded size is only its last member's; Parquet may store a
repeated document once): their corpus is counted when tokenized (`scalegrid prepare`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
from pathlib import Path

import numpy as np

from scalegrid.errors import UserError
from scalegrid.spec import DataSpec
from scalegrid.storage import ResultsLayout, first_line
from scalegrid.data.corpus.sources import SourceFile, resolve_files, token_dtype

TOKENS_PER_BYTE = {"json": 1, "text": 2}  # at most, of an uncompressed file of this format (see above)


def check_files(spec: DataSpec) -> None:
    """Every data file opens in its format and holds a document with text in the text field."""
    if spec.source != "files":
        return
    for source in resolve_files(spec):
        check_file(source.path, source.format, spec.text_field)


def check_file(path: str, fmt: str, text_field: str) -> None:
    import datasets

    column = "text" if fmt == "text" else text_field
    with _quiet(datasets):
        try:
            first, documents, found = _first_text(datasets.load_dataset(fmt, data_files=[path], split="train", streaming=True), column)
        except StopIteration:  # how `datasets` says that a JSON file is empty
            first, documents, found = None, 0, False
        except Exception as err:  # noqa: BLE001 - any parse failure is the file's, said in one line
            reason = f"{type(err).__name__}: {first_line(err, 160)}"
            raise UserError(f"data.files: {path} cannot be read as {fmt} ({reason}); check the file or set data.format") from None
    if first is None:
        raise UserError(f"data.files: {path} holds no documents; remove it from data.files or fill it")
    if column not in first:
        raise UserError(
            f"data.text_field: {text_field!r} is not a field of {path} (its fields: {', '.join(map(str, first))}); "
            "set data.text_field"
        )
    if not found:
        raise UserError(f"data.files: {path}: none of its {documents} documents has text in {column!r}; check the file")


def _first_text(stream, column: str) -> tuple[dict | None, int, bool]:
    """(the first document, documents read, whether one has text): reads until one does."""
    first, documents = None, 0
    for document in stream:
        first = first or document
        documents += 1
        if column not in document or _has_text(document[column]):
            return first, documents, column in document
    return first, documents, False


def _has_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


@contextlib.contextmanager
def _quiet(datasets):
    """`datasets` logs its parse errors on stderr: the error here is the one line."""
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)


def check_outside_data(results: ResultsLayout, spec: DataSpec) -> None:
    """Results never inside a data glob: the sweep's own files (leases, rows, caches) would match it,
    and the next run would read them as its corpus (or, changed, see a different corpus)."""
    if results.local_path is None:
        return
    for i, entry in enumerate(spec.files):
        if glob.has_magic(entry) and glob_reaches(entry, results.local_path):
            raise UserError(
                f"results: {results.local_path} is inside data.files[{i}] ({entry}): the sweep's own files would become "
                "its corpus; put the results elsewhere (--results) or narrow the pattern"
            )


def glob_reaches(pattern: str, path: Path) -> bool:
    """Whether the glob `pattern` can match a path under `path` (or `path` itself)."""
    parts = Path(os.path.abspath(os.path.expanduser(pattern))).parts
    target = Path(os.path.abspath(path)).parts
    for pat, part in zip(parts, target):
        if pat == "**":
            return True
        if not fnmatch.fnmatchcase(part, pat):
            return False
    return len(parts) >= len(target)


def check_corpus_size(spec: DataSpec) -> None:
    """A `files` or `tokens` corpus whose files cannot hold the largest budget is refused, with both sizes."""
    if spec.source not in ("files", "tokens"):
        return
    files = resolve_files(spec)
    most = [_most_tokens(f, spec) for f in files]
    if None in most:
        return  # a file that bounds nothing unread: counted when tokenized
    training = sum(most) - (spec.validation.max_tokens if spec.source == "tokens" else 0)  # token files: validation first
    need = max(spec.unique_tokens)
    if training < need:
        size = sum(os.path.getsize(f.path) for f in files)
        what = "ids" if spec.source == "tokens" else "tokens (a token is at least one byte of text)"
        raise UserError(
            f"data.unique_tokens: the largest budget, {need:,} tokens, is more than the corpus holds: its {len(files)} "
            f"file(s) of {size:,} bytes make at most {max(training, 0):,} training {what}; add data.files or lower the budget"
        )


def _most_tokens(file: SourceFile, spec: DataSpec) -> int | None:
    """At most how many tokens a file makes (token files: exactly), or None when its size says nothing."""
    if file.format == "bin":
        return os.path.getsize(file.path) // np.dtype(token_dtype(spec.vocab_size)).itemsize
    if file.format == "npy":
        return int(np.load(file.path, mmap_mode="r", allow_pickle=False).size)
    compressed = os.path.splitext(file.path)[1].lower() not in (".txt", ".text", ".md", ".json", ".jsonl", ".ndjson")
    if compressed or file.format not in TOKENS_PER_BYTE:
        return None
    return TOKENS_PER_BYTE[file.format] * os.path.getsize(file.path)

"""Corpora through `datasets` (text, JSON lines, Parquet, a hub id), identity, split and the token cache."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scalegrid.errors import UserError
from scalegrid.spec import DataSpec
from scalegrid.trainers import data
from scalegrid.storage import layout
from scalegrid.trainers.data import TokenCache, describe, load_documents, open_tokens, prepare, tokenize

DOCS = [f"document {i}: the color of entity{i % 7} is shade{i % 5} ." for i in range(120)]


@pytest.fixture
def corpus_files(tmp_path):
    """The same 120 documents as .txt (one per line), .jsonl and .parquet, 40 in each."""
    (tmp_path / "a.txt").write_text("\n".join(DOCS[:40]) + "\n\n")  # a blank line is no document
    lines = [json.dumps({"body": d, "id": i}) + "\n" for i, d in enumerate(DOCS[40:80])]
    (tmp_path / "b.jsonl").write_text("".join(lines))
    pq.write_table(pa.table({"body": DOCS[80:], "n": list(range(40))}), tmp_path / "c.parquet")
    return tmp_path


def files_spec(directory, names=("a.txt", "b.jsonl", "c.parquet"), **kw) -> DataSpec:
    return DataSpec(source="files", files=[str(directory / n) for n in names], text_field="body",
                    unique_tokens=[256], validation={"fraction": 0.2, "max_tokens": 64}, **kw)


def test_text_jsonl_and_parquet_files(corpus_files):
    spec = files_spec(corpus_files)
    assert load_documents(spec) == DOCS
    identity = describe(spec)
    assert [f["format"] for f in identity.fields["files"]] == ["text", "json", "parquet"]
    assert all(len(f["sha256"]) == 64 for f in identity.fields["files"])
    corpus = tokenize(spec)
    assert corpus.train_documents + corpus.val_documents == 120 and 10 < corpus.val_documents < 40
    assert corpus.train_tokens == len(corpus.train) == sum(len(d.encode()) + 1 for d in DOCS) - _val_bytes(spec)
    assert corpus.val_tokens == 64 and corpus.key == identity.key


def _val_bytes(spec):
    _, val_idx = data.split_documents(120, spec.validation.fraction)
    return sum(len(DOCS[i].encode()) + 1 for i in val_idx)


def test_identity_is_content_not_path(corpus_files, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    for name in ("a.txt", "b.jsonl", "c.parquet"):
        (other / name).write_bytes((corpus_files / name).read_bytes())
    assert describe(files_spec(other)).key == describe(files_spec(corpus_files)).key
    (other / "a.txt").write_text("changed\n")
    assert describe(files_spec(other)).key != describe(files_spec(corpus_files)).key
    base = describe(files_spec(corpus_files)).key
    assert describe(files_spec(corpus_files, tokenizer="bpe")).key != base
    assert describe(files_spec(corpus_files).model_copy(update={"text_field": "n"})).key != base


def test_format_override_and_glob(corpus_files):
    (corpus_files / "d.log").write_text("one\ntwo\n")
    with pytest.raises(UserError, match=r"data.files\[0\]: cannot tell the format"):
        describe(files_spec(corpus_files, names=("d.log",)))
    assert load_documents(files_spec(corpus_files, names=("d.log",), format="text")) == ["one", "two"]
    spec = DataSpec(source="files", files=[str(corpus_files / "*.jsonl")], text_field="body", unique_tokens=[1])
    assert load_documents(spec) == DOCS[40:80]


def test_missing_file_and_column_are_one_line_user_errors(corpus_files):
    with pytest.raises(UserError) as err:
        describe(files_spec(corpus_files, names=("nope.jsonl",)))
    assert str(err.value).startswith(f"data.files[0]: {corpus_files / 'nope.jsonl'} not found; ")
    with pytest.raises(UserError, match=r"data.files\[0\]: .* matches no file"):
        describe(files_spec(corpus_files, names=("*.csv",)))
    with pytest.raises(UserError, match="data.text_field: 'text' is not a column of .*b.jsonl .columns: body, id."):
        load_documents(DataSpec(source="files", files=[str(corpus_files / "b.jsonl")], unique_tokens=[1]))


def test_hub_source_through_load_dataset_with_a_local_directory(corpus_files):
    hub_dir = corpus_files / "hub"
    hub_dir.mkdir()
    os.rename(corpus_files / "b.jsonl", hub_dir / "train.jsonl")
    spec = DataSpec(source="hub", hub=str(hub_dir), text_field="body", unique_tokens=[1])
    assert load_documents(spec) == DOCS[40:80]
    fields = describe(spec).fields
    assert (fields["hub"], fields["hub_split"], fields["revision"]) == (str(hub_dir), "train", None)
    with pytest.raises(UserError, match="data.hub: cannot load .* split 'test'"):
        load_documents(DataSpec(source="hub", hub=str(hub_dir), hub_split="test", text_field="body", unique_tokens=[1]))


def test_split_is_seeded_and_budgets_are_prefixes():
    train_a, val_a = data.split_documents(1000, 0.05)
    train_b, val_b = data.split_documents(1000, 0.05)
    assert np.array_equal(train_a, train_b) and np.array_equal(val_a, val_b)
    assert 25 < len(val_a) < 75 and not set(train_a) & set(val_a) and len(train_a) + len(val_a) == 1000
    assert not np.array_equal(train_a, np.sort(train_a))  # training documents are shuffled
    held_small = set(data.split_documents(500, 0.05)[1])
    assert held_small == {i for i in val_a if i < 500}  # a document's side does not depend on corpus size


def test_cache_round_trip_and_hit_without_tokenizing(tmp_path, monkeypatch):
    spec = DataSpec(source="synthetic", synthetic={"documents": 100, "entities": 20}, unique_tokens=[64])
    identity, path = prepare(spec, layout(tmp_path))
    assert path == tmp_path / "cache" / "tokens" / identity.key
    train, val, meta = open_tokens(path)
    corpus = tokenize(spec)
    assert np.array_equal(train, corpus.train) and np.array_equal(val, corpus.val)
    assert train.dtype == np.uint16 and meta["train_tokens"] == corpus.train_tokens
    assert meta["vocab_size"] == 257 and meta["eos_id"] == 256 and meta["fields"] == identity.fields

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(data, "tokenize", no_tokenizing)
    monkeypatch.setattr(data, "build_tokenizer", no_tokenizing)
    assert prepare(spec, layout(tmp_path)) == (identity, path)
    assert np.array_equal(open_tokens(TokenCache(layout(tmp_path)).load(identity.key))[0], train)


def test_save_is_atomic_and_the_first_writer_wins(tmp_path):
    spec = DataSpec(source="synthetic", synthetic={"documents": 60, "entities": 10}, unique_tokens=[64])
    corpus = tokenize(spec)
    cache = TokenCache(layout(tmp_path))
    assert cache.load(corpus.key) is None
    first = cache.save(corpus)
    before = (first / "train.bin").stat().st_mtime_ns
    corpus.train = corpus.train[:10]  # a second writer with (here: visibly) other bytes loses
    assert cache.save(corpus) == first and (first / "train.bin").stat().st_mtime_ns == before
    assert sorted(p.name for p in cache.local_dir(corpus.key).parent.iterdir()) == [corpus.key]  # no temporary directory left


def test_a_small_corpus_still_holds_one_document_out(tmp_path):
    assert len(data.split_documents(10, 0.001)[1]) == 1
    (tmp_path / "one.txt").write_text("a single document\n")
    spec = DataSpec(source="files", files=[str(tmp_path / "one.txt")], unique_tokens=[64])
    with pytest.raises(UserError, match="data.validation.fraction: no validation documents out of 1"):
        tokenize(spec)

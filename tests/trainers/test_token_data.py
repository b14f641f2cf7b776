"""Corpora through `datasets` streaming (text, JSON lines, Parquet, compressed), identity, the
paper's selection rule (budgets are prefixes, validation held out) and the token cache."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scalegrid.errors import UserError
from scalegrid.spec import DataSpec
from scalegrid.storage import layout
from scalegrid.data.corpus import build as recipe
from scalegrid.data.corpus import cache as token_cache
from scalegrid.data.identity import TokenCache, describe, load_documents, open_tokens, prepare, split_documents

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
    fields = {"unique_tokens": [256], "validation": {"fraction": 0.2, "max_tokens": 64}, **kw}
    return DataSpec(source="files", files=[str(directory / n) for n in names], text_field="body", **fields)


def test_text_jsonl_and_parquet_files(corpus_files, tmp_path):
    spec = files_spec(corpus_files)
    assert load_documents(spec) == DOCS
    identity = describe(spec)
    assert [f["format"] for f in identity.fields["files"]] == ["text", "json", "parquet"]
    assert all(len(f["sha256"]) == 64 for f in identity.fields["files"])
    _, path = prepare(spec, layout(tmp_path / "results"))
    train, val, meta = open_tokens(path)
    assert meta["train_documents"] + meta["val_documents"] == 120 and 10 < meta["val_documents"] < 40
    _, val_idx = split_documents(120, spec.validation.fraction, spec.shuffle_seed)
    val_bytes = sum(len(DOCS[i].encode()) + 1 for i in val_idx)
    assert len(train) == sum(len(d.encode()) + 1 for d in DOCS) - val_bytes
    assert len(val) == 64 and meta["key"] == identity.key and meta["complete"]


def test_compressed_json_lines_are_streamed(corpus_files, tmp_path):
    import zstandard

    lines = "".join(json.dumps({"body": d}) + "\n" for d in DOCS[40:80]).encode()
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(lines))
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines))
    for name in ("b.jsonl.gz", "b.jsonl.zst"):
        spec = files_spec(tmp_path, names=(name,))
        assert load_documents(spec) == DOCS[40:80] and describe(spec).fields["files"][0]["format"] == "json"


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
    assert describe(files_spec(corpus_files, shuffle_seed=None)).key != base  # another order: other tokens


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
    (corpus_files / "bad.jsonl.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(UserError, match=r"data.files\[0\]: .*bad.jsonl.gz: cannot be read"):
        load_documents(files_spec(corpus_files, names=("bad.jsonl.gz",)))


def test_the_hub_stream_with_a_subset_of_its_files(corpus_files):
    """The hub path's own `load_dataset(id, streaming=True, data_files=...)` call, on a directory
    laid out like a dataset repository (no hub: the suite is offline)."""
    from scalegrid.data.corpus.sources import document_batches

    repo = corpus_files / "repo"
    (repo / "data").mkdir(parents=True)
    for i, start in enumerate((40, 60)):
        lines = "".join(json.dumps({"body": d}) + "\n" for d in DOCS[start : start + 20])
        (repo / "data" / f"part-{i}.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    spec = DataSpec(source="hub", hub=str(repo), text_field="body", unique_tokens=[1])
    assert [d for b in document_batches(spec) for d in b] == DOCS[40:80]
    subset = spec.model_copy(update={"hub_files": ["data/part-1.*"]})
    assert [d for b in document_batches(subset) for d in b] == DOCS[60:80]


def test_a_local_directory_is_not_a_hub_source(corpus_files):
    spec = DataSpec(source="hub", hub=str(corpus_files), text_field="body", unique_tokens=[1])
    with pytest.raises(UserError, match="data.hub: .* is a local directory; use source: files"):
        describe(spec)


def test_split_is_seeded_and_a_documents_side_does_not_depend_on_the_corpus_size():
    train_a, val_a = split_documents(1000, 0.05, 7)
    train_b, val_b = split_documents(1000, 0.05, 7)
    assert np.array_equal(train_a, train_b) and np.array_equal(val_a, val_b)
    assert 25 < len(val_a) < 75 and not set(train_a) & set(val_a) and len(train_a) + len(val_a) == 1000
    assert not np.array_equal(train_a, np.sort(train_a))  # training documents are shuffled
    assert np.array_equal(split_documents(1000, 0.05, None)[0], np.sort(train_a))  # null: the stream's order
    held_small = set(split_documents(500, 0.05, 7)[1])
    assert held_small == {i for i in val_a if i < 500}
    assert np.array_equal(recipe.held_out(0, 1000, 0.05), recipe.held_out(0, 400, 0.05).tolist() + recipe.held_out(400, 600, 0.05).tolist())


def _numbered_corpus(directory, documents=1500):
    """Documents that say which they are: `doc 17 ...` (for the split checks below)."""
    lines = [json.dumps({"text": f"doc {i} " + "lorem ipsum " * (i % 9 + 1)}) + "\n" for i in range(documents)]
    for part in range(3):  # three files: a stream crosses file boundaries
        (directory / f"part-{part}.jsonl").write_text("".join(lines[part * 500 : (part + 1) * 500]))
    return [str(directory / f"part-{part}.jsonl") for part in range(3)]


def _documents_of(tokens: np.ndarray) -> list[str]:
    """The byte-tokenized stream cut at EOS (256) into its documents' first words."""
    text = bytes(np.where(tokens == 256, ord("\n"), tokens).astype(np.uint8)).decode()
    return [" ".join(line.split()[:2]) for line in text.split("\n") if line]


@pytest.mark.parametrize("shuffle_seed", [7, None], ids=["shuffled", "stream-order"])
def test_budgets_are_prefixes_and_validation_is_never_trained_on(tmp_path, shuffle_seed):
    """The paper's selection rule: the 8,192-token budget's tokens are a prefix of the 65,536-token
    budget's, and no validation document appears in either."""
    files = _numbered_corpus(tmp_path)
    spec = lambda budget: DataSpec(  # noqa: E731
        source="files", files=files, unique_tokens=[budget], shuffle_seed=shuffle_seed,
        validation={"fraction": 0.05, "max_tokens": 2048},
    )
    small_id, small_dir = prepare(spec(8192), layout(tmp_path / "small"))
    large_id, large_dir = prepare(spec(65536), layout(tmp_path / "large"))
    small, small_val, small_meta = open_tokens(small_dir)
    large, large_val, _ = open_tokens(large_dir)
    assert small_id.key == large_id.key  # the budget is not part of the corpus
    assert np.array_equal(small[:8192], large[:8192]) and np.array_equal(small_val, large_val)
    validation = set(_documents_of(large_val)[:-1])  # the last one is cut at max_tokens
    assert validation and not validation & set(_documents_of(large[:65536]))
    assert small_meta["complete"] == (shuffle_seed is not None)  # null read only what 8,192 needed
    if shuffle_seed is None:  # the stream's order: documents in file order
        numbers = [int(d.split()[1]) for d in _documents_of(large[:65536])]
        assert numbers == sorted(numbers)


def test_a_larger_budget_grows_a_stream_cache_with_the_same_prefix(tmp_path):
    files = _numbered_corpus(tmp_path)
    results = layout(tmp_path / "results")
    spec = lambda budget: DataSpec(  # noqa: E731
        source="files", files=files, unique_tokens=[budget], shuffle_seed=None, validation={"max_tokens": 1024}
    )
    identity, path = prepare(spec(4096), results)
    first = np.array(open_tokens(path)[0])
    assert len(first) < 60000 and not open_tokens(path)[2]["complete"]  # of ~98,000
    again, path = prepare(spec(40960), results)
    grown, _, meta = open_tokens(path)
    assert again.key == identity.key and len(grown) >= 40960 and np.array_equal(grown[: len(first)], first)
    with pytest.raises(UserError, match=r"data.unique_tokens\[0\]: 1,000,000 is larger than the corpus' [\d,]+ training tokens"):
        prepare(spec(1_000_000), results)
    assert np.array_equal(open_tokens(path)[0], grown)  # the failed attempt left the cache as it was


def test_stream_order_reads_only_what_the_budget_needs(tmp_path):
    files = _numbered_corpus(tmp_path)
    broken = tmp_path / "part-9.jsonl"
    broken.write_text("{ this is not json\n")
    spec = DataSpec(source="files", files=[*files, str(broken)], unique_tokens=[4096], shuffle_seed=None,
                    validation={"max_tokens": 1024})
    _, path = prepare(spec, layout(tmp_path / "results"))  # the broken file comes after what 4,096 tokens need
    assert open_tokens(path)[2]["train_tokens"] >= 4096
    with pytest.raises(UserError, match=r"data.files\[3\]: .*part-9.jsonl: cannot be read"):
        prepare(spec.model_copy(update={"shuffle_seed": 1}), layout(tmp_path / "whole"))  # reading all of it fails


def test_bad_corpora_are_one_line_and_publish_nothing(tmp_path):
    (tmp_path / "empty.jsonl").write_text(json.dumps({"text": "  "}) + "\n")
    (tmp_path / "short.txt").write_text("\n".join(f"line {i}" for i in range(50)) + "\n")
    results = layout(tmp_path / "results")
    with pytest.raises(UserError, match="^data: the files corpus has no non-empty documents"):
        prepare(DataSpec(source="files", files=[str(tmp_path / "empty.jsonl")], unique_tokens=[64]), results)
    with pytest.raises(UserError) as err:
        prepare(DataSpec(source="files", files=[str(tmp_path / "short.txt")], unique_tokens=[64, 100_000]), results)
    assert str(err.value).startswith("data.unique_tokens[1]: 100,000 is larger than the corpus' ") and "\n" not in str(err.value)
    assert not (tmp_path / "results").exists()


def test_cache_round_trip_and_hit_without_tokenizing(tmp_path, monkeypatch):
    spec = DataSpec(source="synthetic", synthetic={"documents": 100, "entities": 20}, unique_tokens=[64])
    identity, path = prepare(spec, layout(tmp_path))
    assert path == tmp_path / "cache" / "tokens" / identity.key
    train, val, meta = open_tokens(path)
    assert train.dtype == np.uint16 and meta["train_tokens"] == len(train) and meta["val_tokens"] == len(val)
    assert meta["vocab_size"] == 257 and meta["eos_id"] == 256 and meta["fields"] == identity.fields

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(token_cache, "build", no_tokenizing)
    assert prepare(spec, layout(tmp_path)) == (identity, path)
    assert np.array_equal(open_tokens(TokenCache(layout(tmp_path)).load(identity.key))[0], train)


def test_publish_is_atomic_and_the_first_writer_wins(tmp_path):
    spec = DataSpec(source="synthetic", synthetic={"documents": 60, "entities": 10}, unique_tokens=[64])
    identity, first = prepare(spec, layout(tmp_path))
    before = (first / "train.bin").stat().st_mtime_ns
    other = tmp_path / "other"
    other.mkdir()
    (other / "train.bin").write_bytes(b"\0\0")  # a second writer with other bytes loses
    (other / "meta.json").write_text("{}")
    assert TokenCache(layout(tmp_path)).publish(identity.key, other) == first
    assert (first / "train.bin").stat().st_mtime_ns == before
    assert sorted(p.name for p in first.parent.iterdir()) == [identity.key]  # no temporary directory left


def test_a_small_corpus_still_holds_one_document_out(tmp_path):
    assert len(split_documents(10, 0.001, 1)[1]) == 1
    (tmp_path / "one.txt").write_text("a single document\n")
    spec = DataSpec(source="files", files=[str(tmp_path / "one.txt")], unique_tokens=[64])
    with pytest.raises(UserError, match="data.validation.fraction: no validation documents out of 1"):
        prepare(spec, layout(tmp_path / "results"))

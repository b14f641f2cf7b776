"""byte, bpe and hf tokenizers: round trips, identity, the BPE in the cache, bad paths."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from scalegrid.errors import UserError
from scalegrid.spec import DataSpec, TokenizerSpec, parse_spec
from scalegrid.storage import layout
from scalegrid.data.identity import describe, open_tokens, prepare
from scalegrid.data.tokenizers import EOS_TEXT, ByteTokenizer, build_tokenizer, load_saved

TEXTS = ["the color of zorvak is teal .", "héllo wörld ✓ 日本", "", "line\nbreak\ttab"]
SYNTHETIC = {"source": "synthetic", "synthetic": {"documents": 200, "entities": 30, "seed": 0}, "unique_tokens": [512]}


def test_byte_round_trip_with_eos_after_each_document():
    tok = ByteTokenizer()
    ids = tok.encode_documents(TEXTS)
    assert tok.vocab_size == 257 and ids.max() == 256 and ids.dtype == np.int64
    pieces = np.split(ids, np.flatnonzero(ids == 256) + 1)[:-1]
    assert [tok.decode(p) for p in pieces] == TEXTS
    assert all(p[-1] == 256 for p in pieces) and len(ids) == sum(len(t.encode()) + 1 for t in TEXTS)


def test_bpe_is_trained_deterministically_and_round_trips():
    docs = [f"the color of entity{i % 37} is value{i % 11} ." for i in range(500)]
    spec = TokenizerSpec(kind="bpe", vocab_size=300)
    a, b = build_tokenizer(spec, docs), build_tokenizer(spec, docs)
    assert a.files() == b.files() and a.vocab_size == 300 and a.eos_id == 0
    ids = a.encode_documents(TEXTS)
    assert ids.max() < 300 and (ids == 0).sum() == len(TEXTS)
    assert a.decode(ids[: len(a.encode_documents(TEXTS[:1])) - 1]) == TEXTS[0]
    assert len(a.encode_documents(docs[:1])) < len(docs[0])  # merges were learned


def test_bpe_vocab_needs_the_byte_alphabet():
    with pytest.raises(UserError, match=r"data.tokenizer.vocab_size: must be between 257 and 1048576 \(got 128\)"):
        parse_spec({"name": "t", "trainer": "lm", "model": "llama-50k", "epochs": 1, "lr": 1e-3,
                    "data": {**SYNTHETIC, "tokenizer": {"kind": "bpe", "vocab_size": 128}}})


def test_bpe_is_saved_into_the_token_cache(tmp_path):
    spec = DataSpec(**SYNTHETIC, tokenizer="bpe")
    identity, path = prepare(spec, layout(tmp_path))
    assert identity.vocab_size == 1024 and (path / "tokenizer" / "tokenizer.json").is_file()
    train, val, meta = open_tokens(path)
    assert meta["tokenizer"] == "bpe" and meta["dtype"] == "uint16" and train.max() < 1024
    saved = load_saved("bpe", path / "tokenizer")  # the cached tokenizer reproduces the cached tokens
    first_document = np.asarray(train[: int(np.argmax(np.asarray(train) == meta["eos_id"])) + 1])
    text = saved.decode(first_document)
    assert " is " in text and EOS_TEXT not in text
    assert np.array_equal(saved.encode_documents([text]), first_document)


def _save_hf_tokenizer(directory, docs):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(docs, trainer=trainer)
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>").save_pretrained(directory)


def test_hf_tokenizer_from_a_local_directory(tmp_path):
    _save_hf_tokenizer(tmp_path / "tok", [f"fact {i} is {i * 7 % 13} ." for i in range(300)])
    spec = DataSpec(**SYNTHETIC, tokenizer=str(tmp_path / "tok"))  # the shorthand: a path means kind hf
    assert spec.tokenizer.kind == "hf"
    identity = describe(spec)
    assert identity.vocab_size == 400 and identity.fields["tokenizer"]["kind"] == "hf"
    _, path = prepare(spec, layout(tmp_path / "two"), processes=2)  # two tokenizer processes ...
    train, val, meta = open_tokens(path)
    assert meta["eos_id"] == 0 and train.max() < 400 and meta["tokenizer"] == "hf"
    _, inline = prepare(spec, layout(tmp_path / "one"), processes=1)  # ... write what one process writes
    assert np.array_equal(open_tokens(inline)[0], train) and np.array_equal(open_tokens(inline)[1], val)
    again = load_saved("hf", path / "tokenizer")
    assert np.array_equal(again.encode_documents(TEXTS), build_tokenizer(spec.tokenizer, []).encode_documents(TEXTS))
    shutil.copytree(tmp_path / "tok", tmp_path / "moved")  # identity is content, not path
    assert describe(DataSpec(**SYNTHETIC, tokenizer=str(tmp_path / "moved"))).key == identity.key
    (tmp_path / "moved" / "extra.txt").write_text("changed")
    assert describe(DataSpec(**SYNTHETIC, tokenizer=str(tmp_path / "moved"))).key != identity.key


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_bad_tokenizer_path_is_a_one_line_user_error(tmp_path, make):
    path = tmp_path / "tok"
    if make == "empty":
        path.mkdir()
    elif make == "file":
        path.write_text("not a tokenizer")
    with pytest.raises(UserError) as err:
        describe(DataSpec(**SYNTHETIC, tokenizer={"kind": "hf", "path": str(path)}))
    message = str(err.value)
    assert message.startswith(f"data.tokenizer.path: {path} is not a loadable tokenizer directory; ")
    assert "\n" not in message

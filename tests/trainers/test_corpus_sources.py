"""Pre-tokenized inputs, file fingerprints, and hub revisions resolved over real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import os
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scalegrid.cli import main
from scalegrid.errors import UserError
from scalegrid.spec import DataSpec
from scalegrid.storage import layout
from scalegrid.data import fingerprint
from scalegrid.data.corpus import hub
from scalegrid.data.identity import describe, open_tokens, prepare

IDS = np.random.default_rng(0).integers(0, 50257, size=20_000)


def tokens_spec(files, **kw) -> DataSpec:
    fields = {"unique_tokens": [8192], "vocab_size": 50257, "validation": {"max_tokens": 1024}, **kw}
    return DataSpec(source="tokens", files=[str(f) for f in files], **fields)


def test_token_arrays_in_every_format_give_the_same_cache(tmp_path):
    IDS.astype(np.uint16).tofile(tmp_path / "train.bin")  # nanoGPT's layout
    np.save(tmp_path / "ids.npy", IDS.astype(np.int64))
    rows = np.split(IDS, [5000, 12000])  # three "documents"
    table = pa.table({"input_ids": [r.tolist() for r in rows], "n": [0, 1, 2]})
    pq.write_table(table, tmp_path / "ids.parquet")
    with pa.OSFile(str(tmp_path / "ids.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)  # the IPC stream format datasets.save_to_disk writes
    caches = {}
    for name in ("train.bin", "ids.npy", "ids.parquet", "ids.arrow"):
        identity, path = prepare(tokens_spec([tmp_path / name]), layout(tmp_path / name.replace(".", "-")))
        train, val, meta = open_tokens(path)
        assert meta["vocab_size"] == identity.vocab_size == 50257 and meta["dtype"] == "uint16"
        caches[name] = (np.array(train), np.array(val), identity.fields["files"][0]["format"])
    for train, val, _ in caches.values():
        assert np.array_equal(val, IDS[:1024]) and np.array_equal(train[:8192], IDS[1024 : 1024 + 8192])
    assert [fmt for *_, fmt in caches.values()] == ["bin", "npy", "parquet", "arrow"]


def test_the_vocabulary_is_part_of_a_token_sources_identity(tmp_path):
    IDS.astype(np.uint16).tofile(tmp_path / "a.bin")
    small = describe(tokens_spec([tmp_path / "a.bin"], vocab_size=60000))
    assert small.key != describe(tokens_spec([tmp_path / "a.bin"])).key  # the cache tells the model its vocabulary


def test_bad_token_files_are_one_line_and_write_nothing(tmp_path):
    (tmp_path / "odd.bin").write_bytes(b"\x01\x00\x02")
    pq.write_table(pa.table({"input_ids": ["a b", "c"]}), tmp_path / "strings.parquet")
    pq.write_table(pa.table({"tokens": [[1, 2]]}), tmp_path / "nocolumn.parquet")
    np.save(tmp_path / "floats.npy", np.ones(10))
    np.array([1, 2, 70000], dtype=np.uint32).tofile(tmp_path / "big.bin")
    cases = {
        "odd.bin": r"odd.bin is 3 bytes, not a whole number of uint16 ids \(2 bytes each",
        "strings.parquet": r"strings.parquet: column 'input_ids' is string, not a list of integer ids",
        "nocolumn.parquet": r"nocolumn.parquet has no 'input_ids' column",
        "floats.npy": r"floats.npy holds a 1-D float64 array; token ids are a 1-D integer array",
    }
    results = layout(tmp_path / "results")
    for name, message in cases.items():
        with pytest.raises(UserError, match=rf"^data.files\[0\]: .*{message}") as err:
            prepare(tokens_spec([tmp_path / name], unique_tokens=[1]), results)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=r"big.bin holds id 70,000, outside data.vocab_size 66,000"):
        prepare(tokens_spec([tmp_path / "big.bin"], vocab_size=66000, unique_tokens=[1], validation={"max_tokens": 64}), results)
    assert not (tmp_path / "results").exists()


def test_plan_finds_a_files_hash_through_its_fingerprint(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i} of the corpus\n" for i in range(2000)))
    spec = DataSpec(source="files", files=[str(corpus)], unique_tokens=[1024])
    results = layout(tmp_path / "results")
    identity, _ = prepare(spec, results)  # records the hash beside the cache
    assert results.is_file(*results.file_hash(fingerprint.fingerprint(corpus)))

    def no_hashing(path):
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(fingerprint, "file_sha256", no_hashing)
    assert describe(spec, results).key == identity.key
    monkeypatch.undo()
    with corpus.open("a") as f:  # an edit: another mtime and size, so another fingerprint
        f.write("one more line\n")
    assert describe(spec, results).key != identity.key


# --- the hub's revision route, served on 127.0.0.1 ---------------------------------------------------

COMMITS = {"main": "a" * 40, "v1": "b" * 40, "b" * 40: "b" * 40}


class _HubAPI(http.server.BaseHTTPRequestHandler):
    """GET /api/datasets/<org>/<name>[/revision/<rev>]: the fields of the hub's answer that matter."""

    def do_GET(self):  # noqa: N802
        parts = self.path.split("?")[0].strip("/").split("/")
        revision = parts[5] if len(parts) > 5 and parts[4] == "revision" else "main"
        repo = "/".join(parts[2:4])
        if repo != "org/corpus" or revision not in COMMITS:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound" if repo != "org/corpus" else "RevisionNotFound")
            self.end_headers()
            return
        body = json.dumps({"id": repo, "sha": COMMITS[revision], "private": False, "tags": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub_endpoint(monkeypatch):
    import huggingface_hub.constants

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the suite runs offline: not here
    yield
    server.shutdown()


def hub_spec(**kw) -> DataSpec:
    return DataSpec(source="hub", hub="org/corpus", unique_tokens=[1024], **kw)


def test_a_hub_revision_is_resolved_to_its_commit(hub_endpoint):
    assert describe(hub_spec()).fields["revision"] == "a" * 40
    assert describe(hub_spec(revision="v1")).fields["revision"] == "b" * 40
    assert describe(hub_spec(revision="v1")).key == describe(hub_spec(revision="b" * 40)).key  # a tag is its commit
    assert describe(hub_spec()).key != describe(hub_spec(revision="v1")).key
    with pytest.raises(UserError, match=r"^data.revision: 'nope' is not a branch, tag or commit of org/corpus"):
        describe(hub_spec(revision="nope"))
    with pytest.raises(UserError, match=r"^data.hub: org/missing is not a dataset the hub serves to you"):
        describe(DataSpec(source="hub", hub="org/missing", unique_tokens=[1]))


def test_offline_a_hub_source_uses_the_recorded_commit_or_is_refused(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    results = layout(tmp_path / "results")
    with pytest.raises(UserError, match=r"^data.revision: cannot ask the hub which commit the default branch of org/corpus is"):
        describe(hub_spec(), results)
    assert describe(hub_spec(revision="c" * 40), results).fields["revision"] == "c" * 40  # a commit needs no hub
    hub.record_revision(hub_spec(), results, "d" * 40)  # what a build records
    assert describe(hub_spec(), results).fields["revision"] == "d" * 40


def test_plan_of_a_missing_revision_is_exit_2_and_writes_nothing(hub_endpoint, write_spec, tmp_path, capsys):
    spec = write_spec({
        "name": "hub", "trainer": "lm", "model": "llama-50k", "epochs": 1, "lr": 1e-3,
        "data": {"source": "hub", "hub": "org/corpus", "revision": "nope", "unique_tokens": 1024},
        "train": {"seq_len": 32},
    })
    for command in ("plan", "prepare"):
        assert main([command, str(spec)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("scalegrid: error: data.revision: 'nope' is not a branch") and "\n" not in err
    assert not os.path.exists(tmp_path / "results")

"""Every bad input is one line naming the field or file, exit code 2, and the results untouched."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time

import pytest

from sweep_fixtures import LINREG, TINY_LM, tree_digest
from scalegrid import store
from scalegrid.cli import main
from scalegrid.storage import layout


@pytest.fixture
def results(tmp_path):
    """A results directory that already holds one finished trial and a token cache file."""
    root = tmp_path / "results"
    row = {c: None for c in store.RUN_COLUMNS} | {
        "trial_id": "0123456789abcdef",
        "sweep": "earlier",
        "stage": "train",
        "status": "COMPLETED",
        "val_loss": 1.5,
        "finished_at": dt.datetime.now(dt.timezone.utc),
    }
    store.write_run(layout(root), store.RunRow(**row))
    (root / "cache").mkdir()
    (root / "cache" / "keep.txt").write_text("precious")
    return root


def assert_one_line_error(capsys, code, *needles):
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0, err
    assert err.startswith("scalegrid: error: "), err
    for needle in needles:
        assert needle in err, err


def run_cli(*args):
    return main(["run", *map(str, args)])


BAD_SPECS = [
    ("unknown key", {"epoch": [1]}, "epoch: unknown key (did you mean 'epochs'?)"),
    ("wrong type", {"lr": "fast"}, "lr[0]: Input should be a valid number"),
    ("empty axis", {"weight_decay": []}, "weight_decay: empty axis"),
    ("epochs < 1", {"epochs": [0, 1]}, "epochs[0]: must be between 1 and 100000 (got 0)"),
    ("lr <= 0", {"lr": [0.0]}, "lr[0]: must be > 0 and <= 1e+06 (got 0.0)"),
    ("negative weight decay", {"weight_decay": -1e-2}, "weight_decay[0]: must be between 0 and 100 (got -0.01)"),
    ("unknown preset", {"model": "llama-51k"}, "unknown model preset 'llama-51k'"),
    ("unknown trainer", {"trainer": "gpt"}, "unknown trainer 'gpt'"),
    ("bad include", {"include": [{"epochs": 0}]}, "include[0].epochs[0]: must be between 1 and 100000 (got 0)"),
    ("tokens not whole sequences", {"data": {**TINY_LM["data"], "unique_tokens": 4100}}, "data.unique_tokens[0]: 4100 is not a whole number of train.seq_len=32 sequences; use 4096 or 4128"),
    ("missing data file", {"data": {"source": "files", "files": ["nope/corpus.txt"], "unique_tokens": 4096}}, "data.files[0]"),
    ("unreadable tokenizer", {"data": {**TINY_LM["data"], "tokenizer": "no/such/tokenizer"}}, "data.tokenizer.path"),
    ("unique_tokens > corpus", {"data": {**TINY_LM["data"], "unique_tokens": 2**24}}, "is larger than the corpus"),
    ("gaussian spectrum scale", {**LINREG, "data": {"source": "gaussian", "unique_tokens": 128, "gaussian": {"spectrum_scale": "area"}}},
     "data.gaussian.spectrum_scale: Input should be 'top' or 'trace' (got 'area')"),
    ("gaussian offset < 0", {**LINREG, "data": {"source": "gaussian", "unique_tokens": 128, "gaussian": {"spectrum_offset": -8}}},
     "data.gaussian.spectrum_offset: must be between 0 and 1e+06 (got -8)"),
    ("gaussian key misspelt", {**LINREG, "data": {"source": "gaussian", "unique_tokens": 128, "gaussian": {"data_per_sed": True}}},
     "data.gaussian.data_per_sed: unknown key (did you mean 'data_per_seed'?)"),
    ("diagnostics on workers", {"train": {**TINY_LM["train"], "diagnostics": True}, "resources": {"workers": 2, "cpus_per_worker": 1}},
     "train.diagnostics needs a one-process trial; use resources.workers: 1 or turn it off"),
    ("memorisation on workers", {"train": {**TINY_LM["train"], "memorisation_samples": 4}, "resources": {"workers": 2, "cpus_per_worker": 1}},
     "train.memorisation_samples needs a one-process trial"),
    ("micro-batch > batch", {"train": {**TINY_LM["train"], "micro_batch_size": 9}}, "micro_batch_size 9 is larger than batch_size 8"),
    ("micro-batch not a count", {"train": {**TINY_LM["train"], "micro_batch_size": "half"}}, "train.micro_batch_size: must be an integer between 1 and 1048576 or auto (got 'half')"),
    ("loss chunk < 1", {"train": {**TINY_LM["train"], "loss_chunk_tokens": 0}}, "train.loss_chunk_tokens"),
    ("gpu memory <= 0", {"resources": {"gpus": 1, "gpu_memory_gb": 0}}, "resources.gpu_memory_gb"),
    ("does not fit the GPU", {"model": "llama-1.4b", "resources": {"gpus": 1, "gpu_memory_gb": 8}}, ("model llama-1.4b", "shard it over several: resources.workers")),
    ("micro-batch too large for the GPU", {"model": "llama-300m", "train": {**TINY_LM["train"], "seq_len": 1024, "micro_batch_size": 8},
     "data": {**TINY_LM["data"], "unique_tokens": 8192}, "resources": {"gpus": 1, "gpu_memory_gb": 6}},
     ("train.micro_batch_size 8 needs", "use 4 or auto")),
    ("searched axis also a grid list", {"epochs": [1, 2], "search": {"axes": {"epochs": [1, 2, 4]}}},
     "epochs: searched by search.axes.epochs; remove `epochs:` here"),
    ("searched train field also a list", {"train": {**TINY_LM["train"], "batch_size": [4, 8]}, "search": {"axes": {"batch_size": [4, 8, 16]}}},
     "train.batch_size: a grid list and a ladder in search.axes.batch_size; keep one of them"),
    ("start not on its ladder", {"search": {"axes": {"weight_decay": [0.1, 0.2, 0.4]}, "start": {"weight_decay": 0.3}}},
     "search.start.weight_decay: 0.3 is not on its ladder [0.1, 0.2, 0.4]; start at one of its values"),
    ("ladder not monotone", {"search": {"axes": {"weight_decay": [0.1, 0.4, 0.2]}}},
     "search.axes.weight_decay: not monotone at [2] (0.2 after 0.4)"),
    ("unknown search axis", {"search": {"axes": {"weight_decay": [0.1, 0.2], "weight_decy": [1, 2]}}},
     "search.axes.weight_decy: not a searchable axis (did you mean 'weight_decay'?)"),
    ("cell axis searched", {"search": {"axes": {"model": ["llama-50k", "llama-200k"]}}}, "search.axes.model: not a searchable axis (it makes the cells"),
    ("ladder of one value", {"search": {"axes": {"weight_decay": [0.1]}}}, "search.axes.weight_decay: a ladder is a list of at least 2 values"),
    ("bad ladder value", {"search": {"axes": {"weight_decay": [0.1, -0.2]}}}, "search.axes.weight_decay[1]: must be between 0 and 100 (got -0.2)"),
    ("start of an axis not searched", {"search": {"axes": {"weight_decay": [0.1, 0.2]}, "start": {"lr": 0.1}}},
     "search.start.lr: not a searched axis"),
    ("bad data.order", {"data": {**TINY_LM["data"], "order": ["shuffled", "random"]}}, "data.order[1]: Input should be 'shuffled' or 'sequential'"),
    ("coupled axis not searched", {"search": {"axes": {"weight_decay": [0.1, 0.2], "batch_size": [4, 8]}, "coupled": [["lr", "batch_size"]]}},
     "search.coupled[0]: 'lr' is not searched; couple two of weight_decay, batch_size"),
    ("coupled not a pair", {"search": {"axes": {"weight_decay": [0.1, 0.2], "batch_size": [4, 8]}, "coupled": [["batch_size", "batch_size"]]}},
     "search.coupled[0]: ['batch_size', 'batch_size'] is not a pair; name two different searched axes"),
    ("unknown neighbourhood", {"search": {"axes": {"weight_decay": [0.1, 0.2]}, "neighbourhood": "wide"}},
     "search.neighbourhood: Input should be 'coupled' or 'full' (got 'wide')"),
    ("certify radius 3", {"search": {"axes": {"weight_decay": [0.1, 0.2]}, "certify_radius": 3}},
     "search.certify_radius: must be between 1 and 2 (got 3)"),
    ("confirm seeds < 0", {"search": {"axes": {"weight_decay": [0.1, 0.2]}, "confirm_seeds": -1}},
     "search.confirm_seeds: must be between 0 and 100 (got -1)"),
]


@pytest.mark.parametrize("case, change, needle", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec(case, change, needle, write_spec, results, capsys):
    before = tree_digest(results)
    spec = write_spec({**TINY_LM, **change, "results": str(results)})
    assert_one_line_error(capsys, run_cli(spec), *([needle] if isinstance(needle, str) else needle))
    assert tree_digest(results) == before


def test_missing_spec_and_yaml_syntax(tmp_path, results, capsys):
    before = tree_digest(results)
    assert_one_line_error(capsys, run_cli(tmp_path / "missing.yaml", "--results", results), "spec file not found")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nepochs: [1, 2\n")
    assert_one_line_error(capsys, run_cli(broken, "--results", results), "YAML syntax error at line")
    assert tree_digest(results) == before


def test_results_path_is_a_file(tmp_path, write_spec, capsys):
    target = tmp_path / "results.txt"
    target.write_text("not a directory")
    assert_one_line_error(capsys, run_cli(write_spec(LINREG), "--results", target), "is a file, not a directory")
    assert target.read_text() == "not a directory"


def test_results_path_not_writable(write_spec, capsys):
    # /proc refuses new entries even for root, where chmod-based tests would pass silently.
    assert_one_line_error(capsys, run_cli(write_spec(LINREG), "--results", "/proc/scalegrid-results"), "is not writable")


def test_unreachable_address_fails_fast(write_spec, results, capsys):
    before = tree_digest(results)
    start = time.monotonic()
    code = run_cli(write_spec({**LINREG, "results": str(results)}), "--address", "127.0.0.1:1")
    assert time.monotonic() - start < 30
    assert_one_line_error(capsys, code, "--address 127.0.0.1:1: no Ray cluster answers there")
    assert tree_digest(results) == before


@pytest.mark.parametrize(
    "flags, needle",
    [(["--max-concurrent", "0"], "--max-concurrent: expected a whole number >= 1"), (["--address", "http://127.0.0.1:8265"], "dashboard")],
)
def test_bad_flags(flags, needle, write_spec, results, capsys):
    before = tree_digest(results)
    code = run_cli(write_spec({**LINREG, "results": str(results)}), *flags) if "--address" in flags else None
    if code is None:
        with pytest.raises(SystemExit) as exit_info:
            run_cli(write_spec({**LINREG, "results": str(results)}), *flags)
        code = exit_info.value.code
    assert_one_line_error(capsys, code, needle)
    assert tree_digest(results) == before


def test_status_of_a_missing_directory(tmp_path, capsys):
    assert_one_line_error(capsys, main(["status", str(tmp_path / "none")]), "not a results directory")


def test_corrupt_parquet_is_reported_skipped_and_kept(results, capsys):
    corrupt = results / "runs" / "fedcba9876543210.parquet"
    corrupt.write_bytes(b"PAR1 truncated")
    frame = store.load_runs(results)
    assert list(frame["trial_id"]) == ["0123456789abcdef"]
    assert "fedcba9876543210.parquet is unreadable" in capsys.readouterr().err
    assert corrupt.read_bytes() == b"PAR1 truncated"
    assert main(["status", str(results)]) == 0
    assert "1 unreadable files" in capsys.readouterr().out
    # A new result for that trial moves the corrupt file aside instead of overwriting it.
    row = json.loads(json.dumps({c: None for c in store.RUN_COLUMNS})) | {"trial_id": "fedcba9876543210", "status": "COMPLETED"}
    store.write_run(layout(results), store.RunRow(**row))
    kept = [p for p in (results / "runs").iterdir() if ".corrupt-" in p.name]
    assert len(kept) == 1 and kept[0].read_bytes() == b"PAR1 truncated"
    assert os.path.exists(corrupt) and store.load_runs(results)["trial_id"].tolist() == ["0123456789abcdef", "fedcba9876543210"]


# --- Issue 18: every class of hostile input, one test each (the property test covers the spec) --


HOSTILE_SPECS = [
    ("bool is not a number", {"epochs": True}, "epochs[0]: Input should be a valid integer (got True)"),
    ("epochs past the range", {"epochs": 10**30}, "epochs[0]: must be between 1 and 100000"),
    ("seed past int64", {"seed": 2**64}, "seed[0]: must be between 0 and 4294967295"),
    ("shape type checked up front", {"model": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 96, "tie_embeddings": "maybe"}},
     "model[0].tie_embeddings: Input should be a valid boolean (got 'maybe')"),
    ("long name", {"name": "x" * 300}, "name: String should have at most 100 characters"),
    ("exclude matching nothing", {"exclude": [{"epochs": 7}]}, "exclude[0]: {'epochs': 7} matches no grid point"),
]


@pytest.mark.parametrize("case, change, needle", HOSTILE_SPECS, ids=[c[0] for c in HOSTILE_SPECS])
def test_hostile_spec(case, change, needle, write_spec, results, capsys):
    before = tree_digest(results)
    assert_one_line_error(capsys, run_cli(write_spec({**TINY_LM, **change, "results": str(results)})), needle)
    assert tree_digest(results) == before


@pytest.mark.parametrize(
    "content, needle",
    [(b"", "holds no documents"), (b'{"text": "ok"}\n{"text": ', "cannot be read as json (ArrowInvalid"),
     (b'{"body": "ok"}\n', "'text' is not a field of"), (b'{"text": "  "}\n{"text": ""}\n', "none of its 2 documents has text")],
    ids=["empty", "truncated", "no text field", "blank"],
)
def test_bad_data_file_is_one_line_before_tokenizing(content, needle, tmp_path, write_spec, results, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(content)
    before = tree_digest(results)
    spec = write_spec({**TINY_LM, "data": {"source": "files", "files": [str(corpus)], "unique_tokens": 64}, "results": str(results)})
    assert_one_line_error(capsys, run_cli(spec), needle)
    assert tree_digest(results) == before
    assert_one_line_error(capsys, main(["plan", str(spec)]), needle)  # plan checks the files too


def test_dangling_results_symlink_is_refused(tmp_path, write_spec, capsys):
    link = tmp_path / "results-link"
    link.symlink_to(tmp_path / "nowhere")
    assert_one_line_error(capsys, run_cli(write_spec(LINREG), "--results", link), "is a symlink to", "which does not exist")
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


def test_results_path_too_long_is_refused(tmp_path, write_spec, capsys):
    assert_one_line_error(capsys, run_cli(write_spec(LINREG), "--results", tmp_path / ("r" * 300)), "over this filesystem's 255")
    deep = tmp_path.joinpath(*["d" * 200] * 20)
    assert_one_line_error(capsys, run_cli(write_spec(LINREG), "--results", deep), "too long a path")
    assert list(tmp_path.iterdir()) == [tmp_path / "spec.yaml"]


def test_an_address_where_something_else_listens_is_refused_within_30_s(write_spec, results, capsys):
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # the server's own log is not the command's stderr
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        before = tree_digest(results)
        start = time.monotonic()
        code = run_cli(write_spec({**LINREG, "results": str(results)}), "--address", f"127.0.0.1:{server.server_port}")
        assert time.monotonic() - start < 30
        assert_one_line_error(capsys, code, "no Ray cluster answers there (something listens, but not Ray")
        assert tree_digest(results) == before
    finally:
        server.shutdown()


def test_a_trial_no_node_can_hold_is_refused_up_front(write_spec, results):
    """On the embedded Ray: its one node is this machine, known before Ray starts (a process of its
    own: in this one the session's Ray may already run, and `run` would join it)."""
    before = tree_digest(results)
    spec = write_spec({**LINREG, "resources": {"cpus": 1000}, "results": str(results)})
    proc = subprocess.run([sys.executable, "-m", "scalegrid.cli", "run", str(spec)], capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and err.count("\n") == 0 and err.startswith("scalegrid: error: "), err
    assert "resources: a trial needs 1000 CPU, more than this machine" in err, err
    assert tree_digest(results) == before


def test_a_trial_no_cluster_node_can_hold_is_refused_up_front(ray_local, write_spec, results, capsys):
    """On a cluster (the session's Ray, joined by address): every live node is asked."""
    before = tree_digest(results)
    address = ray_local.get_runtime_context().gcs_address
    code = run_cli(write_spec({**LINREG, "resources": {"cpus": 1, "gpus": 2}, "results": str(results)}), "--address", address)
    assert_one_line_error(capsys, code, "resources: a trial needs 1 CPU, 2 GPU, more than any node of this cluster")
    # Workers spread over nodes, but these have 2 CPUs in all
    code = run_cli(write_spec({**LINREG, "resources": {"workers": 3, "cpus_per_worker": 1}, "results": str(results)}), "--address", address)
    assert_one_line_error(capsys, code, "a trial needs 3 workers x (1 CPU) and 0.01 CPU for its driver, more than the nodes of this cluster")
    assert tree_digest(results) == before

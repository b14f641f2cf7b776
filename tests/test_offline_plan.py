"""`plan` without the hub: a gated or unreachable tokenizer or dataset is one line, after one
question to the hub (served on 127.0.0.1, no retries), saying how to plan without it; a corpus
too small for the largest budget is refused at `plan` with both sizes; and the paper's search plans
offline to the same trial ids as the paper's grid."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from sweep_fixtures import TINY_LM, tree_digest
from test_bad_input import assert_one_line_error
from scalegrid.cli import main
from scalegrid.data.tokenizers import ByteTokenizer, hf_files
from scalegrid.orchestrator.planning.sweep_plan import make_plan
from scalegrid.spec import load_sweep

ROOT = Path(__file__).parents[1]
LM = {key: value for key, value in TINY_LM.items() if key != "data"}


class _Gated(http.server.BaseHTTPRequestHandler):
    """Every repository is gated: what the hub answers a user who has not accepted its licence."""

    def do_GET(self):  # noqa: N802
        self.server.asked.append(self.path)
        self.send_response(401)
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", "Access to this repository is restricted.")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def online(monkeypatch):
    """The hub client as if online (the suite runs with HF_HUB_OFFLINE=1), at an endpoint a test sets."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return lambda port: monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")


@pytest.fixture
def gated_hub(online):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gated)
    server.asked = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    online(server.server_port)
    yield server
    server.shutdown()


def hub_tokenizer(repo: str) -> dict:
    return {**LM, "data": {"source": "synthetic", "tokenizer": {"kind": "hf", "path": repo}, "unique_tokens": 4096}}


def test_a_gated_tokenizer_or_dataset_is_one_line_saying_how_to_plan_without_it(gated_hub, write_spec, capsys):
    assert_one_line_error(capsys, main(["plan", str(write_spec(hub_tokenizer("org/gated-tokenizer")))]),
                          "data.tokenizer.path: org/gated-tokenizer is a gated repository you have no access to",
                          "--set data.tokenizer.path=DIR", "HF_HUB_OFFLINE=1")
    assert gated_hub.asked == ["/api/models/org/gated-tokenizer/auth-check"]  # one question, no retries
    dataset = {**LM, "data": {"source": "hub", "hub": "org/gated-corpus", "unique_tokens": 4096}}
    assert_one_line_error(capsys, main(["plan", str(write_spec(dataset))]),
                          "data.hub: org/gated-corpus is a gated dataset you have no access to",
                          "set data.revision to its full commit SHA", "source: files")
    assert len(gated_hub.asked) == 2


def test_an_unreachable_hub_is_asked_once_then_the_cache_is_tried(online, write_spec, capsys):
    listener = socket.create_server(("127.0.0.1", 0))  # answers every connection by closing it
    accepted = []

    def refuse():
        while True:
            connection, _ = listener.accept()
            accepted.append(1)
            connection.close()

    threading.Thread(target=refuse, daemon=True).start()
    online(listener.getsockname()[1])
    assert_one_line_error(capsys, main(["plan", str(write_spec(hub_tokenizer("org/never-cached")))]),
                          "data.tokenizer.path: org/never-cached: the hub cannot be asked (no answer from",
                          "the tokenizer is not in the Hugging Face cache", "--set data.tokenizer.path=DIR")
    assert len(accepted) == 1  # the hub client's own retries took 49 s here before giving up


def test_offline_a_tokenizer_not_cached_says_so(write_spec, capsys):
    assert_one_line_error(capsys, main(["plan", str(write_spec(hub_tokenizer("org/never-cached")))]),
                          "the hub cannot be asked (HF_HUB_OFFLINE is set) and the tokenizer is not in the Hugging Face cache")


@pytest.mark.parametrize("source, needle", [
    ("files", "data.unique_tokens: the largest budget, 8,192 tokens, is more than the corpus holds: its 2 file(s) of"),
    ("tokens", "make at most 900 training ids; add data.files or lower the budget"),
])
def test_a_corpus_smaller_than_the_largest_budget_is_refused_at_plan(source, needle, write_spec, tmp_path, capsys):
    if source == "files":
        for name in ("a.jsonl", "b.txt"):
            (tmp_path / name).write_text(json.dumps({"text": "A small corpus. " * 30}) + "\n" if name.endswith("jsonl") else "one line\n")
        data = {"source": "files", "files": [str(tmp_path / "a.jsonl"), str(tmp_path / "b.txt")], "unique_tokens": [4096, 8192]}
    else:
        np.arange(1000, dtype=np.uint16).tofile(tmp_path / "ids.bin")
        data = {"source": "tokens", "files": [str(tmp_path / "ids.bin")], "vocab_size": 1000,
                "validation": {"max_tokens": 100}, "unique_tokens": 992}
    spec = write_spec({**LM, "data": data})
    before = tree_digest(tmp_path)
    assert_one_line_error(capsys, main(["plan", str(spec)]), needle)
    assert tree_digest(tmp_path) == before
    if source == "tokens":  # 900 ids after the validation's 100 hold a budget of 896
        assert main(["plan", str(spec), "--set", "data.unique_tokens=896"]) == 0


def test_a_built_cache_shorter_than_a_budget_is_refused_at_plan(write_spec, capsys):
    spec = write_spec(TINY_LM)
    assert main(["prepare", str(spec)]) == 0
    held = int(re.search(r"([\d,]+) training tokens", capsys.readouterr().out).group(1).replace(",", ""))
    assert_one_line_error(capsys, main(["plan", str(spec), "--set", "data.unique_tokens=[4096, 1048576]"]),
                          f"data.unique_tokens[1]: 1,048,576 is larger than the corpus' {held:,} training tokens")


def test_the_paper_search_reuses_every_trial_of_the_paper_grid(tmp_path):
    """sweeps/paper-200m-search.yaml and sweeps/paper-200m.yaml agree on every identity field:
    planned offline (a local tokenizer of the byte vocabulary for the gated one, the commit given
    in full), every grid point is the search's trial at those values, and the search's first walk
    reuses the grid's trials where it steps on the grid."""
    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    for name, content in hf_files(ByteTokenizer()).items():
        (tokenizer / name).write_bytes(content)
    offline = [f"data.tokenizer.path={tokenizer}", "data.revision=" + "a" * 40, f"results={tmp_path / 'results'}"]
    grid = make_plan(load_sweep(ROOT / "sweeps" / "paper-200m.yaml", offline))
    search = make_plan(load_sweep(ROOT / "sweeps" / "paper-200m-search.yaml", offline))
    assert len(grid.trials) == 4 * 5 * 2 * 4
    cells = {s.cell.template.model_label: s.cell for s in search.searches.values()}
    for trial in grid.trials:
        c = trial.config
        at = {"epochs": c.epochs, "lr": c.lr, "weight_decay": c.weight_decay}
        assert cells[trial.model_label].trial_at(at).trial_id == trial.trial_id, at
    # the 150M cell's start, its six neighbours along the axes and four along the lr x epochs diagonals
    walked = {t.trial_id: t.config for t in search.trials}
    on_grid = {tid for tid, c in walked.items()
               if c.epochs in (1, 2, 4, 8, 16) and c.lr in (1e-3, 3e-3) and c.weight_decay in (0.1, 0.8, 1.6, 3.2)}
    assert len(walked) == 11 and len(on_grid) == 5 and on_grid <= {t.trial_id for t in grid.trials}

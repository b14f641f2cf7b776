"""Small specs and helpers shared by the orchestration tests."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root with the hash of its bytes: to prove a failed command wrote nothing."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


LINREG = {
    "name": "lin",
    "trainer": "linreg",
    "model": {"dims": 64},
    "data": {"source": "gaussian", "unique_tokens": [128, 256]},
    "epochs": [1, 2],
    "lr": 0.05,
    "train": {"batch_size": 8},
    "resources": {"cpus": 1},
}

TINY_LM = {
    "name": "tiny",
    "trainer": "lm",
    "model": "llama-50k",
    "data": {
        "source": "synthetic",
        "synthetic": {"documents": 300, "entities": 40, "seed": 1},
        "unique_tokens": 4096,
        "validation": {"fraction": 0.1, "max_tokens": 1024},
    },
    "epochs": 1,
    "lr": 3e-3,
    "train": {"batch_size": 8, "seq_len": 32, "eval_every": 8},
}

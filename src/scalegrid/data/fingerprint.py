"""A local file's content identity without re-reading gigabytes on every `plan`.

A corpus file is identified by the SHA-256 of its bytes (so a moved copy is the same corpus).
Hashing a GB corpus takes seconds, and `plan` would pay it every time; so the hash is found
through a cheap fingerprint instead: size, mtime and the SHA-256 of 16 sampled 64 KiB blocks
(first, last and evenly spaced between). When a token cache is built, each file's full hash is
recorded beside it under `RESULTS/cache/files/<fingerprint>.json`; a later `plan` reads the
record and hashes nothing. An edit changes the mtime (and usually the size or a sample), hence
the fingerprint, and the file is hashed in full again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from scalegrid.storage import ResultsLayout

SAMPLES = 16
SAMPLE_BYTES = 1 << 16


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(path: str | Path) -> str:
    """size + mtime + sampled blocks, hashed: cheap whatever the file's size."""
    stat = os.stat(path)
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    last = max(stat.st_size - SAMPLE_BYTES, 0)
    with open(path, "rb") as f:
        for offset in sorted({last * i // (SAMPLES - 1) for i in range(SAMPLES)}):
            f.seek(offset)
            digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()[:32]


def content_sha256(path: str, results: ResultsLayout | None) -> str:
    """The file's SHA-256: recorded under its fingerprint in `results`, or computed (not recorded:
    `plan` writes nothing; `record` does once the token cache is built)."""
    if results is not None:
        parts = results.file_hash(fingerprint(path))
        if results.is_file(*parts):
            return json.loads(results.read_bytes(*parts))["sha256"]
    return file_sha256(path)


def record(results: ResultsLayout, path: str, sha256: str) -> None:
    parts = results.file_hash(fingerprint(path))
    if not results.is_file(*parts):
        entry = {"sha256": sha256, "size": os.path.getsize(path), "path": os.path.abspath(path)}  # path: for people only
        results.write_bytes(parts, (json.dumps(entry, sort_keys=True) + "\n").encode())

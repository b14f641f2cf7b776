"""Batches of documents -> token ids, across tokenizer processes, in the order they came.

Each process holds its own copy of the tokenizer (pickled once into it) and encodes whole
batches with the fast tokenizer's batch API, one Rust thread per process (parallelism comes
from the processes, so N processes use N cores and no more). At most two batches per process
are in flight, so memory stays flat however long the stream. `byte` is encoded in this process:
its encoding is a copy, cheaper than sending the text to another process.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from scalegrid.data.tokenizers import Tokenizer

_IN_FLIGHT_PER_PROCESS = 2
_worker_tokenizer: Tokenizer | None = None
_worker_dtype: type = np.uint32


def encoded_batches(
    tokenizer: Tokenizer, batches: Iterable[list[str]], *, processes: int, dtype: type
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(token ids as `dtype`, each document's token count with its EOS) per batch, in order."""
    if processes <= 1 or tokenizer.kind == "byte":
        for batch in batches:
            ids, lengths = tokenizer.encode_with_lengths(batch)
            yield ids.astype(dtype), lengths
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold Ray's or the tokenizers library's threads
    pool = ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start, initargs=(tokenizer, dtype)
    )
    try:
        in_flight: deque = deque()
        for batch in batches:
            in_flight.append(pool.submit(_encode, batch))
            if len(in_flight) >= _IN_FLIGHT_PER_PROCESS * processes:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _start(tokenizer: Tokenizer, dtype: type) -> None:
    global _worker_tokenizer, _worker_dtype
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per process: the processes are the parallelism
    _worker_tokenizer, _worker_dtype = tokenizer, dtype


def _encode(documents: list[str]) -> tuple[np.ndarray, np.ndarray]:
    ids, lengths = _worker_tokenizer.encode_with_lengths(documents)
    return ids.astype(_worker_dtype), lengths

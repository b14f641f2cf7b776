"""A checkpoint's shards through torch.distributed.checkpoint (DCP), on the results store, in the
background, reading back nothing executable (`checkpoint.py` says what a checkpoint directory holds).

DCP's own `FileSystemWriter` / `FileSystemReader` work on local paths; here their file operations
go through the results root's pyarrow filesystem (`ResultsLayout.fs`: a local disk, S3, GCS), so
every process streams its own shards to where the rows are (on an object store every file is one
upload, the index last). DCP reads back two kinds of pickle: its `.metadata` index (with plain
`pickle`) and every non-tensor value (`torch.load(weights_only=False)`: the optimizer's
hyperparameters). Both are replaced here: the index goes through the allow-list of
`safe_load.DCP_METADATA`, values through torch's weights-only unpickler (`SafeLoadPlanner`).

    Checkpointer(directory, keep=2, group=g)   saves one directory's checkpoints, one at a time
      .save(step, shards, trainer)             stage this process's shards, write them in a thread
      .wait()                                  the write done, the oldest beyond `keep` removed
    load(directory, step, shards, group=g)     fill `shards` in place (any world size); the trainer state

`shards` is what `torch.distributed.checkpoint.state_dict.get_state_dict` gives: under FSDP2 each
process's DTensor shards, otherwise whole tensors (DCP writes each replicated tensor once, spread
over the processes). Every process of the trial calls `save`, `wait` and `load` (collectives, on
`group`: a process group of their own, so a background write never interleaves with training's).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import uuid
import warnings
from concurrent.futures import Future
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemBase
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

from scalegrid.payloads import StateDict
from scalegrid.storage.layout import CheckpointDir, Parts, ResultsLayout
from scalegrid.storage.space import is_storage_failure, storage_error
from scalegrid.trainers import checkpoint
from scalegrid.trainers.safe_load import DCP_METADATA, load_torch, loads

# One process saves and loads with `no_dist=True` on purpose; DCP still warns about it each time.
warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")


class Checkpointer:
    """The checkpoints of one directory, saved one at a time in the background: `save` stages this
    process's shards (a copy in CPU memory, since training goes on changing the parameters) and
    returns while a thread writes them; the next `save`, and `wait` (at a trial's end, or when it
    stops), wait for that write and then remove the checkpoints beyond `keep`."""

    def __init__(self, directory: CheckpointDir, *, keep: int, group: Any = None):
        self.directory, self.keep, self.group = directory, keep, group
        self.is_main = group is None or torch.distributed.get_rank() == 0
        self.pending: Future | None = None

    def save(self, step: int, shards: StateDict, trainer: StateDict) -> None:
        self.wait()
        results, parts = self.directory.results, self.directory.step_parts(step)
        if self.is_main:  # before DCP writes the index (last, after a collective that waits for this process)
            results.write_bytes((*parts, checkpoint.TRAINER), checkpoint.trainer_bytes(step, trainer))
        with _one_error(results):
            self.pending = dcp.async_save(shards, storage_writer=_Writer(results, parts), process_group=self.group, no_dist=self.group is None)

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, kind, err, trace) -> None:
        """The last write waited for; when the trial is already failing, its own error is the one raised."""
        if err is None:
            self.wait()
            return
        with contextlib.suppress(Exception):
            self.wait()

    def wait(self) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        with _one_error(self.directory.results):
            pending.result()
        if self.is_main:
            checkpoint.prune(self.directory, self.keep)


def load(directory: CheckpointDir, step: int, shards: StateDict, *, group: Any = None) -> StateDict:
    """Fill `shards` (this process's, at whatever world size) from the checkpoint at `step`;
    returns the loop's saved state. Raises when it is unreadable (a refused pickle included)."""
    results, parts = directory.results, directory.step_parts(step)
    trainer = checkpoint.trainer_state(directory, step)
    with _one_error(results):
        dcp.load(shards, storage_reader=_Reader(results, parts), planner=SafeLoadPlanner(), process_group=group, no_dist=group is None)
    return trainer


@contextlib.contextmanager
def _one_error(results: ResultsLayout):
    """DCP's `CheckpointException` (a BaseException holding every rank's error) as the first
    rank's error itself, or the one line of storage that stopped taking writes."""
    try:
        yield
    except CheckpointException as err:
        failures = [failure for failure, _ in err.failures.values()]
        stopped = [failure for failure in failures if is_storage_failure(failure)]
        if stopped:
            raise storage_error(results.shown(), errno_=getattr(stopped[0], "errno", None) or errno.ENOSPC) from None
        raise (failures[0] if failures else RuntimeError(str(err))) from None


class ResultsFiles(FileSystemBase):
    """DCP's file operations on a results root's pyarrow filesystem (paths are that filesystem's).

    A file is written as every file of the store is: on a filesystem under a hidden temporary name,
    renamed into place when complete (so a killed writer leaves no half shard under a real name, and
    two drivers writing one trunk state replace its files whole); on an object store in one upload."""

    def __init__(self, results: ResultsLayout):
        self.results, self.fs = results, results.fs

    @contextlib.contextmanager
    def create_stream(self, path: str | os.PathLike, mode: str):
        path = str(path)
        if "w" not in mode and self.results.object_store:
            # One GET of the whole file, read from memory: torch's zip reader seeks to a file's last
            # byte, which some stores answer with HTTP 416 on a ranged read (fake-gcs-server does).
            with self.fs.open_input_stream(path) as stream:
                yield io.BytesIO(stream.read())
            return
        if "w" not in mode:
            with self.fs.open_input_file(path) as stream:
                yield stream
            return
        if self.results.object_store:
            with self.fs.open_output_stream(path) as stream:
                yield stream
            return
        parent, name = path.rsplit("/", 1)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with self.fs.open_output_stream(tmp) as stream:
                yield stream
            self.fs.move(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)

    def concat_path(self, path: str | os.PathLike, suffix: str) -> str:
        return f"{str(path).rstrip('/')}/{suffix}"

    def rename(self, path: str | os.PathLike, new_path: str | os.PathLike) -> None:
        self.fs.move(str(path), str(new_path))

    def init_path(self, path: str | os.PathLike) -> str:
        return str(path)

    def mkdir(self, path: str | os.PathLike) -> None:
        self.fs.create_dir(str(path), recursive=True)  # a no-op on object stores

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike) -> bool:
        return True

    def exists(self, path: str | os.PathLike) -> bool:
        from pyarrow.fs import FileType

        return self.fs.get_file_info(str(path)).type != FileType.NotFound

    def rm_file(self, path: str | os.PathLike) -> None:
        self.fs.delete_file(str(path))


class _Writer(FileSystemWriter):
    def __init__(self, results: ResultsLayout, parts: Parts):
        # No fsync: pyarrow's streams have no file descriptor (DCP would `os.sync()` the whole
        # machine instead); like every other write of the store, a file is complete once closed.
        super().__init__(results.path(*parts), sync_files=False, overwrite=True)
        self.fs, self.path = ResultsFiles(results), results.path(*parts)


class _Reader(FileSystemReader):
    def __init__(self, results: ResultsLayout, parts: Parts):
        super().__init__(results.path(*parts))
        self.fs, self.path = ResultsFiles(results), results.path(*parts)

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        with self.fs.create_stream(self.fs.concat_path(self.path, checkpoint.METADATA), "rb") as stream:
            metadata = _metadata(stream.read())
        metadata.storage_meta = metadata.storage_meta or StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


def _metadata(data: bytes) -> Metadata:
    metadata = loads(data, DCP_METADATA)
    if not isinstance(metadata, Metadata):
        raise ValueError(f"not a DCP index ({type(metadata).__name__})")
    return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's default load planner, whose non-tensor values load weights-only (DCP's own planner
    unpickles them with `weights_only=False`)."""

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        loaded = load_torch(value)
        if self.flatten_state_dict:  # as DCP's own `load_bytes` does
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded

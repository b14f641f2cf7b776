"""Reading back what a results store holds, with nothing in it that can execute.

Results live on shared storage (an NFS mount, s3://): whoever can write a file there must not be
able to run code on the machines that read it. A pickle calls whatever importable function it
names while it loads, so nothing scalegrid reads back is unpickled by the standard `pickle`:

    load_torch(source)                 torch.load(weights_only=True): tensors, numbers, strings,
                                       lists, tuples and dicts only (checkpoints: checkpoint.py)
    loads(data, allowed)               a pickle whose every global is in `allowed`: PLAIN types, or
                                       DCP_METADATA for torch.distributed.checkpoint's `.metadata`
                                       (`FileSystemReader.read_metadata` reads it with plain pickle)

A refused global raises `UnsafePickle` naming it, before anything it names is called. Everything
else scalegrid reads back is JSON, Parquet, NumPy arrays (`allow_pickle=False`) or safetensors.
"""

from __future__ import annotations

import io
import pickle
from typing import IO, Any

# Globals a pickle may name, as (module, name). Each is harmless whatever the arguments: a
# container, a value type, a record class whose state is set field by field.
PLAIN = frozenset({
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "slice"),
    ("collections", "OrderedDict"), ("datetime", "datetime"), ("datetime", "timedelta"), ("pathlib", "PosixPath"),
})  # fmt: skip

_DCP = "torch.distributed.checkpoint.metadata"
DCP_METADATA = PLAIN | frozenset({
    (_DCP, "Metadata"), (_DCP, "MetadataIndex"), (_DCP, "StorageMeta"), (_DCP, "TensorProperties"),
    (_DCP, "TensorStorageMetadata"), (_DCP, "BytesStorageMetadata"), (_DCP, "ChunkStorageMetadata"),
    (_DCP, "_MEM_FORMAT_ENCODING"), ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"), ("torch.serialization", "_get_layout"),
}) | frozenset(("torch", name) for name in (
    "float64", "float32", "float16", "bfloat16", "complex64", "complex128", "int64", "int32", "int16", "int8",
    "uint8", "uint16", "uint32", "uint64", "bool", "float8_e4m3fn", "float8_e5m2",
))  # fmt: skip


class UnsafePickle(pickle.UnpicklingError):
    """A pickle named a global that is not allowed: it was refused before anything ran."""


class AllowlistUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` that resolves only the globals in `allowed`."""

    def __init__(self, file: IO[bytes], allowed: frozenset[tuple[str, str]]):
        super().__init__(file)
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise UnsafePickle(f"refused to load {module}.{name}: not a data type this file may hold")
        return super().find_class(module, name)


def loads(data: bytes, allowed: frozenset[tuple[str, str]] = PLAIN) -> Any:
    """Unpickle `data`, resolving only the globals in `allowed`."""
    return AllowlistUnpickler(io.BytesIO(data), allowed).load()


def load(file: IO[bytes], allowed: frozenset[tuple[str, str]] = PLAIN) -> Any:
    """`loads` from an open binary file (a DCP `.metadata` stream)."""
    return AllowlistUnpickler(file, allowed).load()


def load_torch(source: str | IO[bytes], *, mmap: bool = False) -> Any:
    """A `torch.save` file with nothing executable: torch's weights-only unpickler (tensors and
    plain containers). `mmap` maps a local file's tensors instead of reading them (a cheap check
    that the file loads). A refused global raises `UnsafePickle`."""
    import torch

    try:
        return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:  # torch's "Weights only load failed": a refused global
        lines = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "Unsupported" in line]
        raise UnsafePickle(f"refused to load it ({(lines or ['not a weights-only file'])[0][:200]})") from None

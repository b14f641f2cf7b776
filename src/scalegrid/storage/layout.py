"""Where results live: one `ResultsLayout` per results root, resolved once and carried by every `Trial`.

Every path under RESULTS is named here, once:

    runs/<trial_id>.parquet          one row per trial (store.py)
    curves/<trial_id>.parquet        one row per evaluation
    ensembles/<row_id>.parquet       one row per (grid point, k)
    <table>/part-<time>-<hash>.parquet   many rows' files of runs/, curves/ or ensembles/ folded into one (store/compact.py)
    search/<cell_id>.parquet         one row per step of a cell's search (orchestrator/planning/cells.py)
    evals/<eval_id>.parquet          one row per metric of a downstream evaluation (a model on a task)
    models/<trial_id>/               final weights, `save_pretrained` (config.json written last)
    checkpoints/<trial_id>/step-<N>/ a running trial's checkpoints, every process's shards (trainers/checkpoint.py)
    trunks/<trunk_id>/step-<N>/      a wsd trunk's states where shorter epoch counts branch off (trainers/trunks.py)
    leases/<trial_id>/               who trains a trial now (gen-N), and its attempts (history.jsonl; on S3 history/<time>.json) (orchestrator/leases.py)
    cache/tokens/<key>/              a tokenized corpus (data/corpus/cache.py; meta.json written last)
    cache/files/<fingerprint>.json   a local corpus file's SHA-256, found by its cheap fingerprint
    cache/hub/<source>.json          the commit a hub source without a pinned revision was read at
    cache/teacher/<corpus_id>/       a teacher-generated corpus (trainers/distill.py; meta.json last)
    stages/<sweep>.json              the ensembles and students of a sweep's latest run
    <any file>.corrupt-<time>        an unreadable run file or checkpoint, set aside (never deleted)
    sweeps/<name>-<hash>.json        the resolved spec and provenance of each distinct run
    tune/                            Ray Tune's own experiment state (debugging only); TensorBoard event files
    wandb/                           W&B's local run files (`tracking: wandb`)
    mlruns/                          MLflow's default file store (`tracking: mlflow`)
    report/                          the scaling report
    logs/<sweep>-<time>.log          Ray's own messages of a run on this machine (shown instead with -v)

The root is a local directory or a URI on shared storage (`storage/uri.py`); all I/O goes through
its pyarrow filesystem, so every method works on a path, `file://` and object stores alike. A file
is written under a hidden temporary name and renamed into place (on an object store: one PUT,
which is atomic), so a reader (or a killed writer) never sees half a file; a directory is
published the same way (`publish_dir`).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from scalegrid.storage.local import atomic_dir
from scalegrid.storage.space import storage_errors_are_one_line
from scalegrid.storage.uri import OBJECT_STORES, parse, redacted

Parts = tuple[str, ...]

RUNS, CURVES, ENSEMBLES, SEARCH, EVALS = "runs", "curves", "ensembles", "search", "evals"
MODEL_MARKER = "config.json"  # written last by save_pretrained's caller: a model directory is complete
CACHE_MARKER = "meta.json"  # written last into a token cache or a teacher corpus
PART_PREFIX = "part-"  # a file of many rows (`part_file`); a row's own file is named by its 16-hex id
CORRUPT_SUFFIX = ".corrupt-"  # an unreadable run file or checkpoint, set aside (`set_aside`)
# The longest path written under a root, past it: Tune's trial files (tune/<sweep name, at most
# 100>-<stamp>-<owner>/<pack>/...) are the deepest; names here are far shorter.
LONGEST_UNDER_ROOT = 400
_CHECKPOINT = re.compile(r"^step-(\d+)$")


@dataclass(frozen=True)
class ResultsLayout:
    """A results root (`uri` as the user wrote it; `fs` a pyarrow filesystem; `root` the absolute
    path inside it) and the names of everything under it."""

    uri: str
    scheme: str  # "" for a plain path, else file | s3 | gs
    fs: object
    root: str

    def __str__(self) -> str:
        return redacted(self.uri)

    # --- what kind of store --------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """The user named shared storage: any URI. A plain path is node-local."""
        return self.scheme != ""

    @property
    def object_store(self) -> bool:
        return self.scheme in OBJECT_STORES

    @property
    def local_path(self) -> Path | None:
        """The root on this machine (a plain path as given, or file://'s); None on an object store."""
        if self.object_store:
            return None
        return Path(self.uri) if self.scheme == "" else Path(self.root)

    def local(self, *parts: str) -> Path | None:
        """`parts` as a path on this machine; None on an object store."""
        return None if self.object_store else Path(self.root, *parts)

    # --- the names -------------------------------------------------------------------------------

    def row_file(self, table: str, row_id: str) -> Parts:
        return (table, f"{row_id}.parquet")

    def part_file(self, table: str, stamp: str, digest: str) -> Parts:
        """Rows folded from their own files (`store/compact.py`): `stamp` (UTC, sortable) orders
        the parts of a table oldest first; `digest` tells apart two written in one microsecond."""
        return (table, f"{PART_PREFIX}{stamp}-{digest}.parquet")

    def model_dir(self, trial_id: str) -> Parts:
        return ("models", trial_id)

    def checkpoints(self, trial_id: str) -> CheckpointDir:
        return CheckpointDir(self, trial_id)

    def trunk(self, trunk_id: str) -> CheckpointDir:
        """`trunks/<trunk_id>/step-<N>/`: the stable phase shared by a grid point's epoch counts."""
        return CheckpointDir(self, trunk_id, top="trunks")

    def lease_dir(self, trial_id: str) -> Parts:
        return ("leases", trial_id)

    def token_cache(self, key: str) -> Parts:
        return ("cache", "tokens", key)

    def file_hash(self, fingerprint: str) -> Parts:
        return ("cache", "files", f"{fingerprint}.json")

    def hub_revision(self, source: str) -> Parts:
        return ("cache", "hub", f"{source}.json")

    def teacher_corpus(self, corpus_id: str) -> Parts:
        return ("cache", "teacher", corpus_id)

    def stage_graphs(self) -> Parts:
        return ("stages",)

    def stage_graph(self, sweep: str) -> Parts:
        return ("stages", f"{sweep}.json")

    def sweep_records(self) -> Parts:
        return ("sweeps",)

    def sweep_record(self, name: str) -> Parts:
        return ("sweeps", name)

    def tune_dir(self) -> Parts:
        return ("tune",)

    def train_runs_dir(self) -> Parts:
        """Ray Train's own state of multi-worker trials, a run per trial_id (debugging only, like tune/)."""
        return ("tune", "train")

    def wandb_dir(self) -> Parts:
        return ("wandb",)

    def mlflow_dir(self) -> Parts:
        return ("mlruns",)

    def report_dir(self) -> Parts:
        return ("report",)

    def ray_log(self, name: str) -> Parts:
        """What Ray wrote to a driver's stderr during a run (`orchestrator/display/console.py`)."""
        return ("logs", name)

    def has_model(self, trial_id: str) -> bool:
        return self.is_file(*self.model_dir(trial_id), MODEL_MARKER)

    # --- paths -----------------------------------------------------------------------------------

    def path(self, *parts: str) -> str:
        """The filesystem path of `parts` under the root (for pyarrow calls)."""
        return "/".join([self.root.rstrip("/"), *parts]) if parts else self.root

    def uri_of(self, *parts: str) -> str:
        """`parts` under the root as a URI (or a local path): for messages and Ray Tune's storage."""
        if self.object_store:
            base = urlsplit(self.uri)
            return urlunsplit((base.scheme, base.netloc, "/".join([base.path.rstrip("/"), *parts]), base.query, ""))
        return str(Path(self.local_path, *parts))

    def shown(self, *parts: str) -> str:
        """`parts` for a message: the local path, or the URI without credentials."""
        return redacted(self.uri_of(*parts))

    # --- reading ---------------------------------------------------------------------------------

    def info(self, *parts: str):
        return self.fs.get_file_info(self.path(*parts))

    def is_file(self, *parts: str) -> bool:
        from pyarrow.fs import FileType

        return self.info(*parts).type == FileType.File

    def is_dir(self, *parts: str) -> bool:
        """A directory, or on an object store a prefix that holds at least one object."""
        from pyarrow.fs import FileType

        kind = self.info(*parts).type
        if kind == FileType.Directory:
            return True
        return kind == FileType.NotFound and self.object_store and bool(self.list(*parts))

    def list(self, *parts: str, suffix: str = "") -> list[str]:
        """Names of the files directly under `parts` ending in `suffix`, hidden ones left out, sorted."""
        from pyarrow.fs import FileSelector, FileType

        infos = self.fs.get_file_info(FileSelector(self.path(*parts), allow_not_found=True))
        return sorted(
            i.base_name for i in infos
            if i.type == FileType.File and i.base_name.endswith(suffix) and not i.base_name.startswith(".")
        )

    def entries(self, *parts: str, suffix: str = "") -> tuple[list[str], list[str]]:
        """(the files, and the other things: directories, FIFOs, broken links) directly under
        `parts` whose names end in `suffix`, hidden ones left out, each sorted."""
        from pyarrow.fs import FileSelector, FileType

        infos = self.fs.get_file_info(FileSelector(self.path(*parts), allow_not_found=True))
        named = [i for i in infos if i.base_name.endswith(suffix) and not i.base_name.startswith(".")]
        return sorted(i.base_name for i in named if i.type == FileType.File), sorted(i.base_name for i in named if i.type != FileType.File)

    def list_dirs(self, *parts: str) -> list[str]:
        """Names of the directories directly under `parts`, sorted; on an object store the first
        component of every deeper object's name (not every store lists its prefixes as directories)."""
        from pyarrow.fs import FileSelector, FileType

        base = self.path(*parts)
        infos = self.fs.get_file_info(FileSelector(base, allow_not_found=True, recursive=self.object_store))
        if self.object_store:
            names = {i.path[len(base):].lstrip("/").split("/")[0] for i in infos if "/" in i.path[len(base):].lstrip("/")}
        else:
            names = {i.base_name for i in infos if i.type == FileType.Directory}
        return sorted(name for name in names if not name.startswith("."))

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.path(*parts)) as f:
            return f.read()

    # --- writing ---------------------------------------------------------------------------------

    def makedirs(self, *parts: str) -> None:
        with storage_errors_are_one_line(self.shown()):
            self.fs.create_dir(self.path(*parts), recursive=True)  # a no-op on object stores

    def write_atomic(self, parts: Parts, write: Callable[[str, object], None]) -> str:
        """Call `write(path, filesystem)` so that readers never see a partial file at `parts`; a
        full disk is a `StorageError` and leaves no temporary."""
        final = self.path(*parts)
        if self.object_store:  # one PUT (or a completed multipart upload) is atomic
            write(final, self.fs)
            return final
        parent, name = final.rsplit("/", 1)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with storage_errors_are_one_line(self.shown()):
                self.fs.create_dir(parent, recursive=True)
                write(tmp, self.fs)
                self.fs.move(tmp, final)  # rename(2): atomic on one filesystem
        finally:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
        return final

    def write_bytes(self, parts: Parts, data: bytes) -> str:
        def write(path, fs):
            with fs.open_output_stream(path) as out:
                out.write(data)

        return self.write_atomic(parts, write)

    def delete(self, parts: Parts) -> None:
        """Remove the file at `parts`; one that is already gone is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path(*parts))

    def delete_dir(self, parts: Parts) -> None:
        """Remove the directory at `parts` and all under it; one that is already gone is fine."""
        from pyarrow.fs import FileType

        if self.info(*parts).type == FileType.Directory or self.object_store:
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_dir(self.path(*parts))

    def move(self, src: Parts, dst: Parts) -> None:
        """Rename a file, or a directory (on an object store: each of its files, one by one)."""
        from pyarrow.fs import FileSelector, FileType

        if not (self.object_store and self.info(*src).type != FileType.File):
            self.fs.move(self.path(*src), self.path(*dst))
            return
        base = self.path(*src)
        for info in self.fs.get_file_info(FileSelector(base, recursive=True)):
            if info.type == FileType.File:
                self.fs.move(info.path, self.path(*dst, *info.path[len(base):].lstrip("/").split("/")))

    def set_aside(self, parts: Parts) -> Parts:
        """Rename an unreadable file or directory to `<name>.corrupt-<time>` beside it: kept for a
        look, never deleted, and no longer read (no reader lists that suffix)."""
        aside = (*parts[:-1], f"{parts[-1]}{CORRUPT_SUFFIX}{int(time.time())}")
        self.move(parts, aside)
        return aside

    def set_aside_dir(self, parts: Parts, marker: str) -> str:
        """Set a published directory aside: on a filesystem the directory is renamed
        `<name>.corrupt-<time>`; on an object store its `marker` is (the rest is written over when
        the directory is published again). Either way it no longer counts as published."""
        local = self.local(*parts)
        if local is None:
            return self.shown(*self.set_aside((*parts, marker)))
        aside = local.with_name(f"{local.name}{CORRUPT_SUFFIX}{int(time.time())}")
        with storage_errors_are_one_line(self.shown()):
            os.rename(local, aside)
        return str(aside)

    def download(self, parts: Parts, target: Path) -> None:
        """Copy the file at `parts` to a local path."""
        from pyarrow.fs import LocalFileSystem, copy_files

        target.parent.mkdir(parents=True, exist_ok=True)
        copy_files(self.path(*parts), str(target), source_filesystem=self.fs, destination_filesystem=LocalFileSystem())

    def upload(self, source: Path, parts: Parts) -> None:
        """Copy a local file to `parts`, streamed (an object store completes the upload atomically)."""
        from pyarrow.fs import LocalFileSystem, copy_files

        if not self.object_store:
            self.write_bytes(parts, Path(source).read_bytes())
            return
        copy_files(str(source), self.path(*parts), source_filesystem=LocalFileSystem(), destination_filesystem=self.fs)

    def upload_tree(self, local_dir: Path, parts: Parts, *, last: str | None = None) -> None:
        """Copy a local directory's files under `parts`, each one atomic write; the file named
        `last` (a completion marker) goes after all the others."""
        files = sorted((p for p in Path(local_dir).rglob("*") if p.is_file()), key=lambda p: (p.name == last, str(p)))
        for path in files:
            self.upload(path, (*parts, *path.relative_to(local_dir).parts))

    def publish_dir(self, parts: Parts, fill: Callable[[Path], None], *, marker: str, replace: bool = False) -> str:
        """Write a whole directory at `parts` by `fill(local_dir)`: readers see it complete or not at
        all (a rename on a filesystem; on an object store every file uploaded, `marker` last)."""
        local = self.local(*parts)
        if local is not None:
            with storage_errors_are_one_line(self.shown()):
                return str(atomic_dir(local, fill, marker=marker, replace=replace))
        if not replace and self.is_file(*parts, marker):
            return self.uri_of(*parts)
        with tempfile.TemporaryDirectory(prefix="scalegrid-publish-") as tmp:
            fill(Path(tmp))
            self.upload_tree(Path(tmp), parts, last=marker)
        return self.uri_of(*parts)

    def materialise_dir(self, parts: Parts, target: Path, *, marker: str, stale: bool = False) -> Path | None:
        """A complete local copy of the directory `parts` at `target` (the directory itself when it
        is mounted here); copied once per node, atomically, and again when the caller knows the
        copy is `stale` (the store's directory grew). None when it is not (yet) complete."""
        local = self.local(*parts)
        if local is not None:
            return local if (local / marker).is_file() else None
        if (target / marker).is_file() and not stale:
            return target
        if not self.is_file(*parts, marker):
            return None
        from pyarrow.fs import FileSelector, FileType

        base = self.path(*parts)

        def fill(tmp: Path) -> None:
            for info in self.fs.get_file_info(FileSelector(base, recursive=True)):
                if info.type == FileType.File:
                    rel = info.path[len(base):].lstrip("/")
                    self.download((*parts, *rel.split("/")), tmp / rel)

        with storage_errors_are_one_line(target.parent):
            return atomic_dir(target, fill, marker=marker, replace=stale)


@dataclass(frozen=True)
class CheckpointDir:
    """`checkpoints/<trial_id>/step-<N>/` (or `trunks/<trunk_id>/...`) under a results root: one
    directory per checkpoint (trainers/checkpoint.py says what is in it)."""

    results: ResultsLayout
    trial_id: str
    top: str = "checkpoints"

    @property
    def parts(self) -> Parts:
        return (self.top, self.trial_id)

    def name(self, step: int) -> str:
        return f"step-{step:09d}"

    def step_parts(self, step: int) -> Parts:
        """The directory of the checkpoint at `step`."""
        return (*self.parts, self.name(step))

    def step_of(self, name: str) -> int | None:
        """The step of a checkpoint directory's name; None for any other name."""
        match = _CHECKPOINT.match(name)
        return int(match.group(1)) if match else None

    def __str__(self) -> str:
        return self.results.shown(*self.parts)


def is_part(name: str) -> bool:
    """A file of many rows (`ResultsLayout.part_file`), not one row's own."""
    return name.startswith(PART_PREFIX)


def layout(results: str | Path | ResultsLayout) -> ResultsLayout:
    """The layout of a results path or URI (a `UserError` for a malformed URI)."""
    if isinstance(results, ResultsLayout):
        return results
    parsed = parse(str(results))
    return ResultsLayout(parsed.uri, parsed.scheme, parsed.fs, parsed.root)

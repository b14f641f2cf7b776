"""Where results live: a local directory or a URI on shared storage, read and written through pyarrow.

    results: results/quickstart                 # a local directory (this machine only)
    results: file:///mnt/shared/quickstart      # a shared mount, said to be shared by the file:// URI
    results: s3://bucket/sweeps/quickstart      # object stores: s3:// and gs:// (pyarrow's filesystems)

`location(results)` parses either form into a `ResultsLocation`: a pyarrow filesystem, the root
path inside it, and whether the user named shared storage (any URI does; a plain path never does,
so a multi-node cluster refuses it). Paths and `file://` URIs are on a locally mounted filesystem
(`local_path`), so everything that needs a real directory (memory-mapped tokens, the report, Ray
Tune's experiment state) works there as before. On an object store a file is one PUT, which is
atomic: readers see the whole file or none; locally a file is written under a hidden temporary
name and renamed into place.

An object store URI may carry pyarrow's options as a query (`s3://b/p?region=eu-west-1&
endpoint_override=host:9000&scheme=http`); credentials come from the usual environment
(`AWS_*`, `GOOGLE_APPLICATION_CREDENTIALS`), never from the spec.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from scalegrid.errors import UserError

SCHEMES = ("file", "s3", "gs")
OBJECT_STORES = ("s3", "gs")
GCS_RETRY_LIMIT_S = 20  # pyarrow's default keeps retrying an unreachable GCS for 15 minutes


def is_uri(results: str | Path) -> bool:
    return isinstance(results, str) and "://" in results


def redacted(uri: str) -> str:
    """The URI for messages and logs: credentials written into it (`s3://KEY:SECRET@bucket`) hidden."""
    if not is_uri(uri):
        return uri
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit((parts.scheme, "***@" + parts.netloc.rsplit("@", 1)[1], parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class ResultsLocation:
    """A results store root: `fs` (pyarrow), `root` (a path inside it), `uri` (as the user wrote it)."""

    uri: str
    scheme: str  # "" for a plain path, else file | s3 | gs
    fs: object  # pyarrow.fs.FileSystem
    root: str

    def __str__(self) -> str:
        return redacted(self.uri)

    @property
    def shared(self) -> bool:
        """The user named shared storage: any URI. A plain path is node-local."""
        return self.scheme != ""

    @property
    def local_path(self) -> Path | None:
        """The directory on this machine (plain path or file://); None on an object store."""
        if self.scheme in OBJECT_STORES:
            return None
        return Path(self.uri) if self.scheme == "" else Path(self.root)

    @property
    def handle(self) -> Path | str:
        """What the rest of scalegrid passes around: a Path when mounted here, else the URI."""
        return self.local_path if self.local_path is not None else self.uri

    def path(self, *parts: str) -> str:
        """The filesystem path of `parts` under the root."""
        return "/".join([self.root.rstrip("/"), *parts]) if parts else self.root

    def uri_of(self, *parts: str) -> str:
        """`parts` under the root as a URI (or a local path): for messages and Ray Tune's storage."""
        if self.scheme in OBJECT_STORES:
            base = urlsplit(self.uri)
            return urlunsplit((base.scheme, base.netloc, "/".join([base.path.rstrip("/"), *parts]), base.query, ""))
        return str(Path(self.handle, *parts))

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
        if kind == FileType.NotFound and self.scheme in OBJECT_STORES:
            return bool(self.list(*parts))
        return False

    def list(self, *parts: str, suffix: str = "") -> list[str]:
        """Names of the files directly under `parts` ending in `suffix`, hidden ones left out, sorted."""
        from pyarrow.fs import FileSelector, FileType

        infos = self.fs.get_file_info(FileSelector(self.path(*parts), allow_not_found=True))
        return sorted(
            i.base_name for i in infos if i.type == FileType.File and i.base_name.endswith(suffix) and not i.base_name.startswith(".")
        )

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.path(*parts)) as f:
            return f.read()

    # --- writing ---------------------------------------------------------------------------------

    def makedirs(self, *parts: str) -> None:
        self.fs.create_dir(self.path(*parts), recursive=True)  # a no-op on object stores

    def write_atomic(self, parts: tuple[str, ...], write) -> str:
        """Call `write(path, filesystem)` so that readers never see a partial file at `parts`."""
        final = self.path(*parts)
        if self.scheme in OBJECT_STORES:  # one PUT (or a completed multipart upload) is atomic
            write(final, self.fs)
            return final
        parent, name = final.rsplit("/", 1)
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            write(tmp, self.fs)
            self.fs.move(tmp, final)  # rename(2): atomic on one filesystem
        finally:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
        return final

    def write_bytes(self, parts: tuple[str, ...], data: bytes) -> str:
        def write(path, fs):
            with fs.open_output_stream(path) as out:
                out.write(data)

        return self.write_atomic(parts, write)

    def delete(self, parts: tuple[str, ...]) -> None:
        """Remove the file at `parts`; one that is already gone is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path(*parts))

    def move(self, src: tuple[str, ...], dst: tuple[str, ...]) -> None:
        self.fs.move(self.path(*src), self.path(*dst))

    def download(self, parts: tuple[str, ...], target: Path) -> None:
        """Copy the file at `parts` to a local path."""
        from pyarrow.fs import LocalFileSystem, copy_files

        target.parent.mkdir(parents=True, exist_ok=True)
        copy_files(self.path(*parts), str(target), source_filesystem=self.fs, destination_filesystem=LocalFileSystem())

    def upload(self, source: Path, parts: tuple[str, ...]) -> None:
        """Copy a local file to `parts`, streamed (an object store completes the upload atomically)."""
        from pyarrow.fs import LocalFileSystem, copy_files

        if self.scheme not in OBJECT_STORES:
            return self.write_bytes(parts, Path(source).read_bytes())
        copy_files(str(source), self.path(*parts), source_filesystem=LocalFileSystem(), destination_filesystem=self.fs)

    def upload_tree(self, local_dir: Path, *parts: str) -> None:
        """Copy a local directory's files under `parts` (each file one atomic write)."""
        for path in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
            self.upload(path, (*parts, *path.relative_to(local_dir).parts))


def location(results: str | Path | ResultsLocation) -> ResultsLocation:
    """Parse a results path or URI; an unsupported or malformed URI is a one-line `UserError`."""
    if isinstance(results, ResultsLocation):
        return results
    from pyarrow import fs as pafs

    if not is_uri(results):
        return ResultsLocation(str(results), "", pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(str(results))))
    return _parse_uri(results)


@functools.lru_cache(maxsize=64)
def _parse_uri(results: str) -> ResultsLocation:
    """Cached: an S3 URI without `region=` costs a request to find the bucket's region."""
    from pyarrow import fs as pafs

    parts = urlsplit(results)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UserError(f"results: {redacted(results)}: unsupported scheme {scheme}://; use a path, file:///shared/dir, s3://bucket/dir or gs://bucket/dir")
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise UserError(f"results: {redacted(results)}: a file:// URI needs an absolute path, e.g. file:///mnt/shared/results")
        return ResultsLocation(results, "file", pafs.LocalFileSystem(), parts.path.rstrip("/") or "/")
    if not parts.netloc:
        raise UserError(f"results: {redacted(results)}: no bucket; write {scheme}://BUCKET/path")
    query = dict(parse_qsl(parts.query))
    if scheme == "gs":
        query.setdefault("retry_limit_seconds", str(GCS_RETRY_LIMIT_S))
    uri = urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), ""))
    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
    except ImportError as err:
        raise UserError(f"results: {redacted(results)}: this pyarrow has no {scheme}:// support ({err}); install a pyarrow built with it") from None
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"results: {redacted(results)}: cannot open ({_first_line(err)}); check the URI and its query options") from None
    return ResultsLocation(results, scheme, filesystem, root.rstrip("/"))


def check_reachable(loc: ResultsLocation) -> None:
    """On an object store, one request before anything runs: credentials, endpoint, bucket."""
    if loc.scheme not in OBJECT_STORES:
        return
    from pyarrow.fs import FileType

    bucket = loc.root.split("/", 1)[0]
    try:
        if loc.fs.get_file_info(bucket).type != FileType.Directory:
            raise UserError(f"results: {loc}: the bucket {bucket} does not exist (or these credentials cannot see it); create it first")
        kind = loc.info().type
    except OSError as err:
        raise UserError(
            f"results: {loc}: cannot reach the store ({_first_line(err)}); check the endpoint, the bucket and the "
            "credentials in the environment"
        ) from None
    if kind == FileType.File:
        raise UserError(f"results: {loc} is a file, not a directory; choose another path with --results")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [err.__class__.__name__])[0][:300]


@contextlib.contextmanager
def materialised(loc: ResultsLocation, *dirs: str):
    """A local directory holding `dirs` of the store: the store itself when it is mounted here,
    else a temporary copy (the Parquet files are small; a report or a notebook reads them)."""
    if loc.local_path is not None:
        yield loc.local_path
        return
    with tempfile.TemporaryDirectory(prefix="scalegrid-results-") as tmp:
        for d in dirs:
            for name in loc.list(d):
                loc.download((d, name), Path(tmp, d, name))
        yield Path(tmp)


def node_cache_dir() -> Path:
    """This node's cache for copies of what lives on an object store (`SCALEGRID_CACHE` overrides)."""
    return Path(os.environ.get("SCALEGRID_CACHE") or Path.home() / ".cache" / "scalegrid")


def materialise_dir(loc: ResultsLocation, parts: tuple[str, ...], target: Path, *, marker: str) -> Path | None:
    """Copy the store's directory `parts` to `target` on this node once; `marker` is the file
    written last on the store, so its presence means the directory is complete. None if absent."""
    if (target / marker).is_file():
        return target
    if not loc.is_file(*parts, marker):
        return None
    from pyarrow.fs import FileSelector, FileType

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        base = loc.path(*parts)
        for info in loc.fs.get_file_info(FileSelector(base, recursive=True)):
            if info.type == FileType.File:
                rel = info.path[len(base):].lstrip("/")
                loc.download((*parts, *rel.split("/")), tmp / rel)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / marker).is_file():  # not a lost race with another worker: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target

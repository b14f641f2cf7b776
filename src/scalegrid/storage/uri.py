"""Results URIs: which filesystem a results path or URI names, parsed once, with one-line errors.

    results/quickstart                  a local directory (this machine only)
    file:///mnt/shared/quickstart       a shared mount, said to be shared by the file:// URI
    s3://bucket/sweeps/quickstart       object stores: s3:// and gs:// (pyarrow's filesystems)

An object store URI may carry pyarrow's options as a query (`s3://b/p?region=eu-west-1&
endpoint_override=host:9000&scheme=http`); credentials come from the usual environment
(`AWS_*`, `GOOGLE_APPLICATION_CREDENTIALS`), never from the spec.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from scalegrid.errors import UserError

SCHEMES = ("file", "s3", "gs")
OBJECT_STORES = ("s3", "gs")
GCS_RETRY_LIMIT_S = 20  # pyarrow's default keeps retrying an unreachable GCS for 15 minutes


def is_uri(results: object) -> bool:
    return isinstance(results, str) and "://" in results


def redacted(uri: str) -> str:
    """The URI for messages and logs: credentials written into it (`s3://KEY:SECRET@bucket`) hidden."""
    if not is_uri(uri):
        return uri
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit((parts.scheme, "***@" + parts.netloc.rsplit("@", 1)[1], parts.path, parts.query, parts.fragment))


def first_line(err: BaseException, limit: int = 300) -> str:
    return (str(err).strip().splitlines() or [err.__class__.__name__])[0][:limit]


@dataclass(frozen=True)
class Parsed:
    """A results root: `uri` (as the user wrote it), `scheme` ("" for a
    path, else file | s3 | gs), `fs` (a pyarrow filesystem) and `root` (the path inside it)."""

    uri: str
    scheme: str
    fs: object
    root: str


def absolute(results: str) -> str:
    """A plain path made absolute (trials run in other working directories); a URI as it is."""
    return results if is_uri(results) else os.path.abspath(os.path.expanduser(results))


def parse(results: str) -> Parsed:
    """Parse a results path or URI; an unsupported or malformed URI is a one-line `UserError`."""
    if not is_uri(results):
        from pyarrow import fs as pafs

        return Parsed(results, "", pafs.LocalFileSystem(), absolute(results))
    return _parse_uri(results)


@functools.lru_cache(maxsize=64)
def _parse_uri(results: str) -> Parsed:
    """Cached: an S3 URI without `region=` costs a request to find the bucket's region."""
    from pyarrow import fs as pafs

    parts = urlsplit(results)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UserError(
            f"results: {redacted(results)}: unsupported scheme {scheme}://; use a path, file:///shared/dir, "
            "s3://bucket/dir or gs://bucket/dir"
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise UserError(f"results: {redacted(results)}: a file:// URI needs an absolute path, e.g. file:///mnt/shared/results")
        return Parsed(results, "file", pafs.LocalFileSystem(), parts.path.rstrip("/") or "/")
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
        raise UserError(f"results: {redacted(results)}: cannot open ({first_line(err)}); check the URI and its query options") from None
    return Parsed(results, scheme, filesystem, root.rstrip("/"))

"""Create an object only if it does not exist yet: the one primitive that leases need on S3.

pyarrow's filesystems cannot send S3's conditional PUT (`If-None-Match: *`, which S3 honours
since 2024 and moto's server honours too), so this one call goes through boto3 with the endpoint,
credentials and region of the results URI (`s3://KEY:SECRET@bucket/dir?endpoint_override=HOST:PORT
&scheme=http&region=R`; without them boto3's own chain: environment, profile, instance role).
Two creators of one name: exactly one gets True. GCS (`ifGenerationMatch=0`) is not wired yet:
`gs://` results have no leases.
"""

from __future__ import annotations

import functools
from urllib.parse import parse_qsl, unquote, urlsplit

from scalegrid.storage.layout import Parts, ResultsLayout


def supported(results: ResultsLayout) -> bool:
    """Whether `create_if_absent` works on this store (and boto3 is installed for S3)."""
    if results.scheme != "s3":
        return False
    try:
        import boto3  # noqa: F401
    except ImportError:
        return False
    return True


def create_if_absent(results: ResultsLayout, parts: Parts, data: bytes) -> bool:
    """Write `data` at `parts` unless an object is there; True when this call created it."""
    from botocore.exceptions import ClientError

    bucket, key = results.path(*parts).split("/", 1)
    try:
        _client(results.uri).put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as err:
        # 412: the object exists; 409: a concurrent conditional write to the same key won
        if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
            return False
        raise
    return True


@functools.lru_cache(maxsize=8)
def _client(uri: str):
    import boto3

    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query))
    endpoint = query.get("endpoint_override")
    return boto3.client(
        "s3",
        endpoint_url=f"{query.get('scheme', 'https')}://{endpoint}" if endpoint else None,
        aws_access_key_id=unquote(parts.username) if parts.username else None,
        aws_secret_access_key=unquote(parts.password) if parts.password else None,
        region_name=query.get("region"),
    )

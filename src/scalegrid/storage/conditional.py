"""Create an object only if it does not exist yet: the one primitive that leases need on an object store.

pyarrow's filesystems cannot send a conditional create, so this one call goes through the store's
own client. S3: a PUT with `If-None-Match: *` (S3 honours it since 2024, moto's server too), by
boto3 with the endpoint, credentials and region of the results URI (`s3://KEY:SECRET@bucket/dir?
endpoint_override=HOST:PORT&scheme=http&region=R`; without them boto3's own chain: environment,
profile, instance role). GCS: an upload with the precondition `ifGenerationMatch=0` (the object has
no live generation), by google-cloud-storage (the `gcs` extra) with the endpoint of the results
URI as pyarrow reads it (`gs://anonymous@bucket/dir?endpoint_override=HOST:PORT&scheme=http`: no
credentials) or else the application's default credentials. Two creators of one name: exactly
one gets True.
"""

from __future__ import annotations

import functools
import importlib
from urllib.parse import parse_qsl, unquote, urlsplit

from scalegrid.storage.layout import Parts, ResultsLayout


CLIENTS = {"s3": "boto3", "gs": "google.cloud.storage"}  # the module each store's conditional create needs


def supported(results: ResultsLayout) -> bool:
    """Whether `create_if_absent` works on this store: S3 with boto3, GCS with google-cloud-storage."""
    if results.scheme not in CLIENTS:
        return False
    try:
        importlib.import_module(CLIENTS[results.scheme])
    except ImportError:
        return False
    return True


def create_if_absent(results: ResultsLayout, parts: Parts, data: bytes) -> bool:
    """Write `data` at `parts` unless an object is there; True when this call created it."""
    bucket, key = results.path(*parts).split("/", 1)
    if results.scheme == "gs":
        return _gcs_create(results.uri, bucket, key, data)
    from botocore.exceptions import ClientError

    try:
        _client(results.uri).put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as err:
        # 412: the object exists; 409: a concurrent conditional write to the same key won
        if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
            return False
        raise
    return True


def _gcs_create(uri: str, bucket: str, key: str, data: bytes) -> bool:
    from google.api_core.exceptions import PreconditionFailed

    try:
        gcs_client(uri).bucket(bucket).blob(key).upload_from_string(data, if_generation_match=0)
    except PreconditionFailed:  # 412: a live generation exists, another creator won
        return False
    return True


@functools.lru_cache(maxsize=8)
def gcs_client(uri: str):
    """google-cloud-storage's client for a gs:// results URI, with pyarrow's reading of it."""
    from google.cloud import storage

    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query))
    options = {}
    if query.get("endpoint_override"):
        options["client_options"] = {"api_endpoint": f"{query.get('scheme', 'https')}://{query['endpoint_override']}"}
    if parts.username == "anonymous":
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=query.get("project_id", "anonymous"), credentials=AnonymousCredentials(), **options)
    return storage.Client(project=query.get("project_id"), **options)


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

"""A model repository in object storage, as the launcher sees it: is a URL
remote, where does it point, can the server read it. Publishing is
`deploy/object_storage.py`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass


REMOTE_SCHEMES = ("s3://", "gs://", "as://")
_S3_URL = re.compile(r"^s3://(?:(?P<scheme>https?)://)?(?:(?P<host>[^/:]+):(?P<port>\d+)/)?(?P<bucket>[^/]+)/?(?P<prefix>.*)$")


def is_remote(repository) -> bool:
    """A repository URL tritonserver reads itself. Kept as a string: pathlib
    would turn `s3://` into `s3:/`."""
    return isinstance(repository, str) and repository.startswith(REMOTE_SCHEMES)


class StorageError(RuntimeError):
    pass


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty
    endpoint_url: str | None  # None: AWS (or $AWS_ENDPOINT_URL through boto3)

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative


def parse_s3_url(url: str) -> S3Location:
    match = _S3_URL.match(url)
    if not match:
        raise StorageError(f"not an s3:// repository URL: {url!r} (s3://bucket/prefix or s3://host:port/bucket/prefix)")
    host, port = match["host"], match["port"]
    endpoint = f"{match['scheme'] or 'http'}://{host}:{port}" if host else None
    return S3Location(bucket=match["bucket"], prefix=match["prefix"].strip("/"), endpoint_url=endpoint)


def s3_client(location: S3Location, connect_timeout: float = 5.0, read_timeout: float = 60.0, retries: int = 2):
    try:
        import boto3
        from botocore.config import Config
    except ImportError as error:  # pragma: no cover - dev requirement
        raise StorageError("publishing to S3 needs boto3 (requirements/dev.txt): run `make setup`") from error
    config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout, retries={"max_attempts": retries, "mode": "standard"})
    return boto3.client(
        "s3",
        endpoint_url=location.endpoint_url,
        region_name=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1",
        config=config,
    )


def explain(error: Exception, location: S3Location, action: str) -> StorageError:
    """One sentence a user can act on, from a botocore error."""
    where = f"s3://{location.bucket}/{location.prefix}" + (f" at {location.endpoint_url}" if location.endpoint_url else "")
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
    if code in ("NoSuchBucket", "404", "NotFound"):
        return StorageError(f"{action} {where}: bucket {location.bucket!r} does not exist")
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "Forbidden", "InvalidClientTokenId"):
        return StorageError(f"{action} {where}: access refused ({code}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    if type(error).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        return StorageError(f"{action} {where}: no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if type(error).__name__ in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"):
        return StorageError(f"{action} {where}: endpoint unreachable ({error})")
    return StorageError(f"{action} {where}: {error}")


def check_access(url: str) -> None:
    """Fail fast, with a clear message, where tritonserver would only log a
    generic 'failed to stat' (or retry): the bucket, the credentials, the
    prefix. gs:// and as:// are left to the server."""
    if not url.startswith("s3://"):
        return
    location = parse_s3_url(url)
    client = s3_client(location, connect_timeout=3.0, read_timeout=10.0, retries=1)
    try:
        client.head_bucket(Bucket=location.bucket)
        listed = client.list_objects_v2(Bucket=location.bucket, Prefix=location.key(""), MaxKeys=1)
    except Exception as error:  # botocore raises several unrelated classes
        raise explain(error, location, "cannot read the model repository") from error
    if not listed.get("KeyCount"):
        raise StorageError(f"the model repository {url} is empty: publish it first (make publish REPOSITORY_URL={url})")

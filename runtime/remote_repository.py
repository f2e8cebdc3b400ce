"""A model repository in object storage, as the launcher sees it: is a URL
remote, where does it point, can the server read it, and the layout that
`make publish` (deploy/object_storage.py) writes and `runtime/repository_sync.py`
reads:

    <prefix>/current.json                     the served snapshot: {"snapshot": ID, ...}
    <prefix>/manifests/ID.json                every file of snapshot ID: size and SHA-256
    <prefix>/snapshots/ID/<model>/...         a complete model repository, never changed
                                              once its manifest is written

A snapshot is written in full and verified before current.json names it, so a
reader that follows current.json never meets a half-written model. Why and
how: docs/deployment.md."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

POINTER = "current.json"
MANIFESTS = "manifests"
SNAPSHOTS = "snapshots"
MANIFEST_FORMAT = 1
# 20261206T120000.123456Z-1a2b3c4d: UTC time of the publish (sorts by time),
# then the start of a digest of its models (equal content, equal suffix)
SNAPSHOT_ID = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8}$")
# Multipart transfers above this size (S3 takes at most 5 GB in one PUT and
# 10,000 parts per upload: 64 MiB parts reach 640 GB).
PART_SIZE = 64 << 20


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
        # boto3 only for s3:// roots: serving a local repository never loads it
        import boto3
        from botocore.config import Config  # comes with boto3
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


def transfer_config(part_size: int = PART_SIZE):
    """boto3's managed transfers: multipart (and parallel ranged GETs) above part_size."""
    from boto3.s3.transfer import TransferConfig  # lazy, as in s3_client: boto3 is a dev requirement

    return TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=4)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_digest(files: dict[str, dict]) -> str:
    """One SHA-256 over a model folder's paths and file hashes: equal digests, equal folders."""
    lines = "".join(f"{path}\0{files[path]['sha256']}\n" for path in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _read_json(client, location: S3Location, relative: str) -> dict | None:
    try:
        body = client.get_object(Bucket=location.bucket, Key=location.key(relative))["Body"].read()
    except Exception as error:
        if getattr(error, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(body)


def read_pointer(client, location: S3Location) -> dict | None:
    """What current.json says is served, or None where nothing was published."""
    pointer = _read_json(client, location, POINTER)
    if pointer is not None and not SNAPSHOT_ID.match(str(pointer.get("snapshot", ""))):
        raise StorageError(f"{location.key(POINTER)} names no snapshot: {pointer!r}")
    return pointer


def read_manifest(client, location: S3Location, snapshot: str) -> dict:
    manifest = _read_json(client, location, f"{MANIFESTS}/{snapshot}.json")
    if manifest is None:
        raise StorageError(f"snapshot {snapshot} has no manifest ({location.key(f'{MANIFESTS}/{snapshot}.json')})")
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("snapshot") != snapshot:
        raise StorageError(f"manifest of snapshot {snapshot} is not format {MANIFEST_FORMAT} of that snapshot")
    return manifest


def snapshot_key(snapshot: str, model: str, path: str) -> str:
    """A file's key relative to the prefix."""
    return f"{SNAPSHOTS}/{snapshot}/{model}/{path}"


def snapshot_url(url: str, snapshot: str) -> str:
    """The plain model repository of one snapshot (what KServe's storageUri takes)."""
    return f"{url.rstrip('/')}/{SNAPSHOTS}/{snapshot}"


def check_access(url: str, direct: bool = True) -> None:
    """Fail fast, with a clear message, where tritonserver would only log a
    generic 'failed to stat' (or retry): the bucket, the credentials, the
    prefix. direct: tritonserver itself is to read the URL, which suits one
    snapshot (immutable), not the published root (its current.json moves:
    the sync follows it). gs:// and as:// are left to the server."""
    if not url.startswith("s3://"):
        return
    location = parse_s3_url(url)
    client = s3_client(location, connect_timeout=3.0, read_timeout=10.0, retries=1)
    try:
        client.head_bucket(Bucket=location.bucket)
        listed = client.list_objects_v2(Bucket=location.bucket, Prefix=location.key(""), MaxKeys=1)
        pointer = read_pointer(client, location) if listed.get("KeyCount") else None  # a snapshot's own URL has none
    except StorageError:
        raise
    except Exception as error:  # botocore raises several unrelated classes
        raise explain(error, location, "cannot read the model repository") from error
    if not listed.get("KeyCount"):
        raise StorageError(f"the model repository {url} is empty: publish it first (make publish REPOSITORY_URL={url})")
    if pointer is None and not SNAPSHOT_ID.match(location.prefix.rsplit("/", 1)[-1]):
        raise StorageError(f"{url} holds no {POINTER}: it was not published by `make publish REPOSITORY_URL={url}` (docs/deployment.md)")
    if pointer is not None and direct:
        raise StorageError(
            f"{url} is a published repository (serving snapshot {pointer['snapshot']}): tritonserver does not read it itself "
            f"(polling object storage, it unloads every model when the store is unreachable). Follow it with "
            f"`python -m runtime.repository_sync {url} DIR` and serve DIR/repository in poll mode, or serve the snapshot "
            f"{snapshot_url(url, pointer['snapshot'])} without polling (docs/deployment.md)"
        )

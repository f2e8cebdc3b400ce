"""The model repository in object storage: publish it, check that a server can reach it.

`python -m deploy.object_storage publish s3://bucket/prefix` (what `make publish
REPOSITORY_URL=...` runs) lints the local repository, uploads every model
folder (configs, code, exported files; never caches) and verifies the upload
object by object (key set and MD5). URLs follow tritonserver's own syntax:
`s3://bucket/prefix` for AWS, `s3://host:port/bucket/prefix` for an
S3-compatible endpoint (plain HTTP; `s3://https://host:port/...` for TLS).
Credentials and region come from the usual `AWS_*` variables (boto3's chain).
Only S3 is published from here; `gs://` and `as://` URLs are served as they
are (tritonserver reads them) but uploaded with the providers' own tools."""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
from pathlib import Path

from runtime.paths import MODEL_REPOSITORY
from runtime.remote_repository import S3Location, StorageError, check_access, explain, parse_s3_url, s3_client

# What never belongs in a served repository (bytecode caches, editor and OS litter).
SKIPPED_NAMES = {"__pycache__", ".ipynb_checkpoints", ".DS_Store"}
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")

def model_files(repository: Path, models: list[str] | None = None) -> dict[str, Path]:
    """relative key -> local file, for every model folder (one holding a config.pbtxt)."""
    repository = Path(repository)
    folders = sorted(p for p in repository.iterdir() if p.is_dir() and (p / "config.pbtxt").exists())
    if models:
        unknown = set(models) - {p.name for p in folders}
        if unknown:
            raise StorageError(f"no such model in {repository}: {', '.join(sorted(unknown))}")
        folders = [p for p in folders if p.name in models]
    files = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(repository)
            if any(part in SKIPPED_NAMES for part in relative.parts) or path.name.endswith(SKIPPED_SUFFIXES):
                continue
            if path.is_file():
                files[relative.as_posix()] = path
    return files


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remote_objects(client, location: S3Location, under: str) -> dict[str, str]:
    """key (relative to the prefix) -> ETag (the MD5 of a single-part upload)."""
    found = {}
    strip = len(location.key(""))
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.key(under)):
        for item in page.get("Contents", []):
            found[item["Key"][strip:]] = item["ETag"].strip('"')
    return found


def publish(url: str, repository: Path = MODEL_REPOSITORY, models: list[str] | None = None, log=print) -> dict:
    """Upload the model folders so that the remote copy equals the local one:
    changed or new files are uploaded (with Content-MD5, so the server checks
    each body), remote files the local folders no longer have are deleted.
    Returns the counts; raises StorageError when the verification fails."""
    location = parse_s3_url(url)
    client = s3_client(location)
    files = model_files(repository, models)
    hashes = {key: _md5(path) for key, path in files.items()}
    try:
        client.head_bucket(Bucket=location.bucket)
        remote = {}
        for folder in sorted({key.split("/", 1)[0] for key in files}):
            remote.update(_remote_objects(client, location, folder + "/"))
        uploaded = deleted = 0
        for key, path in files.items():
            if remote.get(key) == hashes[key]:
                continue
            with open(path, "rb") as body:
                client.put_object(
                    Bucket=location.bucket,
                    Key=location.key(key),
                    Body=body,
                    ContentMD5=base64.b64encode(bytes.fromhex(hashes[key])).decode(),
                )
            uploaded += 1
        for key in sorted(set(remote) - set(files)):
            client.delete_object(Bucket=location.bucket, Key=location.key(key))
            deleted += 1
        # Verify from a fresh listing, not from what the uploads answered.
        after = {}
        for folder in sorted({key.split("/", 1)[0] for key in files}):
            after.update(_remote_objects(client, location, folder + "/"))
    except StorageError:
        raise
    except Exception as error:
        raise explain(error, location, "cannot publish to") from error
    missing = sorted(set(files) - set(after))
    extra = sorted(set(after) - set(files))
    differ = sorted(key for key in files if key in after and after[key] != hashes[key])
    if missing or extra or differ:
        raise StorageError(f"verification of {url} failed: missing {missing[:5]}, unexpected {extra[:5]}, different {differ[:5]}")
    total = sum(path.stat().st_size for path in files.values())
    folders = len({key.split("/", 1)[0] for key in files})
    log(f"published {folders} models ({len(files)} files, {total / 1e6:.1f} MB) to {url}: {uploaded} uploaded, {deleted} deleted, all verified (MD5)")
    return {"models": folders, "files": len(files), "bytes": total, "uploaded": uploaded, "deleted": deleted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish the model repository to object storage (S3 or S3-compatible)")
    commands = parser.add_subparsers(dest="command", required=True)
    pub = commands.add_parser("publish", help="lint, upload every model folder, verify")
    pub.add_argument("url", nargs="?", default=os.environ.get("REPOSITORY_URL"), help="s3://[host:port/]bucket/prefix (default $REPOSITORY_URL)")
    pub.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    pub.add_argument("--model", action="append", dest="models", help="publish only this model folder (repeatable)")
    pub.add_argument("--no-lint", action="store_true", help="skip the config linter (make publish runs it before)")
    check = commands.add_parser("check", help="can a server read this repository URL?")
    check.add_argument("url")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            check_access(args.url)
            print(f"{args.url}: readable")
            return 0
        if not args.url:
            parser.error("give the repository URL (make publish REPOSITORY_URL=s3://bucket/prefix)")
        if not args.url.startswith("s3://"):
            parser.error(f"only s3:// is published from here ({args.url}); upload gs:// / as:// with gsutil / azcopy")
        if not args.no_lint:
            from lint.checks import lint_repository

            findings = lint_repository(args.repository)
            if findings:
                print("\n".join(str(f) for f in findings), file=sys.stderr)
                print(f"not published: {len(findings)} lint findings in {args.repository}", file=sys.stderr)
                return 1
        publish(args.url, args.repository, args.models)
    except StorageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

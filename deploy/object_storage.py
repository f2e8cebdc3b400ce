"""The model repository in object storage: publish it as immutable snapshots,
check that a server can reach it.

`python -m deploy.object_storage publish s3://bucket/prefix` (what `make
publish REPOSITORY_URL=...` runs, after the config linter):
1. hashes every file of every model folder (SHA-256; configs, code, exported
   files, never caches);
2. writes a new snapshot, `snapshots/ID/<model>/...`: a file the served
   snapshot already holds with the same SHA-256 is copied inside the store
   (nothing travels), any other is uploaded, in parts above 64 MiB (one PUT
   takes at most 5 GB); each object carries its SHA-256 in its metadata;
3. verifies it from a fresh listing (exactly the expected keys and sizes),
   reading every uploaded object back and hashing it, and checking every
   copy's SHA-256 metadata: an ETag is no MD5 under SSE-KMS or for multipart
   uploads, so it is never used;
4. writes `manifests/ID.json`, then switches `current.json` to ID: one PUT,
   which a reader sees whole or not at all;
5. prunes the snapshots beyond the newest `--keep` (2: the served one and the
   one before, for a rollback). A model removed locally is out of what is
   served at the switch, and out of the bucket once no kept snapshot holds it.

Servers follow `current.json` through runtime/repository_sync.py (a local
folder tritonserver polls); KServe serves one snapshot's URL
(`python -m deploy.object_storage current URL`). Layout and reasons:
runtime/remote_repository.py, docs/deployment.md.

URLs follow tritonserver's own syntax: `s3://bucket/prefix` for AWS,
`s3://host:port/bucket/prefix` for an S3-compatible endpoint (plain HTTP;
`s3://https://host:port/...` for TLS). Credentials and region come from the
usual `AWS_*` variables (boto3's chain). One publisher at a time per prefix:
a publish that finds current.json moved while it wrote leaves its snapshot
unserved and fails."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from lint.checks import lint_repository
from runtime.paths import MODEL_REPOSITORY
from runtime.remote_repository import (
    MANIFEST_FORMAT,
    MANIFESTS,
    PART_SIZE,
    POINTER,
    SNAPSHOTS,
    S3Location,
    StorageError,
    check_access,
    explain,
    model_digest,
    parse_s3_url,
    read_manifest,
    read_pointer,
    s3_client,
    sha256_of,
    snapshot_key,
    snapshot_url,
    transfer_config,
)

# What never belongs in a served repository (bytecode caches, editor and OS litter).
SKIPPED_NAMES = {"__pycache__", ".ipynb_checkpoints", ".DS_Store"}
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")
DEFAULT_KEEP = 2
DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys


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


def describe(files: dict[str, Path]) -> dict[str, dict]:
    """model -> {"digest", "files": {path in the model folder: {"sha256", "size"}}}: a manifest's models."""
    models: dict[str, dict] = {}
    for key, path in files.items():
        model, inside = key.split("/", 1)
        models.setdefault(model, {"files": {}})["files"][inside] = {"sha256": sha256_of(path), "size": path.stat().st_size}
    for entry in models.values():
        entry["digest"] = model_digest(entry["files"])
    return models


def _new_snapshot_id(models: dict[str, dict]) -> str:
    content = json.dumps({name: entry["digest"] for name, entry in sorted(models.items())})
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S.%fZ}-{hashlib.sha256(content.encode()).hexdigest()[:8]}"


def _list(client, location: S3Location, under: str) -> dict[str, int]:
    """key relative to the prefix -> size, for every object under `under`."""
    found, strip = {}, len(location.key(""))
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.key(under)):
        for item in page.get("Contents", []):
            found[item["Key"][strip:]] = item["Size"]
    return found


def _snapshot_folders(client, location: S3Location) -> set[str]:
    found = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.key(SNAPSHOTS + "/"), Delimiter="/"):
        found.update(item["Prefix"].rstrip("/").rsplit("/", 1)[-1] for item in page.get("CommonPrefixes", []))
    return found


def _stored_sha256(client, location: S3Location, key: str) -> tuple[str | None, int]:
    head = client.head_object(Bucket=location.bucket, Key=location.key(key))
    return head.get("Metadata", {}).get("sha256"), head["ContentLength"]


def _intact_objects(client, location: S3Location, manifest: dict | None) -> dict[str, str]:
    """key -> SHA-256 for every object of a snapshot whose stored metadata and
    size still say what its manifest says (one replaced behind our back is left out)."""
    intact: dict[str, str] = {}
    for model, entry in ((manifest or {}).get("models") or {}).items():
        for path, meta in entry["files"].items():
            key = snapshot_key(manifest["snapshot"], model, path)
            try:
                if _stored_sha256(client, location, key) == (meta["sha256"], meta["size"]):
                    intact[key] = meta["sha256"]
            except Exception as error:  # a missing object is simply not intact
                if getattr(error, "response", {}).get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
    return intact


def _write_snapshot(client, location, snapshot, models, local, sources, transfer) -> tuple[list[str], int]:
    """Every file of `models` under snapshots/ID/: copied from a source with
    the same SHA-256 or uploaded from `local`. Returns the uploaded keys and the number copied."""
    uploaded, copied = [], 0
    for model, entry in sorted(models.items()):
        for path, meta in sorted(entry["files"].items()):
            key = snapshot_key(snapshot, model, path)
            extra = {"Metadata": {"sha256": meta["sha256"]}}
            if meta["sha256"] in sources:
                source = {"Bucket": location.bucket, "Key": location.key(sources[meta["sha256"]])}
                client.copy(source, location.bucket, location.key(key), ExtraArgs={**extra, "MetadataDirective": "REPLACE"}, Config=transfer)
                copied += 1
            elif f"{model}/{path}" in local:
                client.upload_file(str(local[f"{model}/{path}"]), location.bucket, location.key(key), ExtraArgs=extra, Config=transfer)
                uploaded.append(key)
            else:
                raise StorageError(f"{model}/{path} is neither local nor intact in the served snapshot: publish {model} from its folder")
    return uploaded, copied


def _verify_snapshot(client, location: S3Location, snapshot: str, models: dict, uploaded: list[str]) -> None:
    expected = {snapshot_key(snapshot, m, p): meta for m, e in models.items() for p, meta in e["files"].items()}
    listed = _list(client, location, f"{SNAPSHOTS}/{snapshot}/")
    missing, extra = sorted(expected.keys() - listed.keys()), sorted(listed.keys() - expected.keys())
    sizes = sorted(k for k in expected.keys() & listed.keys() if listed[k] != expected[k]["size"])
    read_back = set(uploaded)
    differ = []
    for key, meta in sorted(expected.items()):
        if key in missing:
            continue
        if key in read_back:
            digest = hashlib.sha256()
            for chunk in client.get_object(Bucket=location.bucket, Key=location.key(key))["Body"].iter_chunks(1 << 20):
                digest.update(chunk)
            stored = digest.hexdigest()
        else:
            stored = _stored_sha256(client, location, key)[0]
        if stored != meta["sha256"]:
            differ.append(key)
    if missing or extra or sizes or differ:
        raise StorageError(
            f"snapshot {snapshot} failed verification (not served): missing {missing[:5]}, unexpected {extra[:5]}, "
            f"sizes {sizes[:5]}, SHA-256 {differ[:5]}"
        )


def _delete(client, location: S3Location, keys: list[str]) -> None:
    for start in range(0, len(keys), DELETE_BATCH):
        batch = [{"Key": location.key(key)} for key in keys[start : start + DELETE_BATCH]]
        answer = client.delete_objects(Bucket=location.bucket, Delete={"Objects": batch, "Quiet": True})
        if answer.get("Errors"):
            raise StorageError(f"could not delete {len(answer['Errors'])} objects, e.g. {answer['Errors'][0]}")


def prune(client, location: S3Location, keep: int, served: str) -> list[str]:
    """Delete every snapshot but the newest `keep` and the served one, and
    the leftovers of failed publishes older than the oldest kept one."""
    manifests = sorted(key[len(MANIFESTS) + 1 : -len(".json")] for key in _list(client, location, MANIFESTS + "/") if key.endswith(".json"))
    kept = set(manifests[-max(keep, 1) :]) | {served}
    doomed = [s for s in manifests if s not in kept]
    doomed += sorted(s for s in _snapshot_folders(client, location) - set(manifests) if s < min(kept))
    for snapshot in doomed:
        _delete(client, location, sorted(_list(client, location, f"{SNAPSHOTS}/{snapshot}/")))
        _delete(client, location, [f"{MANIFESTS}/{snapshot}.json"])
    return doomed


def publish(
    url: str,
    repository: Path = MODEL_REPOSITORY,
    models: list[str] | None = None,
    log=print,
    keep: int = DEFAULT_KEEP,
    part_size: int = PART_SIZE,
    client=None,
) -> dict:
    """Publish the model folders (all, or `models` over the served snapshot's
    others) as a new snapshot and serve it; nothing when the served snapshot
    already holds exactly these files, intact. Returns what was done; raises
    StorageError with nothing switched when a step fails."""
    location = parse_s3_url(url)
    client = client or s3_client(location)
    local = model_files(repository, models)
    local_models = describe(local)
    transfer = transfer_config(part_size)
    try:
        client.head_bucket(Bucket=location.bucket)
        pointer = read_pointer(client, location)
        served = read_manifest(client, location, pointer["snapshot"]) if pointer else None
        wanted = {**(served["models"] if served and models else {}), **local_models}
        intact = _intact_objects(client, location, served)
        sources = {sha: key for key, sha in sorted(intact.items(), reverse=True)}  # SHA-256 -> a key to copy from
        unchanged = served and {m: e["digest"] for m, e in wanted.items()} == {m: e["digest"] for m, e in served["models"].items()}
        if unchanged and len(intact) == sum(len(e["files"]) for e in wanted.values()):
            result = _summary(url, served["snapshot"], wanted, uploaded=0, copied=0, pruned=prune(client, location, keep, served["snapshot"]))
            log(f"{url} already serves these {result['models']} models (snapshot {served['snapshot']}, verified): nothing published")
            return {**result, "unchanged": True}
        snapshot = _new_snapshot_id(wanted)
        if _list(client, location, f"{SNAPSHOTS}/{snapshot}/"):  # a snapshot is written once, never into
            raise StorageError(f"snapshot {snapshot} exists already at {url}: publish again")
        uploaded, copied = _write_snapshot(client, location, snapshot, wanted, local, sources, transfer)
        _verify_snapshot(client, location, snapshot, wanted, uploaded)
        manifest = {"format": MANIFEST_FORMAT, "snapshot": snapshot, "created": datetime.now(timezone.utc).isoformat(), "models": wanted}
        client.put_object(Bucket=location.bucket, Key=location.key(f"{MANIFESTS}/{snapshot}.json"), Body=json.dumps(manifest, indent=1).encode())
        if read_pointer(client, location) != pointer:
            raise StorageError(f"another publish switched {url} while this one wrote snapshot {snapshot}: not served; publish again")
        switch = {"snapshot": snapshot, "manifest": f"{MANIFESTS}/{snapshot}.json", "published": manifest["created"]}
        client.put_object(Bucket=location.bucket, Key=location.key(POINTER), Body=json.dumps(switch).encode(), ContentType="application/json")
        pruned = prune(client, location, keep, snapshot)
    except StorageError:
        raise
    except Exception as error:  # botocore raises several unrelated classes
        raise explain(error, location, "cannot publish to") from error
    result = _summary(url, snapshot, wanted, uploaded=len(uploaded), copied=copied, pruned=pruned)
    removed = sorted(set(served["models"]) - set(wanted)) if served else []
    log(
        f"published {result['models']} models ({result['files']} files, {result['bytes'] / 1e6:.1f} MB) as snapshot {snapshot}: "
        f"{result['uploaded']} uploaded, {copied} copied in the store, all verified (SHA-256); now served: {result['url']}"
        + (f"; no longer served: {', '.join(removed)}" if removed else "")
        + (f"; pruned {len(pruned)} old snapshots" if pruned else "")
    )
    return {**result, "unchanged": False, "removed": removed}


def _summary(url: str, snapshot: str, models: dict, uploaded: int, copied: int, pruned: list[str]) -> dict:
    files = [meta for entry in models.values() for meta in entry["files"].values()]
    return {
        "snapshot": snapshot,
        "url": snapshot_url(url, snapshot),
        "models": len(models),
        "files": len(files),
        "bytes": sum(meta["size"] for meta in files),
        "uploaded": uploaded,
        "copied": copied,
        "pruned": pruned,
    }


def current(url: str) -> str:
    """The URL of the snapshot current.json names (KServe's storageUri)."""
    location = parse_s3_url(url)
    try:
        pointer = read_pointer(s3_client(location), location)
    except StorageError:
        raise
    except Exception as error:  # botocore raises several unrelated classes
        raise explain(error, location, "cannot read") from error
    if pointer is None:
        raise StorageError(f"nothing published at {url}: make publish REPOSITORY_URL={url}")
    return snapshot_url(url, pointer["snapshot"])


def _lint_findings(repository: Path) -> int:
    findings = lint_repository(repository)
    if findings:
        print("\n".join(str(f) for f in findings), file=sys.stderr)
        print(f"not published: {len(findings)} lint findings in {repository}", file=sys.stderr)
    return len(findings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish the model repository to object storage (S3 or S3-compatible)")
    commands = parser.add_subparsers(dest="command", required=True)
    pub = commands.add_parser("publish", help="lint, upload a new snapshot, verify it, serve it")
    pub.add_argument("url", nargs="?", default=os.environ.get("REPOSITORY_URL"), help="s3://[host:port/]bucket/prefix (default $REPOSITORY_URL)")
    pub.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    pub.add_argument("--model", action="append", dest="models", help="publish only this model folder, the others as served (repeatable)")
    pub.add_argument("--keep", type=int, default=DEFAULT_KEEP, help=f"snapshots kept, the served one included (default {DEFAULT_KEEP})")
    pub.add_argument("--no-lint", action="store_true", help="skip the config linter (make publish runs it before)")
    check = commands.add_parser("check", help="can a server read this repository URL?")
    check.add_argument("url")
    show = commands.add_parser("current", help="print the URL of the served snapshot (KServe's storageUri)")
    show.add_argument("url")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            check_access(args.url, direct=False)
            print(f"{args.url}: readable")
            return 0
        if args.command == "current":
            print(current(args.url))
            return 0
        if not args.url:
            parser.error("give the repository URL (make publish REPOSITORY_URL=s3://bucket/prefix)")
        if not args.url.startswith("s3://"):
            parser.error(f"only s3:// is published from here ({args.url}); upload gs:// / as:// with gsutil / azcopy")
        if not args.no_lint and _lint_findings(args.repository):
            return 1
        publish(args.url, args.repository, args.models, keep=args.keep)
    except StorageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

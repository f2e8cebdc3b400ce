"""Serve a published model repository (`make publish`) from a local folder
that follows it, one complete and verified snapshot at a time.

Why not let tritonserver poll s3:// itself: Triton 2.51 counts a repository
it cannot list as a repository without models, so an object-store outage
unloads every model (measured: tests/test_object_storage.py); and it loads
whatever files a model folder holds at the moment it looks. Here the server
polls a local folder and this sync moves that folder from one snapshot to the
next:

    ROOT/repository/<model>        symlink to ../store/<model>-<digest>: what tritonserver polls
    ROOT/store/<model>-<digest>/   one model folder, every file checked against its SHA-256
    ROOT/applied.json              the manifest of the snapshot repository/ serves

A changed model is built beside the served ones (store/.partial-*), file by
file against the manifest's SHA-256 (files a served folder holds are copied
from it, so only changed bytes travel), renamed whole, and its link is
swapped in one rename(2): every path under repository/ leads to a whole old
folder or a whole new one, never a mix. A model the snapshot no longer has
loses its link (one unlink). Unchanged models keep folder, link and times, so
tritonserver leaves them alone.

Nothing in a served folder changes, times included: tritonserver counts
max(mtime, ctime) of every file and folder under a model as its version, and
loads a model again when that moved. So a served file is copied, never hard
linked (a link changes its ctime), and each .py file's bytecode is written
beside it before the rename: the Python stub writes a missing one into the
folder the first time it imports the file (its interpreter is isolated,
PYTHONDONTWRITEBYTECODE does not reach it), and the next poll would load the
model again. When the object store cannot be reached or a file does not match
its hash, nothing local changes and the next cycle tries again.

    python -m runtime.repository_sync s3://[host:port/]bucket/prefix ROOT [--interval 30 | --once]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import py_compile
import shutil
import signal
import sys
import threading
from pathlib import Path, PurePosixPath

from runtime.remote_repository import (
    PART_SIZE,
    POINTER,
    StorageError,
    explain,
    parse_s3_url,
    read_manifest,
    read_pointer,
    s3_client,
    sha256_of,
    snapshot_key,
    transfer_config,
)

DEFAULT_INTERVAL = 30.0


def _checked_path(model: str, path: str) -> PurePosixPath:
    """A manifest path stays inside its model folder."""
    relative = PurePosixPath(path)
    if "/" in model or model.startswith(".") or relative.is_absolute() or ".." in relative.parts:
        raise StorageError(f"manifest path {model}/{path} leaves the model folder")
    return relative


class RepositorySync:
    def __init__(self, url: str, root: Path, interval: float = DEFAULT_INTERVAL, log=print, part_size: int = PART_SIZE):
        self.url = url
        self.location = parse_s3_url(url)
        self.root = Path(root)
        self.repository = self.root / "repository"
        self.store = self.root / "store"
        self.state_path = self.root / "applied.json"
        self.interval = interval
        self.log = log
        self.part_size = part_size
        self.applied: dict | None = json.loads(self.state_path.read_text()) if self.state_path.exists() else None
        self.history: list[str] = []  # snapshots this object switched to, in order
        self.errors: list[str] = []
        self._checked = False  # the local folders were checked against applied.json since start
        self._client = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def snapshot(self) -> str | None:
        return self.applied["snapshot"] if self.applied else None

    @staticmethod
    def folder_name(model: str, entry: dict) -> str:
        return f"{model}-{entry['digest'][:16]}"

    def sync_once(self) -> bool:
        """Bring repository/ to the snapshot current.json names; True when
        something changed. Raises StorageError and leaves repository/ as it
        was when the store cannot be read or a file is not what the manifest says."""
        if self._client is None:
            self._client = s3_client(self.location, connect_timeout=3.0, read_timeout=30.0, retries=1)
        try:
            pointer = read_pointer(self._client, self.location)
            if pointer is None:
                raise StorageError(f"nothing published at {self.url} (no {POINTER}): make publish REPOSITORY_URL={self.url}")
            if pointer["snapshot"] == self.snapshot and self._checked:
                return False
            same = pointer["snapshot"] == self.snapshot
            manifest = self.applied if same else read_manifest(self._client, self.location, pointer["snapshot"])
            missing = [m for m, e in sorted(manifest["models"].items()) if not (self.store / self.folder_name(m, e)).is_dir()]
            for model in missing:
                self._build(manifest, model)
        except StorageError:
            raise
        except Exception as error:  # botocore raises several unrelated classes
            raise explain(error, self.location, "cannot sync the model repository from") from error
        changed = self._switch(manifest)
        self._save_state(manifest)
        self._remove_unused()
        self._checked = True
        if changed or not same:
            self.history.append(manifest["snapshot"])
            self.log(f"repository sync: {self.repository} serves snapshot {manifest['snapshot']} ({', '.join(changed) or 'no model changed'})")
        return bool(changed)

    def _build(self, manifest: dict, model: str) -> None:
        entry = manifest["models"][model]
        name = self.folder_name(model, entry)
        partial = self.store / f".partial-{name}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        served = self._served_files()
        for path, meta in sorted(entry["files"].items()):
            target = partial / _checked_path(model, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            if meta["sha256"] in served:
                shutil.copy2(served[meta["sha256"]], target)  # checked when it came; not a link (see above)
            else:
                self._download(snapshot_key(manifest["snapshot"], model, path), target, meta)
        self._write_bytecode(partial, entry)
        partial.rename(self.store / name)

    @staticmethod
    def _write_bytecode(partial: Path, entry: dict) -> None:
        """Each .py file's bytecode where the stub looks for it, compiled by
        this interpreter (the backend folder takes the stub of the serving
        Python, so the same version; another writes its own, and that model
        is loaded once more)."""
        for path in entry["files"]:
            if path.endswith(".py"):
                source = partial / path
                try:
                    py_compile.compile(str(source), cfile=importlib.util.cache_from_source(str(source)), doraise=True)
                except py_compile.PyCompileError:
                    pass  # the server reports the error when it loads the model

    def _served_files(self) -> dict[str, Path]:
        """SHA-256 -> a local file of the served folders (checked when it came)."""
        found = {}
        for model, entry in ((self.applied or {}).get("models") or {}).items():
            folder = self.store / self.folder_name(model, entry)
            for path, meta in entry["files"].items():
                if (folder / path).is_file():
                    found[meta["sha256"]] = folder / path
        return found

    def _download(self, key: str, target: Path, meta: dict) -> None:
        self._client.download_file(self.location.bucket, self.location.key(key), str(target), Config=transfer_config(self.part_size))
        size, digest = target.stat().st_size, sha256_of(target)
        if (size, digest) != (meta["size"], meta["sha256"]):
            raise StorageError(
                f"{self.location.key(key)} is {size} bytes with SHA-256 {digest[:16]}..., the manifest says {meta['size']} "
                f"bytes and {meta['sha256'][:16]}...: not served"
            )

    def _switch(self, manifest: dict) -> list[str]:
        """Point every model's link at its folder (one rename each), drop the
        links of models the snapshot does not have. Returns what changed."""
        self.repository.mkdir(parents=True, exist_ok=True)
        changed = []
        for model, entry in sorted(manifest["models"].items()):
            link, target = self.repository / model, Path("..", "store", self.folder_name(model, entry))
            if link.is_symlink() and os.readlink(link) == str(target):
                continue
            if link.exists() and not link.is_symlink():
                raise StorageError(f"{link} is a folder this sync did not make: move it out of {self.repository}")
            staged = self.store / f".link-{model}"
            staged.unlink(missing_ok=True)
            os.symlink(target, staged)
            os.replace(staged, link)
            changed.append(model)
        for link in sorted(self.repository.iterdir()):
            if link.is_symlink() and link.name not in manifest["models"]:
                link.unlink()
                changed.append(f"{link.name} removed")
        return changed

    def _save_state(self, manifest: dict) -> None:
        staged = self.state_path.with_suffix(".tmp")
        staged.write_text(json.dumps(manifest))
        os.replace(staged, self.state_path)
        self.applied = manifest

    def _remove_unused(self) -> None:
        linked = {os.path.basename(os.readlink(link)) for link in self.repository.iterdir() if link.is_symlink()}
        for entry in self.store.iterdir():
            if entry.name in linked:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def cycle(self) -> bool:
        """One sync that never raises: failures are logged and counted, the
        served folder stays as it was."""
        try:
            return self.sync_once()
        except (StorageError, OSError) as error:
            self.errors.append(str(error))
            # the first failure, a different one, then every tenth in a row
            if len(self.errors) == 1 or self.errors[-2] != self.errors[-1] or len(self.errors) % 10 == 0:
                self.log(f"repository sync: {error}; {self.repository} keeps serving snapshot {self.snapshot} ({len(self.errors)} failed syncs)")
            return False

    def start(self) -> "RepositorySync":
        """Cycles every `interval` seconds in a background thread (after a first sync_once)."""
        self._thread = threading.Thread(target=self.run, name="repository-sync", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Cycles every `interval` seconds until stop()."""
        while not self._stop.wait(self.interval):
            self.cycle()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Keep a local model repository on the snapshot `make publish` serves")
    parser.add_argument("url", help="s3://[host:port/]bucket/prefix, the REPOSITORY_URL of make publish")
    parser.add_argument("root", type=Path, help="local folder; tritonserver serves ROOT/repository")
    parser.add_argument("--interval", type=float, default=float(os.environ.get("REPOSITORY_POLL_SECS") or DEFAULT_INTERVAL))
    parser.add_argument("--once", action="store_true", help="one sync, then exit (an init container)")
    args = parser.parse_args(argv)
    sync = RepositorySync(args.url, args.root, args.interval, log=lambda line: print(line, flush=True))
    try:
        sync.sync_once()
    except (StorageError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.once:
        return 0
    # every step is a rename, so stopping anywhere leaves a served folder whole
    signal.signal(signal.SIGTERM, lambda *_: sync.stop())
    try:
        sync.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
